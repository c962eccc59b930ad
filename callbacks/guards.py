"""Training guards that are not the model's business: the divergence check, the RNG state, and the
history (wall clock, validation curve) of a run that was stopped and resumed."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
from lightning.pytorch.callbacks import Callback

from lightning_aae.provenance import curve_record, segment
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
    """Every checkpoint carries the run's history before this part: where a fit resumed from a
    checkpoint, each part that trained before it (commit, command, date, wall seconds), and the
    monitored validation metric of every epoch so far. A run that was preempted and resumed, extended
    to more epochs, or forked from another run's checkpoint into a new folder is then recorded with
    the wall time and code of all its parts and with its whole validation curve, not only the last
    part's.

    `start` is `lightning_aae.provenance.provenance()` of this part; `monitor` the metric whose curve is
    kept (the checkpoint callback's; None keeps none)."""

    def __init__(self, start: Dict[str, Any], monitor: Optional[str] = None):
        self.start, self.monitor = start, monitor
        self.earlier: List[Dict[str, Any]] = []
        self.values: Dict[int, float] = {}  # epoch -> monitored validation value
        self._loaded: Optional[Dict[str, Any]] = None

    def state_dict(self) -> Dict[str, Any]:
        return {"segments": [*self.earlier, segment(self.start)],
                "curve": {"metric": self.monitor, "values": sorted(self.values.items())}}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        # testing a checkpoint restores callback states too: only a fit that resumes takes them
        self._loaded = state_dict

    def _adopt(self) -> None:
        if self._loaded is None:
            return
        loaded, self._loaded = self._loaded, None
        self.earlier = list(loaded.get("segments", []))
        curve = loaded.get("curve") or {}  # none in checkpoints written before 2026-12-01
        self.values = {int(e): float(v) for e, v in curve.get("values", [])} if curve.get("metric") == self.monitor else {}

    def on_train_start(self, trainer, module) -> None:  # after every restore, whatever the strategy
        self._adopt()

    def on_fit_end(self, trainer, module) -> None:
        # resumed with no epoch left to train (to test a stopped run's best checkpoint): Lightning
        # skips the training loop and on_train_start with it, but the earlier parts still count
        self._adopt()

    def on_validation_end(self, trainer, module) -> None:
        # before the checkpoint callbacks (Lightning runs them last), so this epoch's checkpoint has it
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        self.values[trainer.current_epoch] = float(trainer.callback_metrics[self.monitor])

    def curve(self) -> Optional[Dict[str, Any]]:
        """The monitored metric per epoch, as result.json keeps it (provenance.curve_record)."""
        return curve_record(self.monitor, self.values)
