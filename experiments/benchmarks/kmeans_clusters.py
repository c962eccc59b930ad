"""What clustering raw pixels gives: k-means on the 50,000 training images (the clustering runs' own
split), scored on the test set exactly as the AAE is, so a cluster error has a floor to stand on.

    python -m experiments.benchmarks.kmeans_clusters                          # 16 and 30 clusters, seeds 0-2
    python -m experiments.benchmarks.kmeans_clusters --clusters 30 --seeds 0 --json km.json

Each cluster is named by the paper's rule with the distance to its centre in place of q(y|x): the
digit of the validation image closest to the centre (`assign_clusters_by_max_posterior` on minus the
distance); majority naming beside it. The clustering is scikit-learn's KMeans (k-means++, one start).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from lightning_aae.data import MNISTDataModule
from lightning_aae.metrics import (ClusterCounts, assign_clusters_by_majority, assign_clusters_by_max_posterior,
                                   cluster_error, hungarian_accuracy)


def kmeans(x: torch.Tensor, k: int, seed: int, iters: int = 100) -> tuple[torch.Tensor, int]:
    """scikit-learn's KMeans on the rows of x; returns (centres [k, D], iterations run)."""
    from sklearn.cluster import KMeans

    if not 0 < k <= len(x):
        raise ValueError(f"k-means needs 0 < k <= {len(x)} points, got k={k}")
    fit = KMeans(n_clusters=k, n_init=1, max_iter=iters, random_state=seed).fit(x.numpy())
    return torch.as_tensor(fit.cluster_centers_, dtype=x.dtype), int(fit.n_iter_)


def score(centres: torch.Tensor, val_x, val_y, test_x, test_y) -> dict:
    """The AAE's cluster scores for a nearest-centre clustering: names from validation, errors on test."""
    k = len(centres)
    val_dist = torch.cdist(val_x, centres)
    names = assign_clusters_by_max_posterior(-val_dist, val_y)
    val_counts, test_counts = ClusterCounts(k), ClusterCounts(k)
    val_counts.update(val_dist.argmin(1), val_y)
    test_clusters = torch.cdist(test_x, centres).argmin(1)
    test_counts.update(test_clusters, test_y)
    counts = test_counts.compute()
    return {"cluster_error": float(cluster_error(counts, names)),
            "cluster_error_majority": float(cluster_error(counts, assign_clusters_by_majority(val_counts.compute()))),
            "hungarian_accuracy": hungarian_accuracy(counts),
            "clusters_used": int((counts.sum(1) > 0).sum())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clusters", type=int, nargs="+", default=[16, 30])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--data-root", default=os.environ.get("AAE_DATA_DIR", "data"))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", default=None, help="write the rows here too")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dm = MNISTDataModule(root=args.data_root, download=False, on_device=False)
    dm.setup()
    train_x, val_x, test_x = (d.x.flatten(1).float() for d in (dm.unlabeled, dm.val, dm.test))
    rows = []
    for k in args.clusters:
        for seed in args.seeds:
            centres, it = kmeans(train_x, k, seed, args.iters)
            row = {"clusters": k, "seed": seed, "iterations": it,
                   **score(centres, val_x, dm.val.y, test_x, dm.test.y)}
            rows.append(row)
            print(f"k={k} seed={seed} iterations={it}: test cluster error {100 * row['cluster_error']:.2f} % "
                  f"(majority naming {100 * row['cluster_error_majority']:.2f} %), Hungarian accuracy "
                  f"{100 * row['hungarian_accuracy']:.1f} %, {row['clusters_used']} clusters used", flush=True)
        errs = torch.tensor([100 * r["cluster_error"] for r in rows if r["clusters"] == k])
        if len(errs) > 1:
            print(f"k={k}: {errs.mean():.2f} ± {errs.std():.2f} % over {len(errs)} seeds")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
