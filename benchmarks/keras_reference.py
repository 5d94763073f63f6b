"""Keras 3 / TensorFlow reference side of ``benchmarks/train_throughput.py``.

Builds the same two VAE architectures that the vaekit (PyTorch) benchmark
trains, in Keras 3 on the TensorFlow backend, trains them on random images in
[0, 1] with a custom ``train_step`` (loss = per-image summed binary
cross-entropy + KL, mean over the batch, Adam lr 1e-3, as in the Keras VAE
example) and reports steady-state training images/s and peak resident memory.

It imports only TensorFlow, Keras and NumPy (never vaekit or torch). These are
an optional benchmark dependency, never needed for the tests; keep them in
their own virtualenv so they cannot clash with the project's torch install::

    python3 -m venv .venv-keras
    .venv-keras/bin/pip install tensorflow-cpu keras   # tested: 2.21.0, 3.15.1
    .venv-keras/bin/python benchmarks/keras_reference.py --arch all --json

Threads are left at the TensorFlow defaults (0 = let TF choose, i.e. all
cores). With ``--arch all`` each arch runs in its own subprocess so that the
peak RSS (``ru_maxrss``) of one does not leak into the other.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers, ops  # noqa: E402

ARCHS = {  # name: (input shape, default batch size, default timed steps)
    "fashion28": ((28, 28, 1), 128, 200),
    "nn3-128": ((128, 128, 3), 64, 40),
}


class Sampling(layers.Layer):
    """z = mean + exp(0.5 * log_var) * eps."""

    def call(self, inputs):
        z_mean, z_log_var = inputs
        eps = keras.random.normal(ops.shape(z_mean), dtype=z_mean.dtype)
        return z_mean + ops.exp(0.5 * z_log_var) * eps


def _encoder(shape, latent, body):
    x_in = keras.Input(shape)
    x = x_in
    for layer in body:
        x = layer(x)
    z_mean = layers.Dense(latent, name="z_mean")(x)
    z_log_var = layers.Dense(latent, name="z_log_var")(x)
    z = Sampling()([z_mean, z_log_var])
    return keras.Model(x_in, [z_mean, z_log_var, z], name="encoder")


def _decoder(latent, body):
    z_in = keras.Input((latent,))
    x = z_in
    for layer in body:
        x = layer(x)
    return keras.Model(z_in, x, name="decoder")


def build(arch):
    relu, same = "relu", "same"
    if arch == "fashion28":
        enc = _encoder((28, 28, 1), 2, [
            layers.Conv2D(32, 14, activation=relu),
            layers.Conv2D(64, 6, activation=relu),
            layers.Flatten(),
            layers.Dense(168, activation=relu),
            layers.Dense(16, activation=relu),
        ])
        dec = _decoder(2, [
            layers.Dense(7 * 7 * 128, activation=relu),
            layers.Reshape((7, 7, 128)),
            layers.Conv2DTranspose(128, 3, strides=2, padding=same, activation=relu),
            layers.Conv2DTranspose(32, 3, strides=2, padding=same, activation=relu),
            layers.Conv2DTranspose(1, 3, padding=same, activation="sigmoid"),
        ])
    elif arch == "nn3-128":
        enc = _encoder((128, 128, 3), 256, [
            *(layers.Conv2D(c, 3, strides=2, padding=same, activation=relu)
              for c in (32, 64, 128, 256)),
            layers.Flatten(),
        ])
        dec = _decoder(256, [
            layers.Dense(8 * 8 * 256, activation=relu),
            layers.Reshape((8, 8, 256)),
            layers.Conv2DTranspose(256, 3, strides=1, padding=same, activation=relu),
            *(layers.Conv2DTranspose(c, 3, strides=2, padding=same, activation=relu)
              for c in (256, 128, 64, 32)),
            layers.Conv2DTranspose(3, 3, strides=1, padding=same, activation="sigmoid"),
        ])
    else:
        raise ValueError(f"unknown arch {arch!r}")
    return VAE(enc, dec)


class VAE(keras.Model):
    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = encoder, decoder
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data, training=True)
            # Under mixed_bfloat16 the layers compute in bf16; the loss stays float32, as in vaekit.
            recon = ops.cast(self.decoder(z, training=True), "float32")
            z_mean, z_log_var = ops.cast(z_mean, "float32"), ops.cast(z_log_var, "float32")
            bce = ops.binary_crossentropy(data, recon)  # elementwise
            rec_loss = ops.mean(ops.sum(bce, axis=(1, 2, 3)))
            kl = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            loss = rec_loss + ops.mean(ops.sum(kl, axis=1))
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


class StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def run(arch, batch_size, steps, warmup, policy="float32", window=None):
    keras.mixed_precision.set_global_policy(policy)
    shape = ARCHS[arch][0]
    model = build(arch)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))  # jit_compile: Keras default
    params = model.encoder.count_params() + model.decoder.count_params()

    pool = np.random.default_rng(0).integers(0, 256, (4 * batch_size, *shape), dtype=np.uint8)
    ds = (tf.data.Dataset.from_tensor_slices(pool).repeat()
          .batch(batch_size, drop_remainder=True)
          .map(lambda x: tf.cast(x, tf.float32) / 255.0)
          .prefetch(tf.data.AUTOTUNE))
    timer = StepTimer()
    model.fit(ds, epochs=1, steps_per_epoch=warmup + steps, callbacks=[timer],
              shuffle=False, verbose=0)
    elapsed = timer.ends[-1] - timer.ends[warmup - 1]
    ends = timer.ends[warmup - 1:]
    window = window or max(1, steps // 5)
    # The best window of `window` steps: a burst of load from another process does not decide it.
    best = min(ends[i + window] - ends[i] for i in range(0, len(ends) - window))
    return {
        "policy": policy,
        "best_window_images_per_s": round(window * batch_size / best, 2),
        "arch": arch,
        "framework": "keras",
        "images_per_s": round(steps * batch_size / elapsed, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "batch_size": batch_size,
        "tf_version": tf.__version__,
        "keras_version": keras.__version__,
        "params": params,
        "steps": steps,
        "jit_compile": bool(model.jit_compile),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=[*ARCHS, "all"], default="all")
    p.add_argument("--batch-size", type=int, help="default: 128 fashion28, 64 nn3-128")
    p.add_argument("--steps", type=int, help="timed steps (default: 200 fashion28, 40 nn3-128)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps (>= 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object per arch")
    p.add_argument("--policy", choices=["float32", "mixed_bfloat16"], default="float32",
                   help="Keras dtype policy (mixed_bfloat16: bf16 compute, float32 weights)")
    args = p.parse_args(argv)

    if args.arch == "all":  # one process per arch, so ru_maxrss is per arch
        for arch in ARCHS:
            cmd = [sys.executable, os.path.abspath(__file__), "--arch", arch,
                   "--warmup", str(args.warmup), "--policy", args.policy]
            cmd += ["--batch-size", str(args.batch_size)] if args.batch_size else []
            cmd += ["--steps", str(args.steps)] if args.steps else []
            cmd += ["--json"] if args.json else []
            subprocess.run(cmd, check=True)
        return

    _, default_bs, default_steps = ARCHS[args.arch]
    log = sys.stderr if args.json else sys.stdout
    print(f"threads: intra_op={tf.config.threading.get_intra_op_parallelism_threads()} "
          f"inter_op={tf.config.threading.get_inter_op_parallelism_threads()} "
          f"(0 = TF default) cpu_count={os.cpu_count()}", file=log)
    res = run(args.arch, args.batch_size or default_bs, args.steps or default_steps,
              max(1, args.warmup), args.policy)
    if args.json:
        print(json.dumps(res), flush=True)
    else:
        print(f"{res['arch']}: params={res['params']:,} batch={res['batch_size']} "
              f"{res['images_per_s']:.1f} images/s peak_rss={res['peak_rss_mb']:.0f} MB "
              f"(tf {res['tf_version']}, keras {res['keras_version']}, "
              f"jit_compile={res['jit_compile']})", flush=True)


if __name__ == "__main__":
    main()
