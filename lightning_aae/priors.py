"""Priors p(z) the adversary matches the codes to.

Every prior draws `sample(n)`; the 2-D ones made of ten parts (mixture, swiss roll) also draw
`sample_given(labels)` from the part of each label (-1: any part), for the label-regularized AAE.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

N_PARTS = 10


class GaussianPrior:
    """Isotropic N(0, std^2 I)."""

    ten_parts = False

    def __init__(self, dim: int, std: float = 1.0):
        self.dim, self.std = dim, float(std)

    def sample(self, n: int, device=None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return torch.randn(n, self.dim, device=device, generator=generator) * self.std

    def std_per_dim(self) -> torch.Tensor:
        """Standard deviation per dimension, from a fixed set of 20,000 draws (deterministic)."""
        return self.sample(20000, device="cpu", generator=torch.Generator().manual_seed(0)).std(0)


class UniformPrior(GaussianPrior):
    """Uniform on the cube [-a, a]^dim with a = std * sqrt(3), so each dimension has standard deviation std."""

    def sample(self, n, device=None, generator=None):
        half = self.std * math.sqrt(3.0)
        return (torch.rand(n, self.dim, device=device, generator=generator) * 2 - 1) * half


class _PartsPrior(GaussianPrior):
    ten_parts = True  # 2-D, and sample_given(labels) draws each label from its own part
    def __init__(self, dim: int, std: float = 1.0):
        if dim != 2:
            raise ValueError(f"the {self.name} prior is 2-D; set model.latent_dim=2 (got {dim})")
        super().__init__(dim, std)

    def sample(self, n, device=None, generator=None):
        parts = torch.randint(0, N_PARTS, (n,), device=device, generator=generator)
        return self.sample_given(parts, generator)

    def sample_given(self, labels: torch.Tensor, generator=None) -> torch.Tensor:
        raise NotImplementedError


class MixturePrior(_PartsPrior):
    """Ten elongated 2-D Gaussians on a circle of radius 4*std, one per digit (the paper's Figure 4)."""

    name = "mixture"

    def sample_given(self, labels, generator=None):
        device = labels.device
        labels = labels.clone()
        unknown = labels < 0
        labels[unknown] = torch.randint(0, N_PARTS, (int(unknown.sum()),), device=device, generator=generator)
        angle = labels.float() * (2 * math.pi / N_PARTS)
        noise = torch.randn(len(labels), 2, device=device, generator=generator)
        radial = 4 * self.std + noise[:, 0] * self.std * 0.5
        tangential = noise[:, 1] * self.std * 0.1
        cos, sin = angle.cos(), angle.sin()
        return torch.stack([radial * cos - tangential * sin, radial * sin + tangential * cos], 1)


class SwissRollPrior(_PartsPrior):
    """A 2-D swiss roll of 1.5 turns out to radius 4*std, cut into ten consecutive segments, one per digit."""

    name = "swiss_roll"

    def sample_given(self, labels, generator=None):
        device = labels.device
        u = torch.rand(len(labels), device=device, generator=generator)
        known = labels >= 0
        t = torch.where(known, (labels.clamp_min(0).float() + u) / N_PARTS, u)
        t = 0.1 + 0.9 * t.sqrt()  # even density along the roll's length
        angle = 3 * math.pi * t
        noise = torch.randn(len(labels), 2, device=device, generator=generator) * 0.05 * self.std
        return torch.stack([angle.cos(), angle.sin()], 1) * (4 * self.std * t).unsqueeze(1) + noise


PRIORS = {"gaussian": GaussianPrior, "mixture": MixturePrior, "swiss_roll": SwissRollPrior, "uniform": UniformPrior}
for _name, _cls in PRIORS.items():
    _cls.name = _name


def make_prior(name: str, dim: int, std: float = 1.0):
    if name not in PRIORS:
        raise ValueError(f"unknown prior '{name}'; valid: {', '.join(PRIORS)}")
    return PRIORS[name](dim, std)
