"""Preemption: a signal during fit finishes the current step, saves a resumable checkpoint and stops.

SIGTERM is what Kubernetes, `docker stop` and SLURM send before killing a job; SIGINT is Ctrl-C;
SIGHUP a closed terminal; SIGUSR1 is SLURM's usual warning signal (`#SBATCH --signal=USR1@120`),
SIGUSR2 that of SGE (`-notify`) and LSF. A signal the parent process set to be ignored (`nohup`
ignores SIGHUP, a background shell SIGINT) stays ignored. The run then exits with
128 + the signal's number (130, 143, 138) so a scheduler sees it did not finish, and resuming
continues from the saved step (with the same batches, on one device: lightning_aae/data.py).
A second signal ends the process at once.
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch
from lightning.pytorch.callbacks import Callback


class Preempted(Exception):
    """Fit stopped on a signal after saving `checkpoint`."""

    def __init__(self, signum: int, checkpoint: Path, epoch: int, step: int, requeued: str = ""):
        self.signum, self.checkpoint, self.epoch, self.step = signum, checkpoint, epoch, step
        self.name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.name} at epoch {epoch}, global step {step}: saved {checkpoint}"
                         + (f"; {requeued}" if requeued else ""))

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2")  # the default: what stops a run


def signal_numbers(names: Sequence[str]) -> Dict[str, int]:
    """Signal names (SIGTERM, TERM, ...) to numbers; an unknown name is a ValueError naming it."""
    out = {}
    for name in names:
        full = name.upper() if name.upper().startswith("SIG") else "SIG" + name.upper()
        if not hasattr(signal, full) or full in ("SIGKILL", "SIGSTOP"):
            raise ValueError(f"unknown or uncatchable signal '{name}'")
        out[full] = int(getattr(signal, full))
    return out


class Preemption(Callback):
    """Catches the configured signals while training; at the end of the step that is running it writes
    `checkpoint` (atomically, through the Trainer's checkpoint I/O) and raises Preempted. A signal during an
    epoch's last step or its validation stops the run once that epoch is whole (validated, its curve point
    and checkpoints written, its schedulers stepped; `trainer.should_stop`, then the save at the end of fit):
    a checkpoint from inside validation would resume past it, and the epoch would never be scored. Under DDP
    every process learns of a signal any of them received."""

    def __init__(self, checkpoint: str | Path, signals: Sequence[str] = STOP_SIGNALS,
                 requeue_signal: Optional[str] = "SIGUSR1"):
        self.checkpoint = Path(checkpoint)
        self.signals = signal_numbers(list(signals) + ([requeue_signal] if requeue_signal else []))
        self.requeue_signal = next(iter(signal_numbers([requeue_signal]).values())) if requeue_signal else None
        self.received: Optional[int] = None
        self._previous: Dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
            for s in self._previous:  # a second signal is not polite any more
                signal.signal(s, signal.SIG_DFL)

    def _install(self) -> None:
        self.received = None
        try:
            for s in self.signals.values():
                if signal.getsignal(s) is not signal.SIG_IGN:
                    self._previous[s] = signal.signal(s, self._handler)
        except ValueError:  # not the main thread: leave signals to whoever owns them
            self._previous.clear()

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _signalled(self, trainer) -> Optional[int]:
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            flag = torch.tensor([self.received or 0], device=trainer.strategy.root_device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            return int(flag.item()) or None
        return self.received

    def _stop_if_signalled(self, trainer) -> None:
        signum = self._signalled(trainer)
        if signum:
            trainer.save_checkpoint(self.checkpoint, weights_only=False)  # the full state, for resuming
            requeued = self._requeue() if signum == self.requeue_signal and trainer.is_global_zero else ""
            raise Preempted(signum, self.checkpoint, trainer.current_epoch, trainer.global_step, requeued)

    @staticmethod
    def _requeue() -> str:
        """Under SLURM, put the job back in the queue; the requeued job, run with ckpt_path=auto, resumes
        from the checkpoint just saved."""
        # ours, not SLURMEnvironment(auto_requeue=True): Lightning's handler saves its own hpc_ckpt_N.ckpt
        # mid-step and requeues from the signal handler; this one requeues after the step, from last.ckpt
        job = os.environ.get("SLURM_JOB_ID")
        if not job:
            return ""
        if os.environ.get("SLURM_ARRAY_JOB_ID"):
            job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
        try:
            done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"requeue of SLURM job {job} failed ({type(exc).__name__})"
        return f"requeued SLURM job {job}" if done.returncode == 0 else \
            f"requeue of SLURM job {job} failed ({(done.stderr.strip() or 'scontrol exit ' + str(done.returncode))[:100]})"

    # Lightning registers its own SIGTERM handler after on_fit_start; ours go in after it
    def on_train_start(self, trainer, module) -> None:
        self._install()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 < trainer.num_training_batches:
            self._stop_if_signalled(trainer)
        elif self._signalled(trainer):  # the epoch's last step: its validation and epoch end first
            trainer.should_stop = True

    def on_validation_end(self, trainer, module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking and self._signalled(trainer):
            trainer.should_stop = True  # the fit ends after this epoch, whole; on_train_end saves

    def on_train_end(self, trainer, module) -> None:
        try:
            self._stop_if_signalled(trainer)
        finally:
            self._restore()

    def on_exception(self, trainer, module, exception) -> None:
        self._restore()
