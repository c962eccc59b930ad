"""An interrupted run resumed from its checkpoint ends exactly where the uninterrupted run ends."""
import json
from pathlib import Path

import pytest
import torch

from lightning_aae.config import load_config
from lightning_aae.training import train

SHORT = ["trainer.limit_train_batches=8", "optim.scheduler=step", "optim.step_size=1", "seed=7"]


def _last(out: Path) -> dict:
    (ckpt,) = out.glob("*/*/checkpoints/last.ckpt")
    return torch.load(ckpt, map_location="cpu", weights_only=False)


def test_two_epochs_equal_one_plus_resumed_one(small_overrides, tmp_path):
    base = small_overrides + SHORT
    straight = load_config("configs/aae.yaml", base + ["trainer.max_epochs=2", f"output_dir={tmp_path}/a"])
    train(straight, verbose=False)
    first = load_config("configs/aae.yaml", base + ["trainer.max_epochs=1", f"output_dir={tmp_path}/b"])
    train(first, verbose=False)
    first_result = json.loads(next((tmp_path / "b").glob("aae/*/result.json")).read_text())
    resumed = load_config("configs/aae.yaml", base + ["trainer.max_epochs=2", f"output_dir={tmp_path}/b",
                                                      "ckpt_path=last"])
    train(resumed, verbose=False)

    a, b = _last(tmp_path / "a"), _last(tmp_path / "b")
    assert a["epoch"] == b["epoch"] == 1
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert len(a["optimizer_states"]) == 3  # recon, disc, gen
    for sa, sb in zip(a["optimizer_states"], b["optimizer_states"]):
        for (pa, ta), (pb, tb) in zip(sorted(sa["state"].items()), sorted(sb["state"].items())):
            assert all(torch.equal(ta[k], tb[k]) for k in ta), (pa, pb)
    assert [s["last_epoch"] for s in a["lr_schedulers"]] == [s["last_epoch"] for s in b["lr_schedulers"]] == [2] * 3
    # the resumed run wrote into the first run's folder, not a new one
    assert len(list((tmp_path / "b" / "aae").iterdir())) == 1
    # and its wall time counts the part before the resume, which the checkpoint carried
    straight_result = json.loads(next((tmp_path / "a").glob("aae/*/result.json")).read_text())
    both = json.loads(next((tmp_path / "b").glob("aae/*/result.json")).read_text())
    assert "segments" not in straight_result and "segments" not in first_result
    before, after = both["segments"]
    assert 0 < before["wall_s"] <= first_result["wall_s"]  # saved at the end of epoch 0, before testing
    assert before["command"] == first_result["command"] and after["command"] == both["command"]
    assert both["wall_s"] == round(before["wall_s"] + after["wall_s"], 1)
    # and its validation curve is the straight run's, the first part's epoch carried by the checkpoint
    assert straight_result["curve"]["metric"] == both["curve"]["metric"] == "val/recon_loss"
    assert both["curve"]["first_epoch"] == 0 and both["curve"]["values"] == straight_result["curve"]["values"]
    assert first_result["curve"]["values"] == both["curve"]["values"][:1] and len(both["curve"]["values"]) == 2
    # resumed with no epoch left to train (only to test a stopped run): the earlier parts still count
    train(load_config("configs/aae.yaml", base + ["trainer.max_epochs=2", f"output_dir={tmp_path}/b",
                                                  "ckpt_path=last"]), verbose=False)
    tested = json.loads(next((tmp_path / "b").glob("aae/*/result.json")).read_text())
    assert len(tested["segments"]) == 3 and tested["segments"][0] == before
    assert tested["segments"][1]["command"] == after["command"] and 0 < tested["segments"][1]["wall_s"] <= after["wall_s"]
    assert tested["epochs"] == both["epochs"]


def test_last_checkpoint_is_the_latest_epoch_even_when_the_best_is_older(small_overrides, tmp_path):
    # "best" = highest reconstruction loss, i.e. epoch 0 while the loss falls; last.ckpt must still
    # hold epoch 2 (Lightning's save_last alone would leave it at the best epoch).
    cfg = load_config("configs/aae.yaml", small_overrides + SHORT + [
        "trainer.max_epochs=3", "trainer.limit_train_batches=20", f"output_dir={tmp_path}/runs",
        "callbacks.checkpoint.monitor=val/recon_loss", "callbacks.checkpoint.mode=max"])
    train(cfg, verbose=False)
    (ckpt_dir,) = (tmp_path / "runs").glob("*/*/checkpoints")
    best = [p for p in ckpt_dir.glob("epoch*.ckpt")]
    assert [p.name for p in best] == ["epoch000.ckpt"]  # the loss fell, so epoch 0 stayed the "best"
    assert _last(tmp_path / "runs")["epoch"] == 2


def test_resuming_with_a_max_time_the_checkpoint_has_already_used_is_refused(small_overrides, tmp_path, capsys):
    """Lightning's Timer restores the trained time, so such a run would stop before its first step."""
    import hashlib

    from lightning_aae.cli import main
    from lightning_aae.config import ConfigError
    from lightning_aae.training import resolve_checkpoint

    base = small_overrides + SHORT + ["trainer.limit_train_batches=2", f"output_dir={tmp_path}/r"]
    train(load_config("configs/aae.yaml", base + ["trainer.max_epochs=1", "trainer.max_time=00:01:00:00"]),
          verbose=False)
    (ckpt,) = (tmp_path / "r").glob("aae/*/checkpoints/last.ckpt")
    trained = torch.load(ckpt, map_location="cpu", weights_only=False)["callbacks"]["Timer"]["time_elapsed"]["train"]
    assert 0 < trained < 3600
    saved = hashlib.sha256(ckpt.read_bytes()).hexdigest()

    spent = base + ["trainer.max_epochs=2", "ckpt_path=last", "trainer.max_time=00:00:00:00"]
    assert main(["--config", "configs/aae.yaml", *spent]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "trainer.max_time=00:00:00:00 is already used up" in err and str(ckpt) in err
    assert f"trainer.max_time=00:00:{int(trained + 1800) // 60:02d}:" in err  # the fix, in max_time's format
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == saved  # nothing saved was touched
    assert len(list((tmp_path / "r" / "aae").iterdir())) == 1  # and no new run folder was made

    dict_form = base + ["ckpt_path=last", f"trainer.max_time={{seconds: {trained / 2}}}"]  # under what it trained
    with pytest.raises(ConfigError, match="already used up"):
        resolve_checkpoint(load_config("configs/aae.yaml", dict_form))
    # time left, or no max_time, or a requeued job's ckpt_path=auto: resumed as before
    for resume in (["ckpt_path=last", "trainer.max_time=00:01:00:00"], ["ckpt_path=last"],
                   ["ckpt_path=auto", "trainer.max_time=00:00:00:00"]):
        assert resolve_checkpoint(load_config("configs/aae.yaml", base + resume)) == ckpt


def test_a_schedule_added_at_the_resumed_epoch_equals_that_schedule_run_from_the_start(small_overrides, tmp_path):
    """Lightning restores an optimizer's rate and schedule with its moments; a fork that drops the
    rate at the epoch it resumes from must train as a run configured so from the start."""
    base = small_overrides + ["trainer.limit_train_batches=4", "seed=7"]
    drop = ["optim.scheduler=multistep", "optim.milestones=[2]", "optim.gamma=0.1", "trainer.max_epochs=3"]
    train(load_config("configs/aae.yaml", base + drop + [f"output_dir={tmp_path}/a"]), verbose=False)
    train(load_config("configs/aae.yaml", base + ["trainer.max_epochs=2", f"output_dir={tmp_path}/b"]), verbose=False)
    train(load_config("configs/aae.yaml", base + drop + [f"output_dir={tmp_path}/b", "ckpt_path=last"]), verbose=False)

    a, b = _last(tmp_path / "a"), _last(tmp_path / "b")
    assert a["epoch"] == b["epoch"] == 2
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert [g["lr"] for s in b["optimizer_states"] for g in s["param_groups"]] == [2e-4 * 0.1] * 3
    assert [s["last_epoch"] for s in b["lr_schedulers"]] == [s["last_epoch"] for s in a["lr_schedulers"]]


def test_a_resumed_fit_trains_with_the_configs_rates_not_the_checkpoints(small_overrides, tmp_path):
    base = small_overrides + ["trainer.limit_train_batches=2", "seed=7", f"output_dir={tmp_path}/r"]
    train(load_config("configs/aae.yaml", base + ["trainer.max_epochs=1", "optim.scheduler=step",
                                                  "optim.step_size=1", "optim.gamma=0.5"]), verbose=False)
    assert [g["lr"] for s in _last(tmp_path / "r")["optimizer_states"] for g in s["param_groups"]] == [1e-4] * 3
    # resumed with other rates and betas and no schedule: those, from the first step on
    train(load_config("configs/aae.yaml", base + ["trainer.max_epochs=2", "ckpt_path=last", "optim.lr=3e-4",
                                                  "optim.recon.lr=5e-4", "optim.betas=[0.9,0.99]"]), verbose=False)
    resumed = _last(tmp_path / "r")
    groups = [g for s in resumed["optimizer_states"] for g in s["param_groups"]]
    assert [g["lr"] for g in groups] == [5e-4, 3e-4, 3e-4]  # recon, disc, gen
    assert all(tuple(g["betas"]) == (0.9, 0.99) for g in groups)
    assert resumed["lr_schedulers"] == []


def test_the_category_schedule_added_at_the_resumed_epoch_equals_configs_clustering30_run_from_the_start(
        small_overrides, tmp_path):
    """The recorded 30-cluster balance runs trained 80 epochs, then resumed with the noise drop and the
    balance term set; configs/clustering30.yaml runs that schedule as one command. Here at epoch 1."""
    base = small_overrides + ["trainer.limit_train_batches=4", "seed=7", "trainer.max_epochs=2"]
    at_1 = ["model.category_noise_from=1", "model.category_terms_from=1"]
    train(load_config("configs/clustering30.yaml", base + at_1 + [f"output_dir={tmp_path}/a"]), verbose=False)
    trunk = ["model.category_noise_final=null", "model.category_noise_from=0", "model.category_balance=0",
             "model.category_terms_from=0", f"output_dir={tmp_path}/b"]
    train(load_config("configs/clustering30.yaml", base + trunk + ["trainer.max_epochs=1"]), verbose=False)
    # as recorded: the term unscheduled, on from the epoch the fork resumes at
    fork = ["model.category_noise_from=1", "model.category_terms_from=0", f"output_dir={tmp_path}/b", "ckpt_path=last"]
    train(load_config("configs/clustering30.yaml", base + fork), verbose=False)

    a, b = _last(tmp_path / "a"), _last(tmp_path / "b")
    assert a["epoch"] == b["epoch"] == 1
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    # the same path, and not the path of a run without the schedule
    plain = trunk[:-1] + [f"output_dir={tmp_path}/c"]
    train(load_config("configs/clustering30.yaml", base + plain), verbose=False)
    c = _last(tmp_path / "c")
    assert any(not torch.equal(a["state_dict"][k], c["state_dict"][k]) for k in a["state_dict"])


def test_a_fork_into_a_new_folder_keeps_the_curve_of_the_run_it_forked_from(small_overrides, tmp_path, capfd):
    """The late-drop forks resume a copied checkpoint into a folder of their own: their result, their
    registry line and the curves tool still see the trunk's epochs before the fork's; the fork says so on
    stderr and picks its best checkpoint among its own epochs."""
    from experiments import curves, registry, results

    base = small_overrides + ["trainer.limit_train_batches=4", "seed=7"]
    train(load_config("configs/clustering.yaml", base + ["trainer.max_epochs=1", f"output_dir={tmp_path}/trunk"]),
          verbose=False)
    (trunk_dir,) = (tmp_path / "trunk" / "clustering").iterdir()
    copied = tmp_path / "trunk1.ckpt"
    copied.write_bytes((trunk_dir / "checkpoints" / "last.ckpt").read_bytes())
    train(load_config("configs/clustering.yaml", base + ["trainer.max_epochs=2", "model.category_noise_final=0.0",
                                                         "model.category_noise_from=1", f"output_dir={tmp_path}/fork",
                                                         f"ckpt_path={copied}"]), verbose=False)
    (fork_dir,) = (tmp_path / "fork" / "clustering").iterdir()
    note = [line for line in capfd.readouterr().err.splitlines() if "this is a fork" in line]
    assert len(note) == 1 and str(copied) in note[0] and str(fork_dir) in note[0]
    trunk, fork = (json.loads((d / "result.json").read_text()) for d in (trunk_dir, fork_dir))
    assert fork["best_epoch"] == 1  # the fork's own epoch, whatever the trunk's epoch 0 scored
    assert fork["curve"]["metric"] == "val/cluster_error" and fork["curve"]["first_epoch"] == 0
    assert len(fork["curve"]["values"]) == 2 and fork["curve"]["values"][0] == trunk["curve"]["values"][0]

    registry_file = tmp_path / "results.jsonl"
    assert results.main(["record", str(fork_dir), "--registry", str(registry_file)]) == 0
    (line,) = registry.read(registry_file)
    assert line["val_curve"] == registry.rounded_curve(fork["curve"])
    from_folder = curves.read_curve([fork_dir], "val/cluster_error")
    from_registry = curves.read_curve([f"{registry_file}#{fork_dir.name}"], "val/cluster_error")
    assert list(from_folder) == [0, 1] and from_registry == pytest.approx(from_folder, abs=1e-5)
    with pytest.raises(curves.DataError, match="no column val/error"):  # neither kept nor logged
        curves.read_curve([fork_dir], "val/error")


def test_ckpt_path_last_finds_only_the_runs_made_for_this_name(tmp_path):
    """logger.name=x-s2 resumes x-s2 or x-s2-K (train.py's name for a taken name), never x-s20."""
    import os

    from lightning_aae.config import ConfigError
    from lightning_aae.storage import runs_named
    from lightning_aae.training import _find_last

    base = tmp_path / "aae"

    def saved(folder: str, mtime: int):
        ckpt = base / folder / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"")
        os.utime(ckpt, (mtime, mtime))
        return ckpt

    def last(name: str, how: str = "last"):
        return _find_last(load_config("configs/aae.yaml", [f"output_dir={tmp_path}", f"logger.name={name}",
                                                            f"ckpt_path={how}"]))

    own = saved("x-s2", 1_000)
    for other in ("x-s20", "x-s2b", "x-s2-old", "x-s2-1-2"):
        saved(other, 2_000)  # newer, but another run's
    saved("run[1]", 1_000)
    assert last("x-s2") == own
    assert [p.name for p in runs_named(base, "x-s2")] == ["x-s2"]
    again = saved("x-s2-1", 3_000)  # the same name run again: its newest run goes on
    assert last("x-s2") == again and last("x-s2-1") == again
    assert last("run[1]") == base / "run[1]" / "checkpoints" / "last.ckpt"  # glob characters are the name's own
    named = saved("x-s2-7", 4_000)  # a run named x-s2-7 on purpose, as its config.yaml says: not x-s2's
    (named.parent.parent / "config.yaml").write_text("logger:\n  name: x-s2-7\n")
    (again.parent.parent / "config.yaml").write_text("logger:\n  name: x-s2\n")
    assert last("x-s2") == again and last("x-s2-7") == named
    assert [p.name for p in runs_named(base, "x-s2")] == ["x-s2", "x-s2-1"]
    assert last("x-s3", "auto") is None
    with pytest.raises(ConfigError, match=r"no last.ckpt under .* for logger.name=x-s3$"):
        last("x-s3")
    assert last("", "last").parent.parent.name == "x-s2-7"  # no name: the newest run of the variant
