"""Training: the settings, the :class:`Trainer` and its callbacks, checkpoints, the beta-VAE family."""

from vaekit.training.anomaly_protocol import run_anomaly_protocol
from vaekit.training.api import default_callbacks, train
from vaekit.training.callbacks import (
           Callback,
           CSVLogger,
           ProgressBar,
           StepHook,
           TensorBoardLogger,
)
from vaekit.training.config import TrainConfig
from vaekit.training.trainer import Trainer, TrainingInterrupted, TrainResult

__all__ = ["CSVLogger", "Callback", "ProgressBar", "StepHook", "TensorBoardLogger", "TrainConfig", "TrainResult",
           "Trainer", "TrainingInterrupted", "default_callbacks", "run_anomaly_protocol", "train"]
