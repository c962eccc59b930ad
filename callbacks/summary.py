"""One line per epoch on stdout: for logs of background runs, where a progress bar is noise."""
from __future__ import annotations

import time

from lightning.pytorch.callbacks import Callback


class EpochSummary(Callback):
    """Prints the epoch's wall time and its train/ and val/ epoch metrics (rank 0 only)."""

    KEYS = ("train/recon_loss_epoch", "train/class_loss_epoch", "val/recon_loss", "val/error", "val/accuracy",
            "val/cluster_error", "val/hungarian_accuracy", "val/code_mean_abs_max", "val/code_std_rel_err_max")

    def __init__(self):
        self._start = None
        self._line = None

    def on_train_epoch_start(self, trainer, module):
        self._show(trainer)
        self._start = time.perf_counter()

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self._start is None:  # a fit resumed mid-epoch: Lightning does not start that epoch again
            self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        # the module logs its epoch means after the callbacks' hooks, so print at the next start
        if self._start is not None:  # None when a resumed fit re-enters an epoch it had finished
            self._line = (trainer.current_epoch, time.perf_counter() - self._start)

    def on_train_end(self, trainer, module):
        self._show(trainer)

    def on_exception(self, trainer, module, exception):
        self._show(trainer)  # the last whole epoch's line, before a stop at the next epoch's start

    def _show(self, trainer):
        if not trainer.is_global_zero or self._line is None:
            return
        epoch, seconds = self._line
        self._line = None
        m = trainer.callback_metrics
        parts = [f"epoch {epoch}", f"{seconds:.1f}s"]
        parts += [f"{k}={float(m[k]):.4f}" for k in self.KEYS if k in m]
        parts += [f"{k}={float(v):.3f}" for k, v in sorted(m.items()) if k.startswith("train/disc_acc_") and k.endswith("_epoch")]
        print(" ".join(parts), flush=True)
