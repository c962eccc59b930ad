"""Every YAML in configs/ trains, validates and tests with fast_dev_run; a new config needs no new test."""
from pathlib import Path

import pytest

from experiments import registry as results
from lightning_aae.config import load_config
from lightning_aae.training import train

from conftest import write_svhn

CONFIGS = sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml"))


def test_configs_exist():
    assert {p.stem for p in CONFIGS} >= {"aae", "autoencoder"}


def _data_of(config: Path, tmp_path: Path) -> list:
    """Overrides that point a config whose data is not MNIST at small files written here."""
    if config.stem == "semi_supervised_svhn":
        write_svhn(tmp_path / "svhn", 200, 50)
        return [f"data.root={tmp_path / 'svhn'}", "data.download=false", "data.labels_per_class=5",
                "data.labeled_batch_size=20", "data.batch_size=20"]
    if config.stem == "semi_supervised_digits":
        from experiments.digits import main as write_digits

        assert write_digits([str(tmp_path / "digits.npz")]) == 0  # the config's own data, written as its header says
        return [f"data.path={tmp_path / 'digits.npz'}"]
    return []


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_runs_with_fast_dev_run(config, quick_overrides, tmp_path):
    # a small t-SNE sample: the projection runs, in seconds rather than a minute
    cfg = load_config(config, quick_overrides + ["trainer.fast_dev_run=true", "callbacks.figures.tsne_points=300"]
                      + _data_of(config, tmp_path))
    metrics = train(cfg, verbose=False)
    assert metrics["test/recon_loss"] > 0
    assert metrics["train/recon_loss_epoch"] > 0
    # validation ran: its figures were drawn from the validation set
    (run_dir,) = (Path(cfg.output_dir) / cfg.model.variant).iterdir()
    assert (run_dir / "figures" / "val_reconstructions.png").is_file()
    assert (run_dir / "config.yaml").is_file()


# A recipe config is a recorded run's command as one file. The balance runs were forks resumed at epoch 80
# with the term unscheduled, so on from epoch 80: what category_terms_from=80 says. Seed 0 of the long recipe
# was a fork at epoch 148 with model.category_noise=0.0 and 185 epochs (docs/results.md); the runs compared
# here are those that set the schedule's keys.
RECIPES = {"clustering30": ("clustering30-bn-dropout-catnoise0-from80-balance001", ["model.category_terms_from=80"]),
           "clustering30_long": ("clustering30-long-bn-dropout-catnoise0-from148", [])}
RUN_ONLY = ("seed", "num_threads", "output_dir", "ckpt_path", "logger.", "trainer.max_time", "trainer.enable_progress_bar")


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_recipe_config_trains_what_its_recorded_runs_trained(name):
    root = Path(__file__).resolve().parents[1]
    recipe, implied = RECIPES[name]
    commands = {r["command"] for r in results.read(root / results.REGISTRY)
                if r["recipe"] == recipe and "model.category_noise_from=" in r["command"]}
    assert len(commands) >= 2, recipe  # several seeds recorded
    ours = load_config(root / "configs" / f"{name}.yaml")
    for command in commands:
        words = command.split()
        config = words[words.index("--config") + 1]
        overrides = [w for w in words[words.index("--config") + 2:] if not w.startswith(RUN_ONLY)]
        recorded = load_config(root / config, overrides + implied)
        for key in ("model", "optim", "data", "callbacks"):
            assert recorded[key] == ours[key], (command, key)
        assert recorded.trainer.max_epochs == ours.trainer.max_epochs, command
