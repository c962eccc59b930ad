"""Training guards that are not the model's business: the divergence check, the RNG state, and the
wall clock of a run that was stopped and resumed."""
from __future__ import annotations

from typing import Any, Dict, List

import torch
from lightning.pytorch.callbacks import Callback

from lightning_aae.results import segment
from lightning_aae.schedule import DivergenceError


class DivergenceCheck(Callback):
    """Stops the fit with a DivergenceError naming the phase when a training loss turns non-finite.

    It reads the module's running means when they are read anyway (every log_every_n_steps batches,
    at the end of the epoch) and before validation, so no checkpoint is written from diverged weights.
    """

    def _check(self, trainer, module, means) -> None:
        if not means:
            return
        values = torch.stack(list(means.values()))
        bad = ~torch.isfinite(values)
        if not bool(bad.any()):
            return
        names = [n for n, b in zip(means, bad.tolist()) if b]
        phase_of = getattr(module.stepper, "stat_phase", {})
        phases = sorted({phase_of.get(n, "unknown") for n in names})
        raise DivergenceError(
            f"non-finite loss in phase {', '.join(phases)} ({', '.join(names)}) at epoch {trainer.current_epoch}, "
            f"batch {module.running.epoch_batches}, global step {trainer.global_step} (checked every "
            f"{trainer.log_every_n_steps} batches); lower the learning rate or set optim.grad_clip")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._check(trainer, module, module.running.flushed)

    def on_validation_epoch_start(self, trainer, module) -> None:
        if trainer.training:
            self._check(trainer, module, module.running.epoch_means())

    def on_train_epoch_end(self, trainer, module) -> None:
        self._check(trainer, module, module.running.epoch_means())


class RNGState(Callback):
    """The global torch (and CUDA) random state travels with every checkpoint and is restored when a
    fit resumes from one, so 2 epochs straight equal 1 + 1 resumed, and a run stopped mid-epoch and
    resumed equals one never stopped (data loading does not draw from it: lightning_aae/data.py).
    Loading a checkpoint for evaluation or generation does not touch it: the caller's random
    state stays the caller's."""

    def state_dict(self) -> Dict[str, Any]:
        states = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return states

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])

    def on_load_checkpoint(self, trainer, module, checkpoint) -> None:
        if "rng_states" in checkpoint:  # checkpoints written before this callback kept it at the top
            self.load_state_dict(checkpoint["rng_states"])


class WallClock(Callback):
    """Every checkpoint carries the run's earlier segments: where a fit resumed from a checkpoint,
    each part that trained before it, with its commit, command, date and wall seconds. A run that
    was preempted and resumed (or extended to more epochs) is then recorded with the wall time of
    all its parts, and with the code each part ran, not only the last part's.

    `start` is `lightning_aae.results.provenance()` of this part; `earlier` after a resume."""

    def __init__(self, start: Dict[str, Any]):
        self.start = start
        self.earlier: List[Dict[str, Any]] = []
        self._loaded: List[Dict[str, Any]] = []

    def state_dict(self) -> Dict[str, Any]:
        return {"segments": [*self.earlier, segment(self.start)]}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        # testing a checkpoint restores callback states too: only a fit that resumes takes them
        self._loaded = list(state_dict.get("segments", []))

    def on_train_start(self, trainer, module) -> None:  # after every restore, whatever the strategy
        self.earlier, self._loaded = self._loaded, []

    def on_fit_end(self, trainer, module) -> None:
        # resumed with no epoch left to train (to test a stopped run's best checkpoint): Lightning
        # skips the training loop and on_train_start with it, but the earlier parts still count
        if self._loaded:
            self.earlier, self._loaded = self._loaded, []
