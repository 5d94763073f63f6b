"""How the ranks of a distributed run act together: the :class:`~vaekit.training.trainer.Trainer`'s share.

:class:`RankCoordination` holds the parts of the trainer that exist because
several processes train one model under ``torchrun``
(:mod:`vaekit.training.distributed`): wrapping the model in
``DistributedDataParallel``, the loss scale that makes DDP's gradient
average the global batch's gradient, each rank's rows of the global batch's
noise, the one all-reduce of the divergence and stop flags, signal handlers
that only set a flag, and callbacks (rank 0's, or every rank's for those
with ``all_ranks``). In a single process each is a no-op or the plain call.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import torch

from vaekit.models.losses import LossTerms
from vaekit.runtime import is_main_process
from vaekit.training import distributed
from vaekit.training.callbacks import Callback

#: Under torchrun, a second stop signal this many seconds after the first quits at once, without saving
#: (torchrun forwards the terminal's Ctrl-C, so one Ctrl-C can arrive twice in quick succession).
FORCE_QUIT_AFTER_S = 2.0
#: Exit status of a forced quit (as for Ctrl-C).
EXIT_FORCED = 130


class RankCoordination:
    """Mixed into :class:`~vaekit.training.trainer.Trainer`: what ranks do together (see the module docs).

    Uses the trainer's ``world``, ``rank``, ``device``, ``config``, ``model``,
    ``train_set``, ``step``, ``callbacks``, ``_bad_step``, ``_bad_loss``,
    ``_stop``, ``_first_signal``, ``_previous_handlers`` and ``_shared_noise``.
    """

    def _parallel(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` wrapped in DistributedDataParallel under torchrun (``self.model`` stays the plain module)."""
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _main(self, function: Any, broadcast_result: bool = True) -> Any:
        """``function()`` on rank 0, its result or error on every rank (see :func:`distributed.main_first`)."""
        return distributed.main_first(function, broadcast_result)

    def _loss_scale(self, local_n: int) -> float:
        """``local_n * world / global_n``: DDP's gradient average is then the global batch mean's gradient."""
        if self.world == 1:
            return 1.0
        global_n = min(self.config.batch_size, len(self.train_set) - self.step * self.config.batch_size)
        return local_n * self.world / global_n

    def _noise(self) -> torch.Tensor | None:
        """This rank's rows of the global batch's reparameterisation noise (None: the model draws it)."""
        if not self._shared_noise:
            return None
        global_n = min(self.config.batch_size, len(self.train_set) - self.step * self.config.batch_size)
        noise = torch.randn(global_n, int(self.model.latent_dim), device=self.device)
        return noise[self.rank::self.world]

    def _check_all_ranks(self, stops: bool) -> None:
        """One all-reduce of the divergence and stop flags: every rank raises, or stops, at the same step."""
        never = torch.iinfo(torch.int64).max
        flags = torch.stack([
            # The maximum of minus the first bad step is the earliest bad step of any rank.
            torch.where(self._bad_step < 0, torch.full_like(self._bad_step, -never), -self._bad_step),
            torch.tensor(int(self._stop and stops), dtype=torch.int64, device=self.device)])
        first, stop = (-int(v) for v in distributed.all_reduce_max(flags).tolist())
        if first != never:
            loss = distributed.all_reduce_sum(torch.where(
                self._bad_step == first, self._bad_loss, torch.zeros_like(self._bad_loss)))
            self._bad_step.fill_(first)
            self._bad_loss = loss
            self._raise_if_bad()
        if stop:
            raise KeyboardInterrupt

    def _install_stop_handlers(self) -> None:
        """Under torchrun, SIGINT and SIGTERM only set a flag that all ranks read at the next check."""
        if self.world == 1 or threading.current_thread() is not threading.main_thread():
            return

        def on_signal(signum: int, frame: Any) -> None:
            now = time.monotonic()
            if self._first_signal is not None and now - self._first_signal > FORCE_QUIT_AFTER_S:
                print(f"vaekit: second {signal.Signals(signum).name} on rank {self.rank}: quitting without "
                      "saving", file=sys.stderr, flush=True)
                os._exit(EXIT_FORCED)
            if self._first_signal is None:
                self._first_signal = now
            self._stop = True

        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, on_signal)

    @contextlib.contextmanager
    def _stop_signals_held(self) -> Iterator[None]:
        """A Ctrl-C or SIGTERM inside the block takes effect at its end, so the block's writes land together.

        In one process a stop signal raises KeyboardInterrupt wherever it lands (Python's handler for
        SIGINT, :func:`vaekit.runtime.stop_on_sigterm`'s for SIGTERM); between an epoch's count and
        its ``metrics.csv`` row that would leave a checkpoint no resume accepts. The first signal is held
        until the block ends; a second one interrupts at once. Under torchrun the handlers only set a flag.
        """
        if self.world > 1 or threading.current_thread() is not threading.main_thread():
            yield
            return
        held: list[int] = []

        def hold(signum: int, frame: Any) -> None:
            if held:
                raise KeyboardInterrupt
            held.append(signum)

        raising = {signum: handler for signum in (signal.SIGINT, signal.SIGTERM)
                   if (handler := signal.getsignal(signum)) is signal.default_int_handler}
        for signum in raising:
            signal.signal(signum, hold)
        try:
            yield
        finally:
            for signum, handler in raising.items():
                signal.signal(signum, handler)
        if held:
            raise KeyboardInterrupt

    def _restore_stop_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _call(self, hook: str, *args: Any) -> None:
        if self.world == 1:
            if is_main_process():
                for callback in self.callbacks:
                    getattr(callback, hook)(self, *args)
            return

        def on_main() -> bool:
            return self._run_callbacks(hook, [c for c in self.callbacks if not c.all_ranks], *args)

        # Rank 0's callbacks (metrics.csv among them) run while the others wait; a Ctrl-C raised in
        # one becomes a stop every rank sees, at the same point.
        stopped = self._main(on_main)
        stopped = self._run_callbacks(hook, [c for c in self.callbacks if c.all_ranks], *args) or stopped
        self._stop = self._stop or bool(stopped)

    def _run_callbacks(self, hook: str, callbacks: list[Callback], *args: Any) -> bool:
        """Run ``hook`` of ``callbacks``; under torchrun a KeyboardInterrupt they raise is returned as True."""
        try:
            for callback in callbacks:
                getattr(callback, hook)(self, *args)
        except KeyboardInterrupt:
            if self.world == 1:
                raise
            return True
        return False

    def _call_step_end(self, terms: LossTerms, n: int) -> None:
        callbacks = [c for c in self.callbacks if is_main_process() or c.all_ranks]
        if not callbacks:
            return
        if any(callback.needs_terms for callback in callbacks):
            loss, recon, kl = torch.stack([terms.loss.detach(), terms.recon.detach(),
                                           terms.kl.detach()]).tolist()  # one device sync
            values = {"loss": loss, "recon": recon, "kl": kl, "beta": self.beta(), "n": n}
        else:
            values = {}
        if self._run_callbacks("on_step_end", callbacks, values):
            self._stop = True  # all ranks stop at the next check

    def _close_progress(self) -> None:
        for callback in self.callbacks:
            close = getattr(callback, "close", None)
            if callable(close):
                close()
