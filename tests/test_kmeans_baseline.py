"""The k-means floor for cluster error (experiments/benchmarks/kmeans_clusters.py): k-means finds
separated blobs, the scores name clusters by the validation image nearest each centre, and the
command runs on MNIST's real splits."""
import json

import pytest
import torch

from experiments.benchmarks.kmeans_clusters import kmeans, main, score


def blobs(n_per: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = torch.arange(3).repeat_interleave(n_per)
    return centres[labels] + 0.5 * torch.randn(len(labels), 2, generator=g), labels


def test_kmeans_separates_blobs_and_scores_them_without_error():
    x, y = blobs(50, 0)
    centres, iterations = kmeans(x, 3, seed=1)
    assert iterations < 100  # converged
    vx, vy = blobs(20, 1)
    tx, ty = blobs(20, 2)
    s = score(centres, vx, vy, tx, ty)
    assert s["cluster_error"] == 0.0 and s["cluster_error_majority"] == 0.0
    assert s["hungarian_accuracy"] == 1.0 and s["clusters_used"] == 3


def test_score_names_a_cluster_by_the_validation_image_nearest_its_centre():
    centres = torch.tensor([[0.0], [10.0]])
    # the cluster at 0 holds two 7s and one 1, but the 1 sits on the centre: the paper's rule names it 1
    vx, vy = torch.tensor([[0.0], [1.0], [-1.0], [10.0]]), torch.tensor([1, 7, 7, 3])
    tx, ty = torch.tensor([[0.5], [9.0]]), torch.tensor([7, 3])
    s = score(centres, vx, vy, tx, ty)
    assert s["cluster_error"] == 0.5  # the 7 near 0 is called a 1
    assert s["cluster_error_majority"] == 0.0  # majority naming calls that cluster 7


def test_kmeans_refuses_more_clusters_than_points():
    with pytest.raises(ValueError, match="k=4"):
        kmeans(torch.zeros(3, 2), 4, seed=0)


def test_command_runs_on_mnist_splits(tmp_path, data_root):
    out = tmp_path / "km.json"
    assert main(["--clusters", "3", "--seeds", "0", "--iters", "2", "--data-root", str(data_root),
                 "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    assert row["clusters"] == 3 and row["iterations"] <= 2
    assert 0.0 <= row["cluster_error"] <= 1.0 and 1 <= row["clusters_used"] <= 3
