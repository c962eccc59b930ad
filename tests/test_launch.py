"""The launcher runs a row's seeds through submitit's local executor and records each finished run."""
import pytest

from experiments import launch, registry

TINY = """model:
  variant: autoencoder
  latent_dim: 2
  hidden_dims: [16]
data:
  batch_size: 50
trainer:
  max_epochs: 1
  limit_train_batches: 2
  limit_val_batches: 1
  limit_test_batches: 1
  enable_model_summary: false
callbacks:
  figures:
    enabled: false
"""


def test_two_seeds_run_side_by_side_and_both_land_in_the_registry(tmp_path, data_root, capsys):
    root = tmp_path / "checkout"
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "tiny.yaml").write_text(TINY)
    reg = tmp_path / "results.jsonl"
    code = launch.main(["tiny", "--seeds", "3,4", "--jobs", "2", "--root", str(root), "--registry", str(reg),
                        "--poll", "0.5", "num_threads=1", f"data.root={data_root}", "logger.enabled=false",
                        f"output_dir={tmp_path / 'runs'}", "trainer.enable_progress_bar=false"])
    assert code == 0, capsys.readouterr()
    lines = registry.read(reg)
    assert sorted(line["seed"] for line in lines if line["metric"] == "recon_loss") == [3, 4]
    for line in lines:
        assert line["command"].startswith(f"python train.py --config configs/tiny.yaml seed={line['seed']} ")
        assert line["row"] == "tiny" and line["stage"] == "exploratory"  # nothing preregistered in that checkout
        assert line["run_dir"].endswith(f"tiny-s{line['seed']}") and "value_last" in line
    out = capsys.readouterr().out
    assert "tiny seed 3 (exploratory): recon_loss =" in out and "tiny seed 4 (exploratory)" in out


def test_a_key_that_changes_the_recipe_is_refused_before_anything_runs(tmp_path, capsys):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.yaml").write_text(TINY)
    assert launch.main(["tiny", "--seeds", "1", "--root", str(tmp_path), "model.latent_dim=8"]) == 2
    assert "'model.latent_dim=8' is not a runtime key" in capsys.readouterr().err
    assert launch.main(["nope", "--seeds", "1", "--root", str(tmp_path)]) == 2
    assert "no config for row 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("key", ["seed=3", "ckpt_path=last"])
def test_seeds_and_checkpoints_are_not_given_to_every_seed(key):
    with pytest.raises(ValueError, match="not a runtime key"):
        launch.check_runtime_keys([key])
