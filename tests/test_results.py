"""The results registry (experiments/registry.py), its stages, and the tables generated from it."""
import json
import multiprocessing
import platform
import subprocess
from pathlib import Path

import pytest

from experiments import registry, results, tables
from lightning_aae import provenance

ROOT = Path(__file__).resolve().parents[1]


def _result(seed, error, labels_per_class=100, recipe="adam-noise", last=None, command=None,
            started="2026-12-04T12:00:00Z"):
    cfg = {"seed": seed, "model": {"variant": "semi_supervised", "latent_dim": 10, "n_clusters": 16},
           "data": {"labels_per_class": labels_per_class}, "num_threads": 1}
    metrics = {"test/error": error, "test/accuracy": 1 - error}
    if last is not None:
        metrics["test_last/error"] = last
    return {"config": cfg, "metrics": metrics, "epochs": 70, "best_epoch": 60, "wall_s": 4000.0,
            "command": command or f"python train.py --config configs/semi_supervised.yaml seed={seed} optim.lr=0.1",
            "commit": "abc", "date": "2026-11-23", "started": started, "hardware": "cpu", "run_dir": f"runs/s{seed}",
            "recipe": recipe}


def test_a_run_becomes_one_registry_line_with_both_test_numbers(tmp_path):
    reg = tmp_path / "results.jsonl"
    registry.append(registry.registry_lines(_result(0, 0.0291, last=0.0302), root=tmp_path), reg)
    (line,) = registry.read(reg)
    assert line["experiment"] == "semi_supervised" and line["labels"] == 1000 and line["seed"] == 0
    assert line["metric"] == "test_error" and line["value"] == pytest.approx(2.91)
    assert line["value_last"] == pytest.approx(3.02) and line["started"] == "2026-12-04T12:00:00Z"
    assert line["stage"] == "exploratory" and "row" not in line  # an override that is not a runtime key
    assert all(line[k] is not None for k in registry.REQUIRED)


def test_only_the_rows_command_plus_runtime_keys_names_a_row():
    assert registry.row_of("python train.py --config configs/parzen.yaml seed=3 num_threads=1 "
                           "output_dir=/x logger.name=a 'logger.tags=[a]' ckpt_path=/x/last.ckpt") == "parzen"
    assert registry.row_of("python train.py --config configs/parzen.yaml seed=3 model.latent_dim=4") is None
    assert registry.row_of("python train.py --config other/parzen.yaml seed=3") is None
    assert registry.row_of("python -m experiments.restart_rule --seed 3") is None


def _git(repo, *args, date="2026-12-04T10:00:00Z"):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "GIT_COMMITTER_DATE": date, "GIT_AUTHOR_DATE": date,
                        "PATH": "/usr/bin:/bin"})
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def prereg_repo(tmp_path):
    """A git checkout whose docs/preregistered/semi_supervised.yaml lists seeds 100 and 101."""
    _git(tmp_path, "init", "-q")
    (tmp_path / "docs" / "preregistered").mkdir(parents=True)
    (tmp_path / "docs" / "preregistered" / "semi_supervised.yaml").write_text(
        "row: semi_supervised\nseeds: [100, 101]\nmetric: test/error\n")
    _git(tmp_path, "add", "docs")
    _git(tmp_path, "commit", "-qm", "preregister")
    return tmp_path


def test_a_confirmation_is_the_rows_command_on_a_listed_seed_started_after_the_file_was_committed(prereg_repo):
    row_command = "python train.py --config configs/semi_supervised.yaml seed={} num_threads=1 output_dir=/w"
    (line,) = registry.registry_lines(_result(100, 0.02, command=row_command.format(100)), root=prereg_repo)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=prereg_repo, capture_output=True, text=True).stdout.strip()
    assert (line["row"], line["stage"], line["preregistered"]) == ("semi_supervised", "confirmation", commit)
    for result in (_result(102, 0.02, command=row_command.format(102)),  # a seed the file does not list
                   _result(100, 0.02, command=row_command.format(100), started="2026-12-04T09:59:00Z"),  # before it
                   _result(100, 0.02, command=row_command.format(100) + " optim.lr=0.1")):  # another recipe
        (line,) = registry.registry_lines(result, root=prereg_repo)
        assert line["stage"] == "exploratory" and "preregistered" not in line
    # a resumed run is a confirmation only if every part ran the row's command
    resumed = _result(101, 0.02, command=row_command.format(101) + " ckpt_path=/w/last.ckpt")
    resumed["segments"] = [{"command": row_command.format(101) + " trainer.max_epochs=3"}, {"command": resumed["command"]}]
    assert registry.registry_lines(resumed, root=prereg_repo)[0]["stage"] == "exploratory"
    resumed["segments"][0]["command"] = row_command.format(101)
    assert registry.registry_lines(resumed, root=prereg_repo)[0]["stage"] == "confirmation"


def test_a_row_re_preregistered_for_a_new_recipe_confirms_from_its_new_version_and_only_while_its_config_stands(
        prereg_repo):
    command = "python train.py --config configs/semi_supervised.yaml seed={}".format
    (prereg_repo / "configs").mkdir()
    (prereg_repo / "configs" / "semi_supervised.yaml").write_text("trainer: {max_epochs: 60}\n")
    (prereg_repo / "docs" / "preregistered" / "semi_supervised.yaml").write_text(
        "row: semi_supervised\nconfig: configs/semi_supervised.yaml\nseeds: [200, 201]\nmetric: test/error\n")
    _git(prereg_repo, "add", "-A")
    commit = _git(prereg_repo, "commit", "-qm", "the new recipe, preregistered", date="2026-12-06T10:00:00Z")

    def stage(seed, started):
        (line,) = registry.registry_lines(_result(seed, 0.02, command=command(seed), started=started), root=prereg_repo)
        return line["stage"], line.get("preregistered")
    assert stage(200, "2026-12-05T12:00:00Z") == ("exploratory", None)  # after the first version, before this one
    assert stage(100, "2026-12-06T12:00:00Z") == ("exploratory", None)  # the earlier claim's seed
    assert stage(200, "2026-12-06T12:00:00Z") == ("confirmation", commit)
    (prereg_repo / "configs" / "semi_supervised.yaml").write_text("trainer: {max_epochs: 70}\n")
    _git(prereg_repo, "commit", "-qam", "the recipe changed after its claim", date="2026-12-07T10:00:00Z")
    assert stage(201, "2026-12-07T12:00:00Z") == ("exploratory", None)


def _conf(row, seed, value, last, experiment="semi_supervised", metric="test_error", epochs=20, **size):
    return {"experiment": experiment, "variant": experiment, "row": row, "stage": "confirmation", "recipe": row,
            "seed": seed, "epochs": epochs, "metric": metric, "value": value, "value_last": last,
            "command": f"python train.py --config configs/{row}.yaml seed={seed}", "commit": "c", "date": "d",
            "hardware": "cpu", "wall_s": 1.0, "run_dir": f"runs/{row}-{seed}", **size}


def test_a_small_registry_gives_the_expected_headline_table():
    rows = [_conf("semi_supervised_100", s, v, l, labels=100) for s, v, l in ((100, 4.0, 4.5), (101, 5.0, 5.5))]
    rows.append({**_conf("semi_supervised", 100, 1.0, 1.0, labels=1000), "stage": "exploratory"})  # never headline
    lines = tables.headline_table(rows, link="{page}.md").splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == ["experiment", "paper", "ours", "claim", "last epoch",
                                                              "epochs", "one seed"]
    cells = {c.split("]")[0].strip("|[ "): [x.strip() for x in c.split("|")] for c in lines[2:]}
    hundred = cells["Semi-supervised, 100 labels: error (%)"]
    assert hundred[2:7] == ["1.90 ± 0.10", "**4.50 ± 0.71** (n=2)", "", "5.00 ± 0.71", "20"]
    assert "configs/semi_supervised_100.yaml seed=0" in hundred[7]
    assert cells["Semi-supervised, 1000 labels: error (%)"][3] == "not yet confirmed"
    rows.append({**_conf("semi_supervised", 0, 2.0, 2.2, labels=1000), "stage": "exploratory",
                 "recipe": tables.HEADLINE["semi_supervised"][3]})
    (thousand,) = [line for line in tables.headline_table(rows).splitlines() if "1000 labels" in line]
    assert "not yet confirmed; exploratory 2.00 (n=1)" in thousand
    assert [c.strip() for c in thousand.split("|")][5:7] == ["2.20", "20"]  # its last epoch and length beside it
    claim = {"seeds": [100, 101, 102], "threshold": {"value_mean_at_most": 4.5}}
    (partial,) = [l for l in tables.headline_table(rows, claims={"semi_supervised_100": claim}).splitlines()
                  if "100 labels" in l]  # two of its three preregistered seeds are in: not bold, not decided
    assert "confirmation 2 of 3 seeds: 4.50 ± 0.71" in partial and "≤ 4.5: pending" in partial and "**" not in partial
    assert len(lines) == 2 + len(tables.HEADLINE)


@pytest.mark.parametrize("threshold, values, expected", [
    ({"value_mean_at_most": 4.5}, (4.0, 5.0, 4.4), "≤ 4.5: met"),           # mean 4.47: one seed over, mean under
    ({"value_mean_at_most": 4.4}, (4.0, 5.0, 4.4), "≤ 4.4: **missed**"),
    ({"value_mean_at_least": 330.0}, (331.0, 329.0, 330.5), "≥ 330: met"),
    ({"value_mean_at_least": 331.0}, (331.0, 329.0, 330.5), "≥ 331: **missed**"),
])
def test_the_claim_column_says_whether_the_confirmation_mean_met_its_preregistered_bound(threshold, values, expected):
    rows = [_conf("semi_supervised_100", 100 + i, v, v, labels=100) for i, v in enumerate(values)]
    claim = {"seeds": [100, 101, 102], "threshold": threshold}
    (line,) = [l for l in tables.headline_table(rows, claims={"semi_supervised_100": claim}).splitlines()
               if "100 labels" in l]
    assert [c.strip() for c in line.split("|")][4] == expected


def test_an_earlier_recipe_s_confirmation_stays_beside_the_headline_until_the_new_one_is_in_and_keeps_its_page_row():
    def run(seed, value, commit):
        return {**_conf("semi_supervised_100", seed, value, value, labels=100), "preregistered": commit}
    rows = [run(s, 4.0, "a" * 40) for s in (100, 101, 102)] + [run(s, 3.0, "b" * 40) for s in (200, 201)]
    claim = {"seeds": [200, 201, 202], "threshold": {"value_mean_at_most": 3.0}}

    def headline():
        (line,) = [l for l in tables.headline_table(rows, claims={"semi_supervised_100": claim}).splitlines()
                   if "100 labels" in l]
        return line
    line = headline()
    assert "confirmation 2 of 3 seeds: 3.00 ± 0.00" in line and "≤ 3: pending" in line
    assert "earlier recipe (aaaaaaa): 4.00 ± 0.00 (n=3)" in line
    rows.append(run(202, 3.0, "b" * 40))
    assert "**3.00 ± 0.00** (n=3)" in headline() and "aaaaaaa" not in headline()
    text = tables.experiment_table(rows, "semi_supervised", claims={"semi_supervised_100": claim})
    recipe = {l.split("|")[2].strip(): l for l in text.splitlines() if l.count("|") > 3}
    new, old = recipe["semi_supervised_100"], recipe["semi_supervised_100 (recipe of aaaaaaa)"]
    assert "200, 201" in new and "3.00 ± 0.00" in new and "100, 101, 102" in old and "4.00 ± 0.00" in old


def test_an_experiment_table_groups_recipes_and_stages_with_both_numbers():
    rows = [_conf("semi_supervised_100", s, v, l, labels=100) for s, v, l in ((100, 4.0, 4.5), (101, 5.0, 5.5))]
    rows += [{**_conf("x", s, v, v, labels=100), "stage": "exploratory", "recipe": "adam-e60"} for s, v in ((0, 3.0), (1, 3.2))]
    text = tables.experiment_table(rows, "semi_supervised")
    (conf,) = [l for l in text.splitlines() if "semi_supervised_100" in l]
    (expl,) = [l for l in text.splitlines() if "adam-e60" in l]
    assert "confirmation" in conf and "4.50 ± 0.71" in conf and "5.00 ± 0.71" in conf and "100, 101" in conf
    assert "exploratory" in expl and "3.10 ± 0.14" in expl
    assert text.index("semi_supervised_100") < text.index("<details>") < text.index("adam-e60")  # confirmations first,
    assert text.rstrip().endswith("</details>")  # the exploratory rows folded below them


def test_the_autoencoder_family_table_has_a_column_per_metric():
    result = _result(0, 0.0)
    result["config"]["model"] = {"variant": "autoencoder", "latent_dim": 32}
    result["metrics"] = {"test/recon_loss": 0.0123456, "test/code_mean_abs": 0.5, "test/code_near_zero": 0.25,
                         "test/code_hoyer": 0.4}
    lines = registry.registry_lines(result, recipe="family-plain")
    assert [(l["metric"], l["value"]) for l in lines] == [
        ("recon_loss", 0.012346), ("code_mean_abs", 0.5), ("code_near_zero", 25.0), ("code_hoyer", 0.4)]
    result["config"]["seed"], result["metrics"]["test/recon_loss"] = 1, 0.0143456
    second = registry.registry_lines(result, recipe="family-plain")
    (row,) = [l for l in tables.family_table(lines + second).splitlines() if "family-plain" in l]
    assert [c.strip() for c in row.split("|")[1:-1]] == ["family-plain", "70", "0.01335 ± 0.00141", "0.5000 ± 0.0000",
                                                          "25.00 ± 0.00", "0.4000 ± 0.0000", "0, 1"]
    del result["metrics"]["test/code_hoyer"]
    with pytest.raises(ValueError, match="test/code_hoyer"):
        registry.registry_lines(result)


def test_incomplete_lines_and_unfinished_runs_are_refused_and_a_run_is_recorded_whole(tmp_path, capsys):
    reg = tmp_path / "r.jsonl"
    lines = registry.registry_lines(_result(0, 0.03))
    with pytest.raises(ValueError, match="lacks commit"):
        registry.append([*lines, {**lines[0], "commit": None}], reg)
    with pytest.raises(ValueError, match="stage"):
        registry.append({**lines[0], "stage": "final"}, reg)
    assert not reg.exists()
    assert results.main(["record", str(tmp_path), "--registry", str(reg)]) == 2
    assert "result.json not found" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "result.json").write_text(json.dumps(_result(3, 0.04, last=0.05)))
    assert results.main(["record", str(tmp_path / "run"), "--registry", str(reg)]) == 0
    assert "(exploratory): test_error = 4.0, last epoch 5.0" in capsys.readouterr().out
    assert registry.read(reg)[0]["seed"] == 3


def _append_many(args):
    reg, worker = args
    for i in range(25):
        registry.append({**registry.registry_lines(_result(worker, 0.01 * i))[0], "seed": worker * 100 + i}, Path(reg))


def test_concurrent_writers_keep_every_line(tmp_path):
    reg = tmp_path / "r.jsonl"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_append_many, [(str(reg), w) for w in range(4)])
    seeds = sorted(line["seed"] for line in registry.read(reg))
    assert seeds == sorted(w * 100 + i for w in range(4) for i in range(25))


def test_a_run_records_where_it_started_and_both_test_numbers(small_overrides, tmp_path, monkeypatch):
    from lightning_aae.config import load_config
    from lightning_aae.training import train

    commits = iter(["start-commit", "later-commit"])
    monkeypatch.setattr(provenance, "git_commit", lambda: next(commits))
    train(load_config("configs/semi_supervised_100.yaml", small_overrides + [
        "trainer.max_epochs=2", "trainer.limit_train_batches=2", "callbacks.figures.enabled=false"]), verbose=False)
    (record,) = (tmp_path / "runs").glob("semi_supervised/*/result.json")
    written = json.loads(record.read_text())
    assert written["commit"] == "start-commit" and written["epochs"] == 2 and written["wall_s"] > 0
    assert written["started"].endswith("Z") and {"test/error", "test_last/error"} <= set(written["metrics"])
    # Lightning's CSVLogger: the run's curves without W&B
    assert "val/error" in (record.parent / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0]


def test_a_parzen_run_evaluates_inside_the_run_and_records_as_the_parzen_experiment(small_overrides, tmp_path):
    from lightning_aae.config import load_config
    from lightning_aae.training import train

    metrics = train(load_config("configs/parzen.yaml", small_overrides + [
        "trainer.max_epochs=1", "trainer.limit_train_batches=3", "evaluate.parzen_samples=300"]), verbose=False)
    assert {"test/parzen_ll", "test_last/parzen_ll", "test/parzen_sigma"} <= set(metrics)
    (run,) = (tmp_path / "runs" / "aae").iterdir()
    reg = tmp_path / "r.jsonl"
    assert results.main(["record", str(run), "--registry", str(reg)]) == 0
    lines = registry.read(reg)
    assert [line["metric"] for line in lines] == ["parzen_ll", "parzen_ll_stderr", "parzen_sigma"]
    assert lines[0]["experiment"] == "parzen" and lines[0]["latent_dim"] == 8
    assert lines[0]["value"] == pytest.approx(metrics["test/parzen_ll"], abs=1e-4)
    assert lines[0]["value_last"] == pytest.approx(metrics["test_last/parzen_ll"], abs=1e-4)


def test_the_committed_docs_are_the_ones_the_committed_registry_generates(tmp_path):
    rows = registry.read(ROOT / registry.REGISTRY)
    assert all(all(r.get(k) is not None for k in registry.REQUIRED) for r in rows)
    prereg = registry.claims(ROOT)
    headline = tables.headline_table(rows, claims=prereg)
    assert f"{results.HEADLINE[0]}\n{headline}\n{results.HEADLINE[1]}" in (ROOT / "README.md").read_text()
    assert (ROOT / "docs" / "results.md").read_text() == results.results_page(rows, prereg)
    for page, (experiment, _) in results.PAGES.items():
        text = (ROOT / "docs" / "experiments" / f"{page}.md").read_text()
        if experiment is not None:
            assert f"{results.TABLE[0]}\n{results.page_table(rows, experiment, prereg)}\n{results.TABLE[1]}" in text, page


def _clu_line(seed, run, value, epochs, curve=None):
    line = {"experiment": "clustering", "variant": "clustering", "clusters": 30, "latent_dim": 5, "recipe": "late-drop",
            "seed": seed, "epochs": epochs, "best_epoch": epochs - 5, "metric": "cluster_error", "value": value,
            "command": f"python train.py seed={seed}", "commit": "abc", "date": "2026-12-01", "hardware": "cpu",
            "wall_s": 100.0, "run_dir": f"runs/clustering/{run}", "stage": "exploratory"}
    if curve is not None:
        line["val_curve"] = {"metric": "val/cluster_error", "first_epoch": 0, "values": curve}
    return line


def _select(reg, *extra):
    return results.main(["select", "--registry", str(reg), "--recipe", "restart", "--percent", *extra])


def test_select_keeps_the_lower_validation_mean_and_records_its_run_as_the_seed_it_reports(tmp_path, capsys):
    reg = tmp_path / "results.jsonl"
    # trunk 2 lower over epochs 2-3 by 1 point; trunk 7 lower over 4-5
    registry.append([_clu_line(2, "t2", 24.0, 6, [0.3, 0.3, 0.25, 0.25, 0.30, 0.30]),
                     _clu_line(7, "t7", 23.0, 6, [0.3, 0.3, 0.26, 0.26, 0.20, 0.20]),
                     _clu_line(2, "f2", 20.0, 10), _clu_line(7, "f7", 15.0, 12)], reg)
    args = ["--seed", "2", "--windows", "2-3,4-5", "--candidate", f"a={reg}#t2", "--candidate", f"b={reg}#t7",
            "--report", "a=f2", "--report", "b=f7"]
    assert _select(reg, "--band", "0.5", *args) == 0  # 25.0 against 26.0: decided over 2-3
    line = registry.read(reg)[-1]
    assert (line["recipe"], line["seed"], line["value"], line["epochs"], line["stage"]) == ("restart", 2, 20.0, 10,
                                                                                           "exploratory")
    sel = line["selection"]
    assert (sel["chosen"], sel["decided_on"], sel["run_seed"], sel["reported_run"]) == ("a", "2-3", 2, "f2")
    assert sel["means"] == {"a": {"2-3": 25.0}, "b": {"2-3": 26.0}} and "val_curve" not in line
    assert "kept a (decided over epochs 2-3)" in capsys.readouterr().out

    # a band wider than the gap sends both to the next window, where trunk 7 is lower; seed 3 of the recipe
    assert _select(reg, "--band", "1.5", *args[2:], "--seed", "3") == 0
    line = registry.read(reg)[-1]
    assert (line["seed"], line["value"], line["selection"]["decided_on"], line["selection"]["run_seed"]) == (3, 15.0, "4-5", 7)
    (row,) = [l for l in tables.experiment_table(registry.read(reg), "clustering").splitlines() if "| restart " in l]
    assert "selected (10-12)" in row and "17.50 ± 3.54" in row

    before = reg.read_text()
    assert _select(reg, "--band", "0.5", *args) == 2  # seed 2 of the recipe is already there
    assert "already holds seed 2" in capsys.readouterr().err
    assert _select(reg, "--band", "1.5", *args[2:8], "--report", "a=f2", "--seed", "4") == 2  # b kept, no run for it
    assert "--report b=RUN" in capsys.readouterr().err
    assert reg.read_text() == before


def test_select_takes_quoted_means_for_one_window_only(tmp_path, capsys):
    reg = tmp_path / "results.jsonl"
    registry.append([_clu_line(9, "f9", 14.0, 12), _clu_line(9, "t9", 20.0, 4, [0.3, 0.2, 0.22, 0.24])], reg)
    common = ["--seed", "4", "--windows", "1-3", "--candidate", f"t9={reg}#t9", "--report", "t9=f9"]
    assert _select(reg, *common, "--candidate", "t4=quoted:1-3:23.36") == 0
    sel = registry.read(reg)[-1]["selection"]
    assert sel["means"] == {"t4": {"1-3": 23.36}, "t9": {"1-3": 22.0}} and sel["candidates"]["t4"] == {"quoted": True}
    assert "(quoted)" in capsys.readouterr().out
    before = reg.read_text()
    assert _select(reg, *common, "--seed", "5", "--band", "2", "--windows", "1-3,2-3",
                   "--candidate", "t4=quoted:1-3:23.36") == 2
    assert "t4 is quoted over epochs 1-3 only" in capsys.readouterr().err
    assert _select(reg, *common, "--seed", "5", "--windows", "1-5", "--candidate", "t4=quoted:1-5:20") == 2
    assert "no value for epoch(s) 4-5" in capsys.readouterr().err
    assert reg.read_text() == before


def test_a_tools_command_is_recorded_as_its_python_dash_m_line():
    assert provenance.command_line(["/x/experiments/results.py", "select", "--candidate", "a=r.jsonl#b"]) == \
        "python -m experiments.results select --candidate 'a=r.jsonl#b'"
    assert provenance.command_line(["/x/train.py", "seed=1"]) == "python train.py seed=1"


def test_cpu_model_names_family_and_model_of_the_first_processor(tmp_path):
    # a virtual machine often reports only the brand; the family and model tell two such machines apart
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
                    "model name\t: AMD EPYC\n\nprocessor\t: 1\ncpu family\t: 23\nmodel\t\t: 49\n"
                    "model name\t: Other\n")
    assert provenance.cpu_model(str(info)) == "AMD EPYC (family 25 model 1)"
    info.write_text("processor\t: 0\nmodel name\t: Some ARM core\n")
    assert provenance.cpu_model(str(info)) == "Some ARM core"
    assert provenance.cpu_model(str(tmp_path / "absent")) == (platform.processor() or platform.machine())


def test_experiment_tables_show_the_chosen_checkpoints_validation_value():
    from experiments import tables

    def line(seed, best):
        return {"experiment": "semi_supervised", "metric": "test_error", "value": 3.0 + seed, "seed": seed,
                "epochs": 20, "recipe": "arm", "labels": 100,
                "val_curve": {"metric": "val/error", "first_epoch": 0, "values": [0.09, best, best + 0.01]}}

    table = tables.experiment_table([line(0, 0.04), line(1, 0.05)], "semi_supervised")
    assert "4.50 ± 0.71" in table  # the best epochs' 4 % and 5 %
    without = {**line(2, 0.04), "val_curve": None}
    assert "validation (chosen)" not in tables.experiment_table([without], "semi_supervised")


def test_the_arms_table_ranks_arms_on_validation_and_names_what_each_command_changes():
    def line(recipe, seed, best, extra=""):
        return {"experiment": "semi_supervised", "metric": "test_error", "value": 9.0 - seed, "value_last": 9.5,
                "seed": seed, "epochs": 20, "recipe": f"ss100-{recipe}", "labels": 100, "stage": "exploratory",
                "command": f"python train.py --config configs/semi_supervised_100.yaml {extra} seed={seed} "
                           f"num_threads=1 ckpt_path=x/last.ckpt logger.name=n",
                "val_curve": {"metric": "val/error", "first_epoch": 0, "values": [0.09, best, best + 0.02]}}

    rows = [line("base", 0, 0.05), line("base", 1, 0.07), line("rot", 0, 0.04, "model.labeled_rotate=10"),
            {**line("rot", 1, 0.01), "stage": "confirmation"}, {**line("other", 0, 0.01), "recipe": "other"},
            {**line("rot", 0, 0.03, "model.labeled_rotate=10"), "recipe": "ss1000-rot", "labels": 1000}]
    table = tables.arms_table(rows, "semi_supervised", ("ss100-", "ss1000-"), last=2).splitlines()
    assert [c.strip() for c in table[2].split("|")[1:5]] == ["100", "rot", "`model.labeled_rotate=10`", "20"]
    base = [c.strip() for c in table[3].split("|")[1:-1]]
    # chosen: 5 and 7 %; the last two epochs: (5 + 7) / 2 and (7 + 9) / 2; the test numbers only reported
    assert base[:6] == ["100", "base", "the config", "20", "6.00 ± 1.41", "7.00 ± 1.41"] and base[6] == "8.50 ± 0.71"
    assert [c.strip() for c in table[4].split("|")[1:3]] == ["1000", "rot"]  # after the 100-label arms
    assert len(table) == 5  # the confirmation and the recipe without a prefix are not arms
    assert tables.arms_table(rows, "semi_supervised", ("none-",)) == "(no recorded arms)"
