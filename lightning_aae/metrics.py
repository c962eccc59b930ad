"""torchmetrics that the variants share; they synchronise across processes themselves."""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torchmetrics import Metric


class CodeMoments(Metric):
    """Per-dimension mean and standard deviation of latent codes over a whole evaluation set.

    Keeps sums, not samples, so it is exact under DDP and costs no memory per image.
    """

    full_state_update = False

    def __init__(self, dim: int):
        super().__init__()
        self.add_state("total", default=torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total_sq", default=torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, z: torch.Tensor) -> None:
        z = z.detach().double()
        self.total += z.sum(0)
        self.total_sq += (z * z).sum(0)
        self.count += z.shape[0]

    def compute(self) -> dict:
        mean = self.total / self.count
        var = (self.total_sq / self.count - mean * mean).clamp_min(0)
        return {"mean": mean.float(), "std": var.sqrt().float(), "count": self.count}


class ClusterCounts(Metric):
    """Counts of (cluster, true digit) pairs over an evaluation set: the matrix both cluster scores need."""

    full_state_update = False

    def __init__(self, n_clusters: int, n_classes: int = 10):
        super().__init__()
        self.n_clusters, self.n_classes = n_clusters, n_classes
        self.add_state("counts", default=torch.zeros(n_clusters, n_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, clusters: torch.Tensor, labels: torch.Tensor) -> None:
        flat = clusters.long() * self.n_classes + labels.long()
        self.counts += torch.bincount(flat, minlength=self.n_clusters * self.n_classes).view_as(self.counts)

    def compute(self) -> torch.Tensor:
        return self.counts


def cluster_error(counts: torch.Tensor, cluster_labels: torch.Tensor) -> torch.Tensor:
    """Share of images whose cluster's assigned digit is not their digit (the paper's rule, Section 6).

    counts: [n_clusters, n_classes] (cluster, true digit) counts; cluster_labels: the digit each
    cluster stands for.
    """
    correct = counts.gather(1, cluster_labels.long().view(-1, 1).to(counts.device)).sum()
    return 1 - correct.double() / counts.sum().clamp_min(1)


def hungarian_accuracy(counts: torch.Tensor) -> float:
    """Accuracy under the best one-to-one matching of clusters to digits (clusters left unmatched count as wrong)."""
    c = counts.detach().cpu().numpy().astype(np.int64)
    rows, cols = linear_sum_assignment(-c)
    return float(c[rows, cols].sum() / max(1, c.sum()))


def assign_clusters_by_max_posterior(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each cluster takes the digit of the image with the highest q(y = cluster | x) (the paper's rule)."""
    return labels[probs.argmax(0)]
