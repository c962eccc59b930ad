"""Parzen-window log-likelihood of MNIST test images under a generator's samples (the paper's Table 1).

A Gaussian kernel of width sigma is put on each of N generated samples; sigma is chosen on the
validation set, and the mean log-likelihood (nats) of the test images is reported with its
standard error. Pixels in [0, 1] (784 dimensions for MNIST, as in the paper's evaluation).
"""
from __future__ import annotations

import math
from typing import Iterable, Tuple

import torch


def _squared_distances(x: torch.Tensor, samples: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
    s2 = (samples * samples).sum(1)
    out = []
    for i in range(0, len(x), chunk):
        xb = x[i: i + chunk]
        d = (xb * xb).sum(1, keepdim=True) + s2 - 2 * xb @ samples.T
        out.append(d.clamp_min_(0))
    return torch.cat(out)


def parzen_log_likelihood(x: torch.Tensor, samples: torch.Tensor, sigma: float,
                          distances: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x) per row of x under the Parzen window of `samples` with kernel width sigma."""
    d2 = _squared_distances(x.double(), samples.double()) if distances is None else distances
    n, dim = samples.shape
    return torch.logsumexp(-d2 / (2 * sigma ** 2), 1) - math.log(n) - dim / 2 * math.log(2 * math.pi * sigma ** 2)


def choose_sigma(val: torch.Tensor, samples: torch.Tensor, sigmas: Iterable[float]) -> Tuple[float, dict]:
    d2 = _squared_distances(val.double(), samples.double())
    scores = {float(s): float(parzen_log_likelihood(val, samples, s, d2).mean()) for s in sigmas}
    return max(scores, key=scores.get), scores


DEFAULT_SIGMAS = tuple(round(0.05 + 0.01 * i, 3) for i in range(26))  # 0.05 .. 0.30


def evaluate_parzen(module, val_x: torch.Tensor, test_x: torch.Tensor, n_samples: int = 10000,
                    sigmas: Iterable[float] = DEFAULT_SIGMAS, n_val: int = 1000, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        samples = torch.cat([module.sample(min(1000, n_samples - i), generator=g).cpu()
                             for i in range(0, n_samples, 1000)])
    sigma, scores = choose_sigma(val_x[:n_val].cpu(), samples, sigmas)
    ll = parzen_log_likelihood(test_x.cpu(), samples, sigma)
    return {"parzen_ll": float(ll.mean()), "parzen_ll_stderr": float(ll.std() / math.sqrt(len(ll))),
            "parzen_sigma": sigma, "parzen_n_samples": n_samples, "parzen_n_test": len(test_x),
            "sigma_scores": scores}
