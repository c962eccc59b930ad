"""Every YAML in configs/ trains, validates and tests with fast_dev_run; a new config needs no new test."""
from pathlib import Path

import pytest

from lightning_aae.config import load_config
from lightning_aae.training import train

CONFIGS = sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml"))


def test_configs_exist():
    assert {p.stem for p in CONFIGS} >= {"aae", "autoencoder"}


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_runs_with_fast_dev_run(config, quick_overrides):
    # a small t-SNE sample: the projection runs, in seconds rather than a minute
    cfg = load_config(config, quick_overrides + ["trainer.fast_dev_run=true", "callbacks.figures.tsne_points=300"])
    metrics = train(cfg, verbose=False)
    assert metrics["test/recon_loss"] > 0
    assert metrics["train/recon_loss_epoch"] > 0
    # validation ran: its figures were drawn from the validation set
    (run_dir,) = (Path(cfg.output_dir) / cfg.model.variant).iterdir()
    assert (run_dir / "figures" / "val_reconstructions.png").is_file()
    assert (run_dir / "config.yaml").is_file()
