"""Losses as pure functions of tensors: testable without a model or a Trainer."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def reconstruction_loss(logits: torch.Tensor, x: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Mean per-pixel error between the decoder's logits and images in [0, 1].

    mse compares sigmoid(logits) to x; bce is the Bernoulli negative log-likelihood, computed
    from logits for numerical stability.
    """
    if kind not in RECONSTRUCTION_LOSSES:
        raise ValueError(f"unknown reconstruction loss '{kind}'; valid: {', '.join(RECONSTRUCTION_LOSSES)}")
    return RECONSTRUCTION_LOSSES[kind](logits, x.flatten(1))


RECONSTRUCTION_LOSSES = {
    "mse": lambda logits, x: F.mse_loss(torch.sigmoid(logits), x),
    "bce": lambda logits, x: F.binary_cross_entropy_with_logits(logits, x),
}


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy teaching D that prior samples are real (1) and codes are fake (0)."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: the encoder is rewarded when D calls its codes real."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def discriminator_accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Share of prior samples and codes D classifies correctly (0.5 = fooled, 1 = winning)."""
    correct = (real_logits > 0).float().sum() + (fake_logits <= 0).float().sum()
    return correct / (real_logits.numel() + fake_logits.numel())
