"""The results registry and the tables generated from it."""
import json
import platform

import pytest

from lightning_aae import results


def _result(seed, error, labels_per_class=100, recipe="adam-noise"):
    cfg = {"seed": seed, "model": {"variant": "semi_supervised", "latent_dim": 10, "n_clusters": 16},
           "data": {"labels_per_class": labels_per_class}, "num_threads": 1}
    return {"config": cfg, "metrics": {"test/error": error, "test/accuracy": 1 - error}, "epochs": 70,
            "best_epoch": 60, "wall_s": 4000.0, "command": "python train.py --config configs/semi_supervised.yaml",
            "commit": "abc", "date": "2026-11-23", "hardware": "cpu", "run_dir": "runs/x", "recipe": recipe}


def test_a_run_becomes_one_registry_line_with_what_the_issue_asks(tmp_path):
    reg = tmp_path / "results.jsonl"
    results.append(results.registry_line(_result(0, 0.0291)), reg)
    (line,) = results.read(reg)
    assert line["experiment"] == "semi_supervised" and line["labels"] == 1000 and line["seed"] == 0
    assert line["metric"] == "test_error" and line["value"] == pytest.approx(2.91)
    assert all(line[k] is not None for k in results.REQUIRED)


def test_table_gives_mean_and_sample_std_over_seeds_per_recipe(tmp_path):
    rows = [results.registry_line(r) for r in
            (_result(0, 0.02), _result(1, 0.03), _result(0, 0.05, labels_per_class=10), _result(0, 0.04, recipe="sgd"))]
    text = results.table(rows)
    (adam_1000,) = [l for l in text.splitlines() if "labels 1000" in l and "adam-noise" in l]
    assert "2.50 ± 0.71" in adam_1000 and "| 2 |" in adam_1000 and "1.60 ± 0.08" in adam_1000
    (single,) = [l for l in text.splitlines() if "labels 100 " in l]
    assert "| 5.00 |" in single and "| 1 |" in single  # one seed: no spread is claimed


def test_table_is_written_between_its_markers_only(tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text(f"# Results\n\nintro\n\n{results.BEGIN}\nold table\n{results.END}\n\nafter\n")
    results.write_table(doc, [results.registry_line(_result(0, 0.03))])
    text = doc.read_text()
    assert "old table" not in text and "| 3.00 |" in text and text.startswith("# Results\n\nintro")
    assert text.rstrip().endswith("after")


def test_incomplete_lines_and_unfinished_runs_are_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="lacks commit"):
        results.append({**results.registry_line(_result(0, 0.03)), "commit": None}, tmp_path / "r.jsonl")
    assert results.main(["record", str(tmp_path), "--registry", str(tmp_path / "r.jsonl")]) == 2
    assert "result.json not found" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "result.json").write_text(json.dumps(_result(3, 0.04)))
    assert results.main(["record", str(tmp_path / "run"), "--registry", str(tmp_path / "r.jsonl")]) == 0
    assert results.read(tmp_path / "r.jsonl")[0]["seed"] == 3


def test_a_run_records_the_commit_it_started_from(small_overrides, tmp_path, monkeypatch):
    from lightning_aae.config import load_config
    from lightning_aae.training import train

    commits = iter(["start-commit", "later-commit"])
    monkeypatch.setattr(results, "git_commit", lambda: next(commits))
    train(load_config("configs/autoencoder.yaml", small_overrides + ["trainer.max_epochs=1",
                                                                     "trainer.limit_train_batches=2"]), verbose=False)
    (record,) = (tmp_path / "runs").glob("autoencoder/*/result.json")
    written = json.loads(record.read_text())
    assert written["commit"] == "start-commit" and written["epochs"] == 1 and written["wall_s"] > 0


def test_an_autoencoder_run_records_its_reconstruction_error_and_code_sparsity(tmp_path):
    result = _result(0, 0.0)
    result["config"]["model"] = {"variant": "autoencoder", "latent_dim": 32}
    result["metrics"] = {"test/recon_loss": 0.0123456, "test/code_mean_abs": 0.5, "test/code_near_zero": 0.25,
                         "test/code_hoyer": 0.4}
    lines = results.registry_lines(result, recipe="family-plain")
    assert [(l["metric"], l["value"]) for l in lines] == [
        ("recon_loss", 0.012346), ("code_mean_abs", 0.5), ("code_near_zero", 25.0), ("code_hoyer", 0.4)]
    second = results.registry_lines({**result, "config": {**result["config"], "seed": 1},
                                     "metrics": {**result["metrics"], "test/recon_loss": 0.0143456}}, recipe="family-plain")
    assert "family-plain" not in results.table(lines + second)  # the family has its own table
    (row,) = [l for l in results.family_table(lines + second).splitlines() if "family-plain" in l]
    assert row == "| family-plain | 70 | 0.01335 ± 0.00141 | 0.5000 ± 0.0000 | 25.00 ± 0.00 | 0.4000 ± 0.0000 | 0, 1 |"
    del result["metrics"]["test/code_hoyer"]
    with pytest.raises(ValueError, match="test/code_hoyer"):
        results.registry_lines(result)


def test_evaluate_parzen_adds_to_the_run_result_and_records_as_the_parzen_experiment(small_overrides, tmp_path):
    from lightning_aae.config import load_config
    from lightning_aae.evaluate import main as evaluate
    from lightning_aae.training import train

    train(load_config("configs/parzen.yaml", small_overrides + [
        "trainer.max_epochs=1", "trainer.limit_train_batches=3"]), verbose=False)
    (run,) = (tmp_path / "runs" / "aae").iterdir()
    assert evaluate([str(run / "checkpoints" / "last.ckpt"), "--parzen", "--samples", "300"]) == 0
    saved = json.loads((run / "result.json").read_text())["metrics"]
    assert {"test/parzen_ll", "test/parzen_ll_stderr", "test/parzen_sigma"} <= set(saved)
    reg = tmp_path / "r.jsonl"
    assert results.main(["record", str(run), "--experiment", "parzen", "--registry", str(reg)]) == 0
    lines = results.read(reg)
    assert [l["metric"] for l in lines] == ["parzen_ll", "parzen_ll_stderr", "parzen_sigma"]
    assert lines[0]["experiment"] == "parzen" and lines[0]["latent_dim"] == 8
    assert lines[0]["value"] == pytest.approx(saved["test/parzen_ll"], abs=1e-4)
    rows = results.table(lines).splitlines()[2:]
    assert rows[0].startswith("| parzen | latent_dim 8 |") and rows[0].endswith("| 340 ± 2 |")  # the paper's, beside ours
    assert [r.endswith("|  |") for r in rows[1:]] == [True, True]  # stderr and sigma: no paper number beside them


def test_a_run_is_recorded_whole_or_not_at_all(tmp_path):
    reg = tmp_path / "r.jsonl"
    lines = results.registry_lines({**_result(0, 0.0), "config": {**_result(0, 0.0)["config"], "model": {
        "variant": "autoencoder", "latent_dim": 32}}, "metrics": {"test/recon_loss": 0.01, "test/code_mean_abs": 0.5,
        "test/code_near_zero": 0.2, "test/code_hoyer": 0.3}})
    broken = [*lines[:3], {**lines[3], "commit": None}]
    with pytest.raises(ValueError, match="commit"):
        results.append(broken, reg)
    assert not reg.exists()
    results.append(lines, reg)
    assert [l["metric"] for l in results.read(reg)] == ["recon_loss", "code_mean_abs", "code_near_zero", "code_hoyer"]


def test_the_committed_tables_are_the_ones_the_committed_registry_generates():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    rows = results.read(root / "docs" / "results.jsonl")
    text = (root / "docs" / "results.md").read_text()
    assert f"{results.BEGIN}\n{results.table(rows)}\n{results.END}" in text
    assert f"{results.FAMILY_BEGIN}\n{results.family_table(rows)}\n{results.FAMILY_END}" in text
    assert all(all(r.get(k) is not None for k in results.REQUIRED) for r in rows)


def test_a_run_resumed_from_an_older_checkpoint_records_both_parts(tmp_path):
    first, second = _result(1, 0.30), _result(1, 0.25)
    first.update(epochs=40, wall_s=3000.0, commit="c40", command="python train.py trainer.max_epochs=40")
    second.update(epochs=80, wall_s=2000.0, commit="c80", command="python train.py trainer.max_epochs=80 ckpt_path=x")
    for name, result in (("e40", first), ("e80", second)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(json.dumps(result))
    registry = tmp_path / "r.jsonl"
    assert results.main(["record", str(tmp_path / "e80"), "--resumed-from", str(tmp_path / "e40"),
                         "--registry", str(registry)]) == 0
    (line,) = results.read(registry)
    assert line["wall_s"] == 5000.0 and line["commit"] == "c80" and line["epochs"] == 80
    assert [(s["commit"], s["wall_s"]) for s in line["segments"]] == [("c40", 3000.0), ("c80", 2000.0)]
    assert line["segments"][0]["epochs"] == 40


def test_resumed_from_refuses_another_seed_a_longer_run_and_counting_twice(tmp_path):
    later = _result(1, 0.25)
    later["epochs"] = 80
    for bad in (dict(seed=2, epochs=40), dict(seed=1, epochs=80)):
        earlier = _result(bad["seed"], 0.3)
        earlier["epochs"] = bad["epochs"]
        (tmp_path / "e").mkdir(exist_ok=True)
        (tmp_path / "e" / "result.json").write_text(json.dumps(earlier))
        with pytest.raises(ValueError, match="cannot precede"):
            results.resumed_from(later, tmp_path / "e")
    counted = results.with_earlier(later, [{"commit": "a", "command": "c", "date": "d", "wall_s": 1.0}])
    with pytest.raises(ValueError, match="twice"):
        results.resumed_from(counted, tmp_path / "e")


def test_a_run_without_a_kept_curve_is_recorded_with_the_curve_of_its_logs(tmp_path, capsys):
    result = {**_result(0, 0.03), "epochs": 3, "best_epoch": 1}
    result["config"]["callbacks"] = {"checkpoint": {"monitor": "val/error"}}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "result.json").write_text(json.dumps(result))
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_text("wandb: noise\nepoch 0 60.1s val/recon_loss=0.1 val/error=0.0512\nepoch 1 59.8s val/error=0.04\n")
    second.write_text("epoch 1 61.0s val/error=0.0301\nepoch 2 60.0s val/error=0.035\n")  # resumed: epoch 1 again
    reg = tmp_path / "r.jsonl"
    assert results.main(["record", str(tmp_path / "run"), "--log", str(first), str(second), "--registry", str(reg)]) == 0
    assert results.read(reg)[0]["val_curve"] == {"metric": "val/error", "first_epoch": 0, "values": [0.0512, 0.0301, 0.035]}
    # logs that cannot be this run's (past its last epoch), two runs for one log, a run with its own curve
    second.write_text("epoch 3 60.0s val/error=0.035\n")
    assert results.main(["record", str(tmp_path / "run"), "--log", str(first), str(second), "--registry", str(reg)]) == 2
    assert "logs of another run?" in capsys.readouterr().err
    assert results.main(["record", str(tmp_path / "run"), str(tmp_path / "run"), "--log", str(first),
                         "--registry", str(reg)]) == 2
    assert "give one run folder" in capsys.readouterr().err
    (tmp_path / "run" / "result.json").write_text(json.dumps({**result, "curve": {"metric": "val/error",
                                                                                  "first_epoch": 0, "values": [0.1]}}))
    assert results.main(["record", str(tmp_path / "run"), "--log", str(first), "--registry", str(reg)]) == 2
    assert "has its own validation curve" in capsys.readouterr().err
    assert len(results.read(reg)) == 1  # nothing refused was recorded


def _clu_line(seed, run, value, epochs, curve=None):
    line = {"experiment": "clustering", "variant": "clustering", "clusters": 30, "latent_dim": 5, "recipe": "late-drop",
            "seed": seed, "epochs": epochs, "best_epoch": epochs - 5, "metric": "cluster_error", "value": value,
            "command": f"python train.py seed={seed}", "commit": "abc", "date": "2026-12-01", "hardware": "cpu",
            "wall_s": 100.0, "run_dir": f"runs/clustering/{run}"}
    if curve is not None:
        line["val_curve"] = {"metric": "val/cluster_error", "first_epoch": 0, "values": curve}
    return line


def _select(reg, *extra):
    return results.main(["select", "--registry", str(reg), "--recipe", "restart", "--percent", *extra])


def test_select_keeps_the_lower_validation_mean_and_records_its_run_as_the_seed_it_reports(tmp_path, capsys):
    reg = tmp_path / "results.jsonl"
    # trunk 2 lower over epochs 2-3 by 1 point; trunk 7 lower over 4-5
    results.append([_clu_line(2, "t2", 24.0, 6, [0.3, 0.3, 0.25, 0.25, 0.30, 0.30]),
                    _clu_line(7, "t7", 23.0, 6, [0.3, 0.3, 0.26, 0.26, 0.20, 0.20]),
                    _clu_line(2, "f2", 20.0, 10), _clu_line(7, "f7", 15.0, 12)], reg)
    args = ["--seed", "2", "--windows", "2-3,4-5", "--candidate", f"a={reg}#t2", "--candidate", f"b={reg}#t7",
            "--report", "a=f2", "--report", "b=f7"]
    assert _select(reg, "--band", "0.5", *args) == 0  # 25.0 against 26.0: decided over 2-3
    line = results.read(reg)[-1]
    assert (line["recipe"], line["seed"], line["value"], line["epochs"]) == ("restart", 2, 20.0, 10)
    sel = line["selection"]
    assert (sel["chosen"], sel["decided_on"], sel["run_seed"], sel["reported_run"]) == ("a", "2-3", 2, "f2")
    assert sel["means"] == {"a": {"2-3": 25.0}, "b": {"2-3": 26.0}} and "val_curve" not in line
    assert "kept a (decided over epochs 2-3)" in capsys.readouterr().out

    # a band wider than the gap sends both to the next window, where trunk 7 is lower; seed 3 of the recipe
    assert _select(reg, "--band", "1.5", *args[2:], "--seed", "3") == 0
    line = results.read(reg)[-1]
    assert (line["seed"], line["value"], line["selection"]["decided_on"], line["selection"]["run_seed"]) == (3, 15.0, "4-5", 7)
    row = [l for l in results.table(results.read(reg)).splitlines() if "| restart |" in l]
    assert len(row) == 1 and "| 10-12 |" in row[0] and "2: 20.00, 3: 15.00 (run seed 7)" in row[0]

    before = reg.read_text()
    assert _select(reg, "--band", "0.5", *args) == 2  # seed 2 of the recipe is already there
    assert "already holds seed 2" in capsys.readouterr().err
    assert _select(reg, "--band", "1.5", *args[2:8], "--report", "a=f2", "--seed", "4") == 2  # b kept, no run for it
    assert "--report b=RUN" in capsys.readouterr().err
    assert reg.read_text() == before


def test_select_takes_logs_and_quoted_means_and_keeps_what_it_read(tmp_path, capsys):
    reg = tmp_path / "results.jsonl"
    results.append(_clu_line(9, "f9", 14.0, 12), reg)
    log = tmp_path / "t9.log"
    log.write_text("".join(f"epoch {e} 60.0s val/cluster_error={v}\n" for e, v in enumerate([0.3, 0.2, 0.22, 0.24])))
    common = ["--seed", "4", "--windows", "1-3", "--candidate", f"t9={log}", "--report", "t9=f9"]
    assert _select(reg, *common, "--candidate", "t4=quoted:1-3:23.36") == 0
    sel = results.read(reg)[-1]["selection"]
    assert sel["means"] == {"t4": {"1-3": 23.36}, "t9": {"1-3": 22.0}} and sel["candidates"]["t4"] == {"quoted": True}
    assert sel["candidates"]["t9"]["window_values"] == {"1-3": [0.2, 0.22, 0.24]}
    assert "(quoted)" in capsys.readouterr().out
    before = reg.read_text()
    # a quoted mean covers one window: a rule that needs another window of it stops with its name
    assert _select(reg, *common, "--seed", "5", "--band", "2", "--windows", "1-3,2-3",
                   "--candidate", "t4=quoted:1-3:23.36") == 2
    assert "t4 is quoted over epochs 1-3 only" in capsys.readouterr().err
    assert _select(reg, *common, "--seed", "5", "--candidate", "t4=quoted:1-3") == 2  # no mean
    assert _select(reg, *common, "--seed", "5", "--windows", "1-5", "--candidate", "t4=quoted:1-5:20") == 2
    assert "no value for epoch(s) 4-5" in capsys.readouterr().err
    assert reg.read_text() == before


def test_a_tools_command_is_recorded_as_its_python_dash_m_line():
    assert results.command_line(["/x/lightning_aae/results.py", "select", "--candidate", "a=r.jsonl#b"]) == \
        "python -m lightning_aae.results select --candidate 'a=r.jsonl#b'"
    assert results.command_line(["/x/train.py", "seed=1"]) == "python train.py seed=1"


def test_cpu_model_names_family_and_model_of_the_first_processor(tmp_path):
    # a virtual machine often reports only the brand; the family and model tell two such machines apart
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
                    "model name\t: AMD EPYC\n\nprocessor\t: 1\ncpu family\t: 23\nmodel\t\t: 49\n"
                    "model name\t: Other\n")
    assert results.cpu_model(str(info)) == "AMD EPYC (family 25 model 1)"
    info.write_text("processor\t: 0\nmodel name\t: Some ARM core\n")
    assert results.cpu_model(str(info)) == "Some ARM core"
    assert results.cpu_model(str(tmp_path / "absent")) == (platform.processor() or platform.machine())
