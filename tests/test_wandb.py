"""A short real fit with an offline W&B run (fast_dev_run would swap the logger for a dummy)."""
import json
from pathlib import Path

import pytest

from conftest import SMALL_NETS
from lightning_aae.config import load_config
from lightning_aae.training import train
from wandb_records import read_records, summary_and_history_keys


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory, data_root):
    tmp = tmp_path_factory.mktemp("wandb")
    cfg = load_config("configs/semi_supervised.yaml", [
        f"data.root={data_root}", f"output_dir={tmp / 'runs'}", f"logger.save_dir={tmp}", "logger.mode=offline",
        "logger.tags=[ci,smoke]", "trainer.max_epochs=2", "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=2", "trainer.enable_progress_bar=false", *SMALL_NETS,
        "callbacks.figures.max_points=300", "trainer.accelerator=cpu"])
    metrics = train(cfg, verbose=False)
    (run_dir,) = (tmp / "wandb").glob("offline-run-*")
    (data_file,) = run_dir.glob("run-*.wandb")
    return metrics, run_dir, data_file, tmp


def test_offline_run_holds_the_figures(offline_run):
    _, run_dir, _, _ = offline_run
    images = {p.parent.name + "/" + p.name.rsplit("_", 2)[0] for p in (run_dir / "files" / "media" / "images").rglob("*.png")}
    for stage in ("val", "test"):
        for kind in ("reconstructions", "prior_samples", "latent_scatter", "style_grid", "confusion_matrix"):
            assert f"{stage}/{kind}" in images
    assert "train/discriminator_accuracy" in images and "val/accuracy_curve" in images


def test_offline_run_holds_the_latent_table(offline_run):
    _, run_dir, _, _ = offline_run
    (table,) = (run_dir / "files" / "media" / "table" / "test").glob("latent_table_*.table.json")
    content = json.loads(table.read_text())
    assert content["columns"] == [f"z{i}" for i in range(10)] + ["label"]
    assert len(content["data"]) == 300 and {row[-1] for row in content["data"]} <= set(range(10))


def test_offline_run_summary_config_group_and_tags(offline_run):
    metrics, _, data_file, _ = offline_run
    summary, history = summary_and_history_keys(data_file)
    assert json.loads(summary["test/accuracy"]) == pytest.approx(metrics["test/accuracy"])
    assert json.loads(summary["test/n_images"]) == 10000
    assert {"train/recon_loss_epoch", "val/accuracy", "val/error", "train/disc_acc_style_epoch"} <= history
    run = next(r.run for r in read_records(data_file) if r.WhichOneof("record_type") == "run")
    # runs of one recipe share a group (semi_supervised.yaml names its recipe; without it, the variant)
    recipe = load_config("configs/semi_supervised.yaml").logger.group
    assert recipe and run.run_group == recipe and list(run.tags) == ["ci", "smoke"]
    assert run.display_name.startswith("semi_supervised-z10")
    config = {item.key or "/".join(item.nested_key): item.value_json for item in run.config.update}
    assert json.loads(config["model"])["variant"] == "semi_supervised"


def test_figures_also_land_as_png_in_the_run_folder(offline_run):
    _, _, _, tmp = offline_run
    (figures,) = (tmp / "runs" / "semi_supervised").glob("*/figures")
    names = {p.name for p in figures.glob("*.png")}
    assert {"val_reconstructions.png", "test_latent_scatter.png", "test_style_grid.png",
            "test_confusion_matrix.png", "train_discriminator_accuracy.png"} <= names
