"""Losses as pure functions of tensors: testable without a model or a Trainer."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _pixel_losses(logits: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind not in RECONSTRUCTION_LOSSES:
        raise ValueError(f"unknown reconstruction loss '{kind}'; valid: {', '.join(RECONSTRUCTION_LOSSES)}")
    return RECONSTRUCTION_LOSSES[kind](logits, x.flatten(1))


def reconstruction_loss(logits: torch.Tensor, x: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Mean per-pixel error between the decoder's logits and images in [0, 1].

    mse compares sigmoid(logits) to x; bce is the Bernoulli negative log-likelihood, computed
    from logits for numerical stability; mse_linear compares the decoder's output as it is (the
    linear autoencoder, whose optimum is PCA).
    """
    return _pixel_losses(logits, x, kind).mean()


def per_image_reconstruction_error(logits: torch.Tensor, x: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """The reconstruction loss of each image on its own, [B] (anomaly scores: the mean of them is
    `reconstruction_loss`)."""
    return _pixel_losses(logits, x, kind).mean(1)


# the loss of every pixel, [B, 784]; the reductions above make the batch's and each image's loss
RECONSTRUCTION_LOSSES = {
    "mse": lambda logits, x: (torch.sigmoid(logits) - x).pow(2),
    "bce": lambda logits, x: F.binary_cross_entropy_with_logits(logits, x, reduction="none"),
    "mse_linear": lambda logits, x: (logits - x).pow(2),
}
# how each loss reads the decoder's output as an image in [0, 1]
IMAGE_MAPS = {"mse": torch.sigmoid, "bce": torch.sigmoid, "mse_linear": lambda out: out.clamp(0.0, 1.0)}


SPARSITY_REDUCTIONS = ("sum", "mean")  # model.sparsity_reduce: over code units


def _reduce_units(per_unit: torch.Tensor, reduce: str) -> torch.Tensor:
    return per_unit.sum(-1) if reduce == "sum" else per_unit.mean(-1)


def l1_activity(code: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
    """Mean over the batch of |code| summed (or averaged) over units: Keras' L1 activity regulariser."""
    return _reduce_units(code.abs(), reduce).mean()


def kl_sparsity(code: torch.Tensor, target: float, reduce: str = "sum", eps: float = 1e-6) -> torch.Tensor:
    """KL(target || mean activation) per code unit, summed (or averaged) over units; the code must lie
    in (0, 1) (a sigmoid code). The mean activation of each unit is taken over the batch."""
    rho = code.mean(0).clamp(eps, 1 - eps)
    kl = target * torch.log(target / rho) + (1 - target) * torch.log((1 - target) / (1 - rho))
    return _reduce_units(kl, reduce)


SPARSITY = {"none": None, "l1": lambda code, m: l1_activity(code, m["sparsity_reduce"]),
            "kl": lambda code, m: kl_sparsity(code, m["sparsity_target"], m["sparsity_reduce"])}


def marginal_entropy_gap(probs: torch.Tensor) -> torch.Tensor:
    """log K minus the entropy of the batch's mean q(y|x): 0 when the batch spreads over all K
    categories equally, log K when it uses one. Soft q(y|x) lowers it too: `mean_entropy` is its pair
    (the two summed are log K minus the mutual information of image and category)."""
    return math.log(probs.shape[1]) - _entropy(probs.mean(0))


def mean_entropy(probs: torch.Tensor) -> torch.Tensor:
    """The mean over the batch of each image's entropy of q(y|x): 0 when every q(y|x) is one-hot."""
    return _entropy(probs).mean()


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy of each distribution along the last dimension (0 log 0 taken as 0)."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


NONNEGATIVE = ("none", "penalty", "project")  # model.nonnegative: how the weights are kept >= 0


def negative_weight_penalty(weights) -> torch.Tensor:
    """Half the sum of squares of the negative entries (the nonnegativity-constrained autoencoder's term)."""
    return 0.5 * sum(w.clamp(max=0).pow(2).sum() for w in weights)


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
