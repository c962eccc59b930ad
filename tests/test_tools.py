"""evaluate, generate and parzen: using a trained model without a training run."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SMALL_NETS
from lightning_aae.config import load_config
from lightning_aae.data import load_mnist
from lightning_aae.evaluate import evaluate
from lightning_aae.generate import main as generate
from lightning_aae.parzen import choose_sigma, parzen_log_likelihood
from lightning_aae.training import train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("tools")
    cfg = load_config("configs/semi_supervised.yaml", [
        f"data.root={data_root}", f"output_dir={out}", "logger.enabled=false", "trainer.max_epochs=1",
        "trainer.limit_train_batches=20", "trainer.limit_val_batches=2", "trainer.enable_progress_bar=false",
        *SMALL_NETS, "callbacks.figures.enabled=false",
        "logger.name=tools"])
    metrics = train(cfg, verbose=False)
    (best,) = (out / "semi_supervised" / "tools" / "checkpoints").glob("epoch*.ckpt")
    return metrics, best


def test_evaluate_reproduces_the_runs_test_metrics(trained, data_root):
    metrics, best = trained
    again = evaluate(str(best), str(data_root), figures=str(best.parent.parent / "eval-figures"))
    assert again["test/n_images"] == 10000
    for key in ("test/accuracy", "test/recon_loss", "test/code_std_rel_err_max"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-6)
    drawn = {p.name for p in (best.parent.parent / "eval-figures").glob("*.png")}
    assert {"test_confusion_matrix.png", "test_style_grid.png", "test_latent_scatter.png"} <= drawn


def test_evaluate_scores_a_clustering_checkpoint_by_the_papers_rule(tmp_path, data_root):
    # clustering names its clusters from validation images: a checkpoint tested on its own needs them too
    cfg = load_config("configs/clustering.yaml", [
        f"data.root={data_root}", f"output_dir={tmp_path}", "logger.enabled=false", "trainer.max_epochs=1",
        "trainer.limit_train_batches=10", "trainer.limit_val_batches=2", "trainer.enable_progress_bar=false",
        *SMALL_NETS, "logger.name=clu"])
    metrics = train(cfg, verbose=False)
    (best,) = (tmp_path / "clustering" / "clu" / "checkpoints").glob("epoch*.ckpt")
    again = evaluate(str(best), str(data_root), figures=str(tmp_path / "eval-figures"))
    assert again["test/n_images"] == 10000
    for key in ("test/cluster_error", "test/cluster_error_majority", "test/hungarian_accuracy", "test/clusters_used"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-6)
    assert (tmp_path / "eval-figures" / "test_clusters.png").is_file()
    # and by digit: the ten rates, weighted by the test set's digit counts, make the cluster error
    digits = torch.bincount(load_mnist(data_root, "test")[1], minlength=10)
    by_digit = torch.tensor([again[f"test/cluster_error_class_{d}"] for d in range(10)], dtype=torch.float64)
    assert (by_digit * digits).sum() / 10000 == pytest.approx(again["test/cluster_error"], abs=1e-5)
    # a checkpoint saved before the namings travelled with it: both are learned from validation at test
    ckpt = torch.load(best, map_location="cpu", weights_only=False)
    for key in ("cluster_assignment", "cluster_assignment_majority"):
        del ckpt[key]
    torch.save(ckpt, tmp_path / "old.ckpt")
    old = evaluate(str(tmp_path / "old.ckpt"), str(data_root))
    assert 0 <= old["test/cluster_error_majority"] <= 1 and 0 <= old["test/cluster_error"] <= 1


def test_evaluate_cli_names_a_missing_checkpoint(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lightning_aae.evaluate", str(tmp_path / "no.ckpt")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no.ckpt" in proc.stderr and "Traceback" not in proc.stderr


def test_generate_draws_a_labelled_grid_and_encodes_a_folder(trained, tmp_path, data_root, capsys):
    _, best = trained
    out = tmp_path / "threes.png"
    assert generate([str(best), "--n", "16", "--label", "3", "--out", str(out)]) == 0
    assert Image.open(out).size == (4 * 30 + 2, 4 * 30 + 2)
    digits = tmp_path / "digits"
    digits.mkdir()
    from lightning_aae.data import load_mnist

    x, _ = load_mnist(data_root, "test")
    for i in range(3):
        Image.fromarray((x[i].reshape(28, 28).numpy() * 255).astype(np.uint8)).save(digits / f"d{i}.png")
    csv_path = tmp_path / "codes.csv"
    assert generate([str(best), "--encode", str(digits), "--out", str(csv_path)]) == 0
    rows = list(csv.reader(csv_path.open()))
    assert rows[0] == ["file"] + [f"z{i}" for i in range(10)] + ["predicted"]
    assert [r[0] for r in rows[1:]] == ["d0.png", "d1.png", "d2.png"]
    assert generate([str(best), "--label", "12", "--out", str(out)]) == 2
    assert "--label must be in 0..9" in capsys.readouterr().err


def test_parzen_prefers_samples_like_the_data():
    torch.manual_seed(0)
    data = torch.rand(200, 20)
    near = data + 0.01 * torch.randn_like(data)
    far = torch.rand(200, 20)
    test = data[:50] + 0.01 * torch.randn(50, 20)
    assert parzen_log_likelihood(test, near, 0.05).mean() > parzen_log_likelihood(test, far, 0.05).mean()
    sigma, scores = choose_sigma(test, near, [0.001, 0.02, 1.0])
    assert sigma == max(scores, key=scores.get) == 0.02
    # one sample, one point: the log-density of a single Gaussian
    one = parzen_log_likelihood(torch.zeros(1, 2), torch.zeros(1, 2), 1.0)
    assert one.item() == pytest.approx(-np.log(2 * np.pi))


def test_parzen_sigma_is_chosen_on_validation_images_never_on_test_images():
    from lightning_aae.parzen import evaluate_parzen

    g = torch.Generator().manual_seed(0)
    samples = torch.rand(300, 20, generator=g)

    class Generator:  # stands in for a trained model: always the same samples
        def sample(self, n, generator=None):
            return samples[:n]

    val = samples[:100] + 0.02 * torch.randn(100, 20, generator=g)  # close to the samples: small sigma wins
    test = torch.rand(100, 20, generator=g)  # far from them: a large sigma would score better
    grid = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)
    result = evaluate_parzen(Generator(), val, test, n_samples=300, sigmas=grid, n_val=100)
    on_val, _ = choose_sigma(val, samples, grid)
    on_test, _ = choose_sigma(test, samples, grid)
    assert on_val != on_test
    assert result["parzen_sigma"] == on_val
    assert result["parzen_ll"] == pytest.approx(parzen_log_likelihood(test, samples, on_val).mean().item())


def _run_folder(path, values, metric="val/cluster_error", kept=False):
    """A run folder as train() leaves it: csv/version_0/metrics.csv from Lightning's CSVLogger (a train row
    between the epoch rows), and with `kept` a result.json keeping the curve of the checkpoint's metric."""
    (path / "csv" / "version_0").mkdir(parents=True)
    lines = ["epoch,step,train/recon_loss," + metric]
    for e, v in enumerate(values):
        lines += [f"{e},{10 * e + 5},0.1,", f"{e},{10 * e + 9},,{v}"]
    (path / "csv" / "version_0" / "metrics.csv").write_text("\n".join(lines) + "\n")
    if kept:
        (path / "result.json").write_text(json.dumps({"curve": {"metric": metric, "first_epoch": 0, "values": kept}}))
    return path


def test_curves_read_run_folders_and_the_registry_and_draw_each_run(tmp_path, capsys):
    from experiments.curves import main as curves, read_curve

    a = _run_folder(tmp_path / "a", [0.2, 0.1, 0.15], metric="val/error")
    assert read_curve([a], "val/error") == {0: 0.2, 1: 0.1, 2: 0.15}
    # a fork keeps the curve of the run it came from in result.json: that wins for the checkpoint's metric
    fork = _run_folder(tmp_path / "fork", [0.3], metric="val/error", kept=[0.5, 0.4, 0.3])
    assert read_curve([fork], "val/error") == {0: 0.5, 1: 0.4, 2: 0.3}
    reg = tmp_path / "r.jsonl"
    reg.write_text(json.dumps({"run_dir": "runs/x/b", "val_curve": {"metric": "val/error", "first_epoch": 1,
                                                                     "values": [0.3, None, 0.2]}}) + "\n")
    assert read_curve([f"{reg}#b"], "val/error") == {1: 0.3, 3: 0.2}
    out = tmp_path / "cmp.png"
    assert curves([f"a={a}", f"b={reg}#b", "--percent", "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 100
    assert curves([f"a={a}", "--metric", "val/cluster_error", "--out", str(tmp_path / "x.png")]) != 0
    assert "have no column val/cluster_error" in capsys.readouterr().err
    assert curves([str(a), "--out", str(tmp_path / "y.png")]) != 0  # no NAME=
    assert "NAME=SOURCE" in capsys.readouterr().err
    assert curves([f"a={tmp_path / 'nothing'}", "--out", str(tmp_path / "y.png")]) != 0
    assert "not a run folder nor REGISTRY#RUN" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()
    # smoothed, from a later epoch on; an epoch range a run never reached is named, no file written
    assert curves([f"a={a}", "--smooth", "2", "--first-epoch", "1", "--out", str(tmp_path / "s.png")]) == 0
    assert curves([f"a={a}", "--first-epoch", "5", "--out", str(tmp_path / "z.png")]) != 0
    assert "a: no epoch from 5 on (its last is 2)" in capsys.readouterr().err
    assert curves([f"a={a}", "--smooth", "0", "--out", str(tmp_path / "z.png")]) != 0
    assert "--smooth must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "z.png").exists()


def test_curves_windows_print_each_runs_mean_and_mark_the_lowest(tmp_path, capsys):
    """The restart rule's comparison: each run's mean over an epoch window, the lowest marked; a
    window a run has not fully reached is an error naming the missing epochs, not a shorter mean."""
    from experiments.curves import main as curves, parse_windows, window_stats

    a = _run_folder(tmp_path / "a", [0.40, 0.30, 0.20, 0.24, 0.22])
    b = _run_folder(tmp_path / "b", [0.30, 0.35, 0.25, 0.21, 0.21])
    assert parse_windows("2-3,1-") == [(2, 3), (1, None)]
    assert window_stats("a", {0: 0.4, 1: 0.3, 2: 0.2}, 1, None) == pytest.approx((0.25, 0.2, 0.3, 2))
    assert curves([f"a={a}", f"b={b}", "--metric", "val/cluster_error", "--percent", "--windows", "0-1,2-4"]) == 0
    rows = {line.split(" | ")[0].strip("| "): line for line in capsys.readouterr().out.splitlines()}
    # epochs 0-1: a 35 %, b 32.5 % (b lowest); epochs 2-4: a 22 %, b 22.33 % (a lowest)
    assert "35.00 % (30.00-40.00, 2)" in rows["a"] and "*32.50 % (30.00-35.00, 2)" in rows["b"]
    assert "*22.00 % (20.00-24.00, 3)" in rows["a"] and "22.33 % (21.00-25.00, 3)" in rows["b"]
    # a closed window past a run's end, a malformed window, and neither --out nor --windows
    assert curves([f"a={a}", "--metric", "val/cluster_error", "--windows", "3-6"]) != 0
    assert "a: no value for epoch(s) 5-6 of window 3-6 (its curve has epochs 0-4)" in capsys.readouterr().err
    assert curves([f"a={a}", "--metric", "val/cluster_error", "--windows", "5-3"]) != 0
    assert "--windows: expected FIRST-LAST" in capsys.readouterr().err
    assert curves([f"a={a}", "--metric", "val/cluster_error"]) != 0
    assert "nothing to do" in capsys.readouterr().err


def test_trailing_mean_averages_each_value_with_those_before_it():
    from experiments.curves import trailing_mean

    assert trailing_mean([4.0, 2.0, 6.0, 0.0], 2) == [4.0, 3.0, 4.0, 3.0]
    assert trailing_mean([4.0, 2.0, 6.0], 3) == [4.0, 3.0, 4.0]
    assert trailing_mean([1.0, 5.0], 1) == [1.0, 5.0]
