"""Each figure callback with a small module, a fake trainer and a recording stand-in for W&B."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import WandbLogger
from PIL import Image

from callbacks import FIGURES, build_figure_callbacks
from conftest import SMALL
from lightning_aae.config import load_config
from lightning_aae.data import TensorPairs
from lightning_aae.variants import build_module


class RecordingWandb(WandbLogger):
    """Takes what the callbacks send to W&B and keeps it, with no W&B run behind it."""

    def __init__(self):
        self.images, self.logged = {}, {}

    def log_image(self, key, images, step=None, **kwargs):
        self.images[key] = images

    @property
    def experiment(self):
        return SimpleNamespace(log=self.logged.update)


def fake_trainer(module, logger, rank_zero=True, epoch=0):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(300, 784, generator=g), torch.randint(0, 10, (300,), generator=g)
    if module.categories == "clusters":
        module.cluster_assignment = torch.arange(module.n_categories) % 10
    return SimpleNamespace(
        is_global_zero=rank_zero, current_epoch=epoch, global_step=10, sanity_checking=False, fast_dev_run=False,
        max_epochs=5, state=SimpleNamespace(fn="fit"), loggers=[logger], callback_metrics={},
        datamodule=SimpleNamespace(val=TensorPairs(x, y), test=TensorPairs(x, y)))


def small(config):
    return build_module(load_config(f"configs/{config}.yaml", SMALL))


@pytest.mark.parametrize("config, expected", [
    ("aae", {"reconstructions", "prior_samples", "latent_scatter", "latent_manifold", "filters"}),
    ("autoencoder", {"reconstructions", "prior_samples", "latent_scatter", "latent_manifold", "filters"}),
    ("supervised", {"reconstructions", "prior_samples", "latent_scatter", "style_grid", "filters"}),
    ("semi_supervised", {"reconstructions", "prior_samples", "latent_scatter", "style_grid", "confusion_matrix",
                         "filters"}),
    ("clustering", {"reconstructions", "prior_samples", "latent_scatter", "style_grid", "clusters", "filters"}),
])
def test_each_variant_gets_its_figures_as_png_and_on_wandb(config, expected, tmp_path):
    module, logger = small(config), RecordingWandb()
    module.train()
    trainer = fake_trainer(module, logger)
    callbacks = build_figure_callbacks(tmp_path, list(FIGURES), n_images=6, max_points=200)
    for cb in callbacks:
        cb.on_validation_epoch_end(trainer, module)
    assert {k.split("/", 1)[1] for k in logger.images} == expected
    assert {p.name for p in tmp_path.glob("*.png")} == {f"val_{k}.png" for k in expected}
    assert module.training  # put back in training mode
    assert all(p.grad is None for p in module.parameters())  # drawing computed no gradients


def test_reconstruction_grid_pairs_originals_with_reconstructions(tmp_path):
    module, logger = small("aae"), RecordingWandb()
    trainer = fake_trainer(module, logger)
    cb = FIGURES["reconstructions"](tmp_path, n_images=5)
    cb.on_validation_epoch_end(trainer, module)
    grid = np.asarray(Image.open(tmp_path / "val_reconstructions.png"))
    assert grid.shape == (4 * 30 + 2, 5 * 30 + 2)  # 4 rows (2 x original + reconstruction), 5 columns
    first = trainer.datamodule.val.x[0].reshape(28, 28).numpy()
    assert np.abs(grid[2:30, 2:30] / 255.0 - first).max() < 1 / 255 + 1e-6  # top-left is the first digit


def test_style_grid_has_one_column_per_category_plus_the_digit(tmp_path):
    module, logger = small("clustering"), RecordingWandb()
    FIGURES["style_grid"](tmp_path, rows=3).draw(fake_trainer(module, logger), module,
                                                  torch.rand(3, 784), torch.zeros(3), "val")
    grid = np.asarray(Image.open(tmp_path / "val_style_grid.png"))
    assert grid.shape == (3 * 30 + 2, (16 + 1) * 30 + 2)


def test_test_stage_sends_table_and_confusion_plot(tmp_path):
    module, logger = small("semi_supervised"), RecordingWandb()
    trainer = fake_trainer(module, logger)
    for cb in build_figure_callbacks(tmp_path, ["latent_scatter", "classification"], max_points=100):
        cb.on_test_epoch_end(trainer, module)
    table = logger.logged["test/latent_table"]
    assert table.columns == [f"z{i}" for i in range(10)] + ["label"] and len(table.data) == 100
    assert "test/confusion_matrix_plot" in logger.logged


def test_nothing_is_drawn_off_rank_zero_or_between_scheduled_epochs(tmp_path):
    module, logger = small("aae"), RecordingWandb()
    cb = FIGURES["reconstructions"](tmp_path, every_n_epochs=2)
    cb.on_validation_epoch_end(fake_trainer(module, logger, rank_zero=False, epoch=1), module)
    cb.on_validation_epoch_end(fake_trainer(module, logger, epoch=0), module)  # epoch 1 of 2: not due
    assert not logger.images and not list(tmp_path.iterdir())
    cb.on_validation_epoch_end(fake_trainer(module, logger, epoch=1), module)
    assert "val/reconstructions" in logger.images


def test_training_health_plots_each_discriminator(tmp_path):
    module, logger = small("semi_supervised"), RecordingWandb()
    trainer = fake_trainer(module, logger)
    cb = FIGURES["training_health"](tmp_path)
    for epoch, acc in enumerate([0.9, 0.7, 0.55]):
        trainer.callback_metrics = {"train/disc_acc_style_epoch": torch.tensor(acc),
                                    "train/disc_acc_category_epoch": torch.tensor(acc - 0.1)}
        trainer.current_epoch = epoch + 1
        cb.on_train_epoch_start(trainer, module)
    assert cb.history == {"style": pytest.approx([0.9, 0.7, 0.55]), "category": pytest.approx([0.8, 0.6, 0.45])}
    cb.on_train_end(trainer, module)
    assert (tmp_path / "train_discriminator_accuracy.png").is_file()
    assert "train/discriminator_accuracy" in logger.images


def test_accuracy_curve_follows_the_validation_metric(tmp_path):
    module, logger = small("semi_supervised"), RecordingWandb()
    trainer = fake_trainer(module, logger)
    cb = FIGURES["accuracy_curve"](tmp_path)
    for acc in (0.5, 0.8):
        trainer.callback_metrics = {"val/accuracy": torch.tensor(acc)}
        cb.on_validation_end(trainer, module)
    assert cb.history == {"accuracy": pytest.approx([0.5, 0.8])}
    assert (tmp_path / "val_accuracy_curve.png").is_file() and "val/accuracy_curve" in logger.images
    clusters = FIGURES["accuracy_curve"](tmp_path)
    trainer.callback_metrics = {"val/cluster_error": torch.tensor(0.3), "val/hungarian_accuracy": torch.tensor(0.6)}
    clusters.on_validation_end(trainer, small("clustering"))
    assert clusters.history == {"1 - cluster error": pytest.approx([0.7]), "Hungarian accuracy": pytest.approx([0.6])}


def test_figure_titles_name_the_tested_checkpoint_not_the_last_epoch():
    from callbacks.figures import FigureCallback

    fit_end = SimpleNamespace(current_epoch=45, ckpt_path="runs/x/checkpoints/epoch030.ckpt")
    assert FigureCallback.moment(fit_end, "test") == "checkpoint epoch030"
    assert FigureCallback.moment(fit_end, "val") == "epoch 45"
    assert FigureCallback.moment(SimpleNamespace(current_epoch=3, ckpt_path=None), "test") == "final weights"
