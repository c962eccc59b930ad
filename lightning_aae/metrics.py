"""torchmetrics that the variants share; they synchronise across processes themselves."""
from __future__ import annotations

from typing import Optional

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


def cluster_error_by_class(counts: torch.Tensor, cluster_labels: torch.Tensor) -> torch.Tensor:
    """Per true class, the share of its images whose cluster is named after another class [n_classes]
    (NaN for a class without images). Weighted by the classes' sizes they average to cluster_error."""
    named = torch.nn.functional.one_hot(cluster_labels.long().to(counts.device), counts.shape[1]).bool()
    correct = (counts * named).sum(0)
    return 1 - correct.double() / counts.sum(0).double()


def hungarian_accuracy(counts: torch.Tensor) -> float:
    """Accuracy under the best one-to-one matching of clusters to digits (clusters left unmatched count as wrong)."""
    c = counts.detach().cpu().numpy().astype(np.int64)
    rows, cols = linear_sum_assignment(-c)
    return float(c[rows, cols].sum() / max(1, c.sum()))


def assign_clusters_by_max_posterior(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each cluster takes the digit of the image with the highest q(y = cluster | x) (the paper's rule)."""
    return labels[probs.argmax(0)]


def assign_clusters_by_majority(counts: torch.Tensor) -> torch.Tensor:
    """Each cluster takes the most common digit among its (validation) images: not the paper's rule,
    a diagnostic beside it. Its error is what impure clusters alone cost; the gap up to the paper's
    cluster error is what naming a cluster after one image costs. Empty clusters get digit 0."""
    return counts.argmax(1)


class MaxPosteriorRule(Metric):
    """The paper's cluster rule, streaming: for each cluster, the digit of the image with the highest
    q(y = cluster | x) seen so far. One pass, alongside the other metrics; exact under DDP (each
    process keeps its best per cluster, the best of those wins)."""

    full_state_update = False

    def __init__(self, n_clusters: int):
        super().__init__()
        self.n_clusters = n_clusters
        self.add_state("best_prob", default=torch.full((n_clusters,), -1.0), dist_reduce_fx="cat")
        self.add_state("best_label", default=torch.full((n_clusters,), -1, dtype=torch.long), dist_reduce_fx="cat")

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        prob, idx = probs.detach().float().max(0)
        better = prob > self.best_prob  # strict: the first image wins ties, as argmax over the whole set does
        self.best_prob = torch.where(better, prob, self.best_prob)
        self.best_label = torch.where(better, labels[idx].long(), self.best_label)

    def compute(self) -> torch.Tensor:
        prob, label = self.best_prob.view(-1, self.n_clusters), self.best_label.view(-1, self.n_clusters)
        return label.gather(0, prob.argmax(0, keepdim=True)).squeeze(0)


class EvalBundle(torch.nn.Module):
    """A few torchmetrics evaluation feeds batch by batch. `out` is the module's forward of the batch;
    compute returns {'<stage>/<name>': value}. Variants list the bundles they report."""

    def update(self, module, x: torch.Tensor, y: torch.Tensor, out: dict) -> None:
        raise NotImplementedError

    def compute(self, module, stage: str) -> dict:
        raise NotImplementedError

    def reset(self) -> None:
        for m in self.children():
            m.reset()


NEAR_ZERO = 0.01  # |code| below this counts as an inactive unit in code_near_zero


def hoyer_sparsity(code: torch.Tensor) -> torch.Tensor:
    """Per row, (sqrt(n) - L1/L2) / (sqrt(n) - 1): 0 when all units are equal in size, 1 when one
    unit carries everything; unchanged by rescaling the code (an L1 penalty cannot game it)."""
    n = code.shape[1]
    if n < 2:
        return torch.zeros(len(code), device=code.device)
    norm = code.norm(dim=1)
    ratio = code.abs().sum(1) / norm.clamp_min(1e-12)
    # an all-zero row has no active unit: counted as fully sparse (1), not as the formula's sqrt(n)/(sqrt(n)-1)
    return torch.where(norm > 0, (n ** 0.5 - ratio) / (n ** 0.5 - 1), torch.ones_like(norm))


class ReconstructionMetrics(EvalBundle):
    """Reconstruction error, the codes' moments and sparsity (mean |code|, share of entries below
    NEAR_ZERO, Hoyer sparsity); with match_prior, how far their spread is from the prior's."""

    def __init__(self, latent_dim: int, recon_kind: str = "mse", match_prior: bool = True):
        super().__init__()
        from torchmetrics import MeanMetric

        self.recon, self.codes = MeanMetric(), CodeMoments(latent_dim)
        self.mean_abs, self.near_zero, self.hoyer = MeanMetric(), MeanMetric(), MeanMetric()
        self.latent_dim, self.recon_kind, self.match_prior = latent_dim, recon_kind, match_prior

    def update(self, module, x, y, out):
        from .losses import reconstruction_loss

        self.recon.update(reconstruction_loss(out["logits"], x, self.recon_kind), weight=x.shape[0])
        code = out["code"].detach()
        self.codes.update(code)
        size = code.abs()
        self.mean_abs.update(size.mean(), weight=code.numel())
        self.near_zero.update((size < NEAR_ZERO).float().mean(), weight=code.numel())
        self.hoyer.update(hoyer_sparsity(code).mean(), weight=code.shape[0])

    def compute(self, module, stage):
        stats = self.codes.compute()
        out = {f"{stage}/recon_loss": self.recon.compute(), f"{stage}/n_images": stats["count"].float(),
               f"{stage}/code_mean_abs_max": stats["mean"].abs().max(),
               f"{stage}/code_mean_abs": self.mean_abs.compute(), f"{stage}/code_near_zero": self.near_zero.compute(),
               f"{stage}/code_hoyer": self.hoyer.compute()}
        if self.match_prior:
            prior_std = module.prior.std_per_dim().to(stats["std"].device)
            # 0 when every dimension spreads like the prior; 0.25 = off by 25% somewhere
            out[f"{stage}/code_std_rel_err_max"] = (stats["std"] / prior_std - 1).abs().max()
        if self.latent_dim <= 8:
            for i, (m, s) in enumerate(zip(stats["mean"], stats["std"])):
                out[f"{stage}/code_mean_{i}"], out[f"{stage}/code_std_{i}"] = m, s
        return out


class AccuracyMetrics(EvalBundle):
    """Accuracy and error of q(y|x)'s most probable digit."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        from torchmetrics.classification import MulticlassAccuracy

        self.accuracy = MulticlassAccuracy(num_classes=n_classes, average="micro")

    def update(self, module, x, y, out):
        self.accuracy.update(out["probs"].argmax(1), y)

    def compute(self, module, stage):
        acc = self.accuracy.compute()
        return {f"{stage}/accuracy": acc, f"{stage}/error": 1 - acc}


class ClusterMetrics(EvalBundle):
    """Cluster error by the paper's rule and Hungarian accuracy. On validation the rule's assignment
    is learned in the same pass and kept as `module.cluster_assignment` (saved with checkpoints);
    the test stage scores with it, so clusters are never named from test images. Beside it,
    `cluster_error_majority`: clusters named by their validation images' most common digit."""

    def __init__(self, n_clusters: int, learn_assignment: bool, n_classes: int = 10):
        super().__init__()
        self.counts = ClusterCounts(n_clusters, n_classes)
        self.rule = MaxPosteriorRule(n_clusters) if learn_assignment else None

    def update(self, module, x, y, out):
        self.counts.update(out["probs"].argmax(1), y)
        if self.rule is not None:
            self.rule.update(out["probs"], y)

    def compute(self, module, stage):
        counts = self.counts.compute()
        if self.rule is not None:
            module.cluster_assignment = self.rule.compute()
            module.cluster_assignment_majority = assign_clusters_by_majority(counts)
        values = {f"{stage}/cluster_error": cluster_error(counts, module.cluster_assignment).float(),
                  f"{stage}/hungarian_accuracy": torch.tensor(hungarian_accuracy(counts), device=counts.device),
                  f"{stage}/clusters_used": (counts.sum(1) > 0).sum().float()}
        majority = module.cluster_assignment_majority
        if majority is not None:
            values[f"{stage}/cluster_error_majority"] = cluster_error(counts, majority).float()
        if stage == "test":  # which classes the error comes from (kept out of the per-epoch validation logs)
            by_class = cluster_error_by_class(counts, module.cluster_assignment).float()
            values.update({f"test/cluster_error_class_{c}": v for c, v in enumerate(by_class) if not v.isnan()})
        return values


def compute_all(bundles, module, stage: str) -> dict:
    """Every bundle's values for the stage (synchronised across processes), then reset for the next pass."""
    values = {}
    for bundle in bundles:
        values.update(bundle.compute(module, stage))
        bundle.reset()
    return values


class RunningMeans:
    """Training statistics summed on the device, read every `every` batches and once per epoch,
    so the hot loop never waits for the host."""

    def __init__(self):
        self.names: list = []
        self._interval = self._epoch = None
        self.interval_batches = self.epoch_batches = 0
        self.flushed: Optional[dict] = None  # the interval means read by the latest add(), else None

    def start_epoch(self) -> None:
        self.interval_batches = self.epoch_batches = 0
        if self._interval is not None:
            self._interval.zero_()
            self._epoch.zero_()

    def add(self, stats: dict, every: int) -> Optional[dict]:
        values = torch.stack([v.detach().float() for v in stats.values()])
        if self._interval is None or self.names != list(stats):
            self.names = list(stats)
            self._interval, self._epoch = torch.zeros_like(values), torch.zeros_like(values)
        self._interval += values
        self._epoch += values
        self.interval_batches += 1
        self.epoch_batches += 1
        self.flushed = None
        if self.interval_batches >= every:
            self.flushed = dict(zip(self.names, self._interval / self.interval_batches))
            self._interval.zero_()
            self.interval_batches = 0
        return self.flushed

    def epoch_means(self) -> Optional[dict]:
        if not self.epoch_batches:
            return None
        return dict(zip(self.names, self._epoch / self.epoch_batches))
