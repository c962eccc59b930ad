"""The epoch-time benchmark runs end to end on a few batches (its numbers are not asserted: speed is
measured by the benchmark itself, recorded in docs/benchmarks.md)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_produces_both_numbers(tmp_path, data_root):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "experiments.benchmarks.epoch_time", "--variant", "aae", "semi_supervised",
                           "--batch-size", "100", "--epochs", "2", "--limit-batches", "3", "--rounds", "2", "--data-root",
                           str(data_root), "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["variant"] for r in rows] == ["aae", "semi_supervised"]
    for r in rows:
        assert r["reference_epoch_s"] > 0 and r["project_epoch_s"] > 0 and r["ratio"] > 0
        assert r["project_peak_mb"] > 0 and r["reference_peak_mb"] > 0
        assert r["rounds"] == 2 and len(r["ratio_by_round"]) == 2  # reference and project alternated twice
    assert "ratio" in proc.stdout


def test_concurrent_runs_report_their_aggregate_throughput_against_one_alone(tmp_path, data_root):
    out = tmp_path / "conc.json"
    proc = subprocess.run([sys.executable, "-m", "experiments.benchmarks.epoch_time", "--variant", "aae",
                           "--batch-size", "100", "--epochs", "2", "--limit-batches", "3", "--concurrent", "2",
                           "--data-root", str(data_root), "--json", str(out),
                           "--override", "callbacks.figures.enabled=false"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())
    assert row["concurrent"] == 2 and row["alone_epochs_per_s"] > 0 and row["aggregate_epochs_per_s"] > 0
    assert row["speedup"] == pytest.approx(row["aggregate_epochs_per_s"] / row["alone_epochs_per_s"])
    assert "MPS: not used" in proc.stdout  # no GPU here
