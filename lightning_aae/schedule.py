"""The AAE training schedule, in one place: the phases of one step and the stepper that runs them.

Each phase is a pure loss function of (model, batch) and has its own optimizer, found by name:

    phase     optimizer's parameters            loss
    recon     encoder + decoder (+ variant's)   reconstruction of the clean image + the variant's code penalties
    disc      discriminators                    tell prior samples (real) from codes (fake, detached)
    gen       encoder                           make the discriminators call the codes real
    classify  encoder                           cross-entropy on the labeled batch

A variant has the phases it declares parameters for (`model.phase_params()`): the plain
autoencoder and the VAE only `recon`, the adversarial ones `recon, disc, gen`, the semi-supervised
AAE all four. Every phase takes one optimizer step, so `global_step` counts 1, 3 or 4 per batch.
Variants change the model's hooks, never this loop; the compiled and captured steppers
(lightning_aae/compiled.py) replace `EagerStepper` through `optim.stepper` without touching a variant.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Dict, List, Optional, Tuple

import torch
from torch import nn

from .losses import discriminator_accuracy, discriminator_loss, generator_loss, reconstruction_loss

Stats = Dict[str, torch.Tensor]


class DivergenceError(RuntimeError):
    """A phase produced a non-finite loss."""


@dataclass
class StepBatch:
    """What one training step sees. `x` is the encoder's input (corrupted where configured),
    `target` the clean image to reconstruct; the labeled pair's x is corrupted the same way."""

    x: torch.Tensor
    target: torch.Tensor
    y: torch.Tensor  # digits; -1 where the run hides them
    labeled: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
    _pairs: Optional[Dict[str, Tuple[torch.Tensor, torch.Tensor]]] = field(default=None, repr=False)

    @classmethod
    def from_loader(cls, batch, corrupt: Callable[[torch.Tensor], torch.Tensor],
                    augment_labeled: Callable[[torch.Tensor], torch.Tensor] = lambda x: x) -> "StepBatch":
        """The DataModule's batch, (x, y) or {"unlabeled": (x, y), "labeled": (x, y)}, as a step sees it:
        every encoder pass of the step gets the corrupted input, the reconstruction target stays clean;
        the labeled images are augmented first, then corrupted."""
        (x, y), labeled = (batch["unlabeled"], batch["labeled"]) if isinstance(batch, dict) else (batch, None)
        noisy = corrupt(x)
        if labeled is not None:
            labeled = (corrupt(augment_labeled(labeled[0])), labeled[1])
        return cls(x=noisy, target=x, y=y, labeled=labeled)

    def adversary_pairs(self, model) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
        """name -> (codes with gradient to the encoder, target samples), drawn once per step: the
        discriminator step does not move the encoder, so the generator step may reuse the codes."""
        if self._pairs is None:
            self._pairs = model.adversary_pairs(self)
        return self._pairs


def reconstruction_phase(model, batch: StepBatch) -> Tuple[torch.Tensor, Stats]:
    out = model.training_forward(batch.x, batch.y)
    loss = reconstruction_loss(out["logits"], batch.target, model.model_cfg["recon_loss"])
    for penalty in model.code_penalties(batch, out).values():  # they see the input and the code
        loss = loss + penalty
    return loss, {"recon_loss": loss}


def discriminator_phase(model, batch: StepBatch) -> Tuple[torch.Tensor, Stats]:
    loss, stats = 0.0, {}
    for name, (fake, real) in batch.adversary_pairs(model).items():
        disc = model.discriminators[name]
        # codes are detached: the discriminator step must not move the encoder
        real_logits, fake_logits = disc(real), disc(fake.detach())
        loss = loss + discriminator_loss(real_logits, fake_logits)
        stats[f"disc_acc_{name}"] = discriminator_accuracy(real_logits.detach(), fake_logits.detach())
    stats["disc_loss"] = loss
    return loss, stats


def generator_phase(model, batch: StepBatch) -> Tuple[torch.Tensor, Stats]:
    loss = 0.0
    for name, (fake, _) in batch.adversary_pairs(model).items():
        loss = loss + generator_loss(model.discriminators[name](fake))
    return loss, {"gen_loss": loss}


def classification_phase(model, batch: StepBatch) -> Optional[Tuple[torch.Tensor, Stats]]:
    if batch.labeled is None:
        return None  # no labeled batch this step: no step
    loss = model.classification_loss(*batch.labeled)
    return loss, {"class_loss": loss}


PhaseLoss = Callable[[nn.Module, StepBatch], Optional[Tuple[torch.Tensor, Stats]]]


@dataclass(frozen=True)
class Phase:
    loss: PhaseLoss
    # work done before the phase's parameters are singled out, shared with later phases: the
    # adversaries' codes must keep their graph to the encoder for the generator phase
    prepare: Optional[Callable[[nn.Module, StepBatch], object]] = None


PHASES: Dict[str, Phase] = {
    "recon": Phase(reconstruction_phase),
    "disc": Phase(discriminator_phase, prepare=lambda model, batch: batch.adversary_pairs(model)),
    "gen": Phase(generator_phase, prepare=lambda model, batch: batch.adversary_pairs(model)),
    "classify": Phase(classification_phase),
}


def _no_toggle(optimizer):
    """Outside a Trainer nothing is switched off: each phase zeroes and steps only its optimizer's
    parameters, so the update is the same; only gradients nobody uses are computed too."""
    return nullcontext()


def _plain_backward(loss: torch.Tensor) -> None:
    loss.backward()


def _plain_clip(optimizer, params: List[nn.Parameter], max_norm: float) -> None:
    torch.nn.utils.clip_grad_norm_(params, max_norm)


class EagerStepper:
    """Runs the model's phases in schedule order, eagerly, each with the optimizer of its name.

    `backward`, `clip` and `toggle` default to plain PyTorch; the LightningModule passes its own
    (`manual_backward` for DDP and precision plugins, `clip_gradients`, and `toggled_optimizer`, under
    which gradients flow only to the phase optimizer's parameters).
    """

    name = "eager"

    def __init__(self, params: Dict[str, List[nn.Parameter]], clip_norms: Optional[Dict[str, float]] = None,
                 backward: Callable[[torch.Tensor], None] = _plain_backward,
                 clip: Callable[[object, List[nn.Parameter], float], None] = _plain_clip,
                 toggle: Callable[[object], ContextManager] = _no_toggle):
        unknown = set(params) - set(PHASES)
        if unknown:
            raise ValueError(f"no phase named {sorted(unknown)}; phases: {', '.join(PHASES)}")
        self.params = params
        self.toggle = toggle
        self.clip_norms = clip_norms or {}
        self.backward = backward
        self.clip = clip
        self.stat_phase: Dict[str, str] = {}  # which phase produced each statistic

    def run_phase(self, name: str, model, batch: StepBatch, optimizer) -> Stats:
        phase = PHASES[name]
        if phase.prepare is not None:
            phase.prepare(model, batch)
        with self.toggle(optimizer):
            result = phase.loss(model, batch)
            if result is None:
                return {}
            loss, stats = result
            optimizer.zero_grad(set_to_none=True)
            self.backward(loss)
            if self.clip_norms.get(name):
                self.clip(optimizer, self.params[name], self.clip_norms[name])
            optimizer.step()
            model.constrain(name)  # projections after the step (nonnegative weights)
        self.stat_phase.update({k: name for k in stats})
        return stats

    def step(self, model, batch: StepBatch, optimizers: Dict[str, object]) -> Stats:
        stats: Stats = {}
        for name in PHASES:
            if name in self.params:
                stats.update(self.run_phase(name, model, batch, optimizers[name]))
        return stats

