"""Data beyond MNIST: SVHN's .mat files, an .npz array file and folders of images, each written here as
small fixture files (as torchvision's own tests do), trained end to end, and every kind of bad input."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_aae.cli import main
from lightning_aae.config import load_config
from lightning_aae.data import ImageDataModule
from lightning_aae.sources import DataError

from conftest import ROOT, SMALL_NETS, child_env, write_svhn

rng = np.random.default_rng(0)


def _digits_like(n: int, h: int, w: int, c: int = 0, classes: int = 10):
    """Images whose brightness pattern depends on the class, uint8, N x H x W (x C when c)."""
    labels = np.arange(n) % classes
    base = rng.integers(0, 60, size=(n, h, w, max(c, 1)), dtype=np.int64)
    for k in range(classes):
        base[labels == k, (k * h) // classes, :, :] += 190
    images = np.clip(base, 0, 255).astype(np.uint8)
    return (images if c else images[..., 0]), labels


@pytest.fixture(scope="module")
def svhn_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("svhn_root")
    written = write_svhn(root, 160, 40)
    np.save(root / "test_expected.npy", written["test"][0])
    return root


@pytest.fixture(scope="module")
def npz_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("npz") / "digits.npz"
    images, labels = _digits_like(240, 8, 8)
    np.savez(path, images=images, labels=labels)
    return path


def _write_folder(root: Path, classes: int, per_class: int, size: int, mode: str) -> Path:
    for k in range(classes):
        (root / f"class_{k}").mkdir(parents=True)
        images, _ = _digits_like(per_class, size, size, 3 if mode == "RGB" else 0, classes=1)
        for i, image in enumerate(images):
            Image.fromarray(image, mode).save(root / f"class_{k}" / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def rgb_folder(tmp_path_factory):
    return _write_folder(tmp_path_factory.mktemp("rgb") / "pets", 3, 40, 12, "RGB")


@pytest.fixture(scope="module")
def gray_folder(tmp_path_factory):
    return _write_folder(tmp_path_factory.mktemp("gray") / "marks", 2, 60, 8, "L")


@pytest.fixture(scope="module")
def flat_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("flat") / "unlabeled"
    root.mkdir()
    for i, image in enumerate(_digits_like(120, 8, 8)[0]):
        Image.fromarray(image, "L").save(root / f"{i:03d}.png")
    return root


SOURCES = {  # fixture -> its data settings (labels_per_class for the semi-supervised run)
    "svhn_root": lambda p: [f"data.root={p}", "data.dataset=svhn", "data.download=false"],
    "npz_file": lambda p: ["data.dataset=array", f"data.path={p}"],
    "rgb_folder": lambda p: ["data.dataset=folder", f"data.path={p}"],
    "gray_folder": lambda p: ["data.dataset=folder", f"data.path={p}"],
}
SHAPES = {"svhn_root": (3, 32, 32), "npz_file": (1, 8, 8), "rgb_folder": (3, 12, 12), "gray_folder": (1, 8, 8)}
SMALL_DATA = ["data.batch_size=16", "data.labeled_batch_size=8", "callbacks.figures.tsne_points=50"]


def _run(tmp_path, config: str, data: list, extra=()) -> tuple:
    out = tmp_path / "runs"
    argv = ["--config", str(ROOT / "configs" / config), *data, *SMALL_NETS, *SMALL_DATA, f"output_dir={out}",
            "logger.enabled=false", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.fast_dev_run=true",
            "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", *extra]
    return main(argv), out


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("config,extra", [("aae.yaml", []), ("semi_supervised.yaml", ["data.labels_per_class=3"]),
                                          ("clustering.yaml", ["model.n_clusters=4"])],
                         ids=["aae", "semi_supervised", "clustering"])
def test_each_source_trains_end_to_end_with_figures(source, config, extra, request, tmp_path):
    code, out = _run(tmp_path, config, SOURCES[source](request.getfixturevalue(source)), extra)
    assert code == 0
    (run,) = [p for p in out.glob("*/*") if p.is_dir()]
    saved = load_config(run / "config.yaml")
    assert list(saved.model.image_shape) == list(SHAPES[source])  # the shape came from the data
    recon = np.asarray(Image.open(run / "figures" / "test_reconstructions.png"))
    assert recon.ndim == (3 if SHAPES[source][0] == 3 else 2)  # colour grids for colour data
    if config != "aae.yaml":  # labels exist: the classes of the data, scored
        assert (run / "figures" / ("test_confusion_matrix.png" if "semi" in config else "test_clusters.png")).is_file()


def test_train_py_on_svhn_as_a_user_types_it(svhn_root, tmp_path):
    cmd = [sys.executable, "train.py", "--config", "configs/semi_supervised_svhn.yaml", f"data.root={svhn_root}",
           "data.download=false", "data.labels_per_class=3", *SMALL_NETS, *SMALL_DATA, f"output_dir={tmp_path}",
           "logger.enabled=false", "trainer.fast_dev_run=true", "trainer.enable_progress_bar=false"]
    proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test/error" in proc.stdout


def test_the_svhn_reader_maps_ten_to_zero_and_keeps_colour(svhn_root):
    dm = ImageDataModule(root=str(svhn_root), dataset="svhn", download=False, batch_size=16, on_device=False)
    dm.setup("fit")
    assert dm.image_shape == (3, 32, 32) and dm.n_classes == 10
    assert dm.test.x.shape == (40, 3 * 32 * 32) and set(dm.test.y.tolist()) == set(range(10))
    # the image comes back as written: channel-first after the .mat's H x W x C x N, in [0, 1]
    expected = np.load(svhn_root / "test_expected.npy")[0].transpose(2, 0, 1).reshape(-1) / 255.0
    assert torch.allclose(dm.test.x[0], torch.from_numpy(expected).float())


def test_an_array_without_a_test_set_gets_a_seeded_balanced_split(npz_file):
    a = ImageDataModule(dataset="array", path=str(npz_file), batch_size=16, on_device=False, split_seed=0)
    b = ImageDataModule(dataset="array", path=str(npz_file), batch_size=16, on_device=False, split_seed=0)
    a.setup(), b.setup()
    assert len(a.test.x) == 240 // 6 and torch.equal(a.test.x, b.test.x)  # a sixth, the same for every run seed
    assert torch.bincount(a.test.y, minlength=10).tolist() == [4] * 10  # class-balanced
    assert len(a.val.x) == 200 // 6  # the validation default adapts to the small set too
    seen = torch.cat([a.unlabeled.x, a.val.x, a.test.x])
    assert len(torch.unique(seen, dim=0)) == len(seen)  # disjoint splits


def test_array_channels_last_floats_and_its_own_test_set(tmp_path):
    images = rng.random((50, 6, 6, 3)).astype(np.float32)
    test = rng.random((10, 6, 6, 3)).astype(np.float32)
    path = tmp_path / "colour.npz"
    np.savez(path, images=images, test_images=test)
    dm = ImageDataModule(dataset="array", path=str(path), batch_size=8, on_device=False)
    dm.setup()
    assert dm.image_shape == (3, 6, 6) and dm.n_classes == 0 and len(dm.test.x) == 10
    assert torch.allclose(dm.test.x[0], torch.from_numpy(test[0].transpose(2, 0, 1)).flatten())
    assert (dm.val.y == -1).all()


def test_a_flat_folder_is_unlabeled_and_trains_the_unsupervised_variants(flat_folder, tmp_path):
    data = ["data.dataset=folder", f"data.path={flat_folder}"]
    assert _run(tmp_path / "a", "aae.yaml", data)[0] == 0
    assert _run(tmp_path / "c", "clustering.yaml", data, ["model.n_clusters=4"])[0] == 0  # scored on recon loss


def test_a_folder_with_mixed_sizes_trains_once_resized(tmp_path):
    root = _write_folder(tmp_path / "mixed", 2, 30, 12, "L")
    Image.fromarray(np.zeros((9, 14), np.uint8), "L").save(root / "class_0" / "odd.png")
    dm = ImageDataModule(dataset="folder", path=str(root), image_size=8, batch_size=8, on_device=False)
    dm.setup()
    assert dm.image_shape == (1, 8, 8) and dm.class_names == ("class_0", "class_1")


# ---- bad input: one line naming the file and the problem, exit 2, nothing written -----------------
def _bad(tmp_path, name: str, arrays: dict) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


BAD_ARRAYS = {
    "wrong_shape": ({"images": np.zeros((10, 64), np.uint8)}, r"shape \(10, 64\)"),
    "wrong_dtype": ({"images": np.zeros((10, 8, 8), np.int64)}, "dtype int64"),
    "floats_outside": ({"images": np.full((10, 8, 8), 2.0, np.float32)}, "outside \\[0, 1\\]"),
    "label_count": ({"images": np.zeros((10, 8, 8), np.uint8), "labels": np.zeros(9, np.int64)}, "9 labels for 10"),
    "label_type": ({"images": np.zeros((10, 8, 8), np.uint8), "labels": np.zeros(10, np.float32)}, "integer class"),
    "no_images": ({"pictures": np.zeros((10, 8, 8), np.uint8)}, "no 'images' array"),
}


def _fails_cleanly(capsys, tmp_path, data, match, config="aae.yaml", extra=(), names=None):
    """Exit 2, one line on stderr matching `match` and naming the file `names`, and no run folder."""
    code, out = _run(tmp_path, config, data, extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert re.search(match, err[0]), err[0]
    assert names is None or str(names) in err[0], err[0]
    assert not out.exists()  # nothing written


@pytest.mark.parametrize("case", sorted(BAD_ARRAYS))
def test_bad_arrays(case, tmp_path, capsys):
    arrays, match = BAD_ARRAYS[case]
    path = _bad(tmp_path, f"{case}.npz", arrays)
    _fails_cleanly(capsys, tmp_path, ["data.dataset=array", f"data.path={path}"], match, names=path)


def test_missing_and_unreadable_files(tmp_path, capsys):
    _fails_cleanly(capsys, tmp_path, ["data.dataset=array", f"data.path={tmp_path / 'none.npz'}"], "does not exist",
                   names=tmp_path / "none.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    _fails_cleanly(capsys, tmp_path, ["data.dataset=array", f"data.path={junk}"], "cannot be read", names=junk)
    _fails_cleanly(capsys, tmp_path, [f"data.root={tmp_path}", "data.dataset=svhn", "data.download=false"],
                   "is missing", names=tmp_path / "SVHN" / "train_32x32.mat")
    folder = _write_folder(tmp_path / "broken", 2, 20, 8, "L")
    (folder / "class_1" / "bad.png").write_bytes(b"\x89PNG nonsense")
    _fails_cleanly(capsys, tmp_path, ["data.dataset=folder", f"data.path={folder}"], "cannot be read",
                   names=folder / "class_1" / "bad.png")


def test_empty_folder_and_mixed_sizes(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _fails_cleanly(capsys, tmp_path, ["data.dataset=folder", f"data.path={tmp_path / 'empty'}"], "holds no PNG or JPEG",
                   names=tmp_path / "empty")
    root = _write_folder(tmp_path / "mixed", 2, 20, 8, "L")
    Image.fromarray(np.zeros((9, 14), np.uint8), "L").save(root / "class_1" / "wide.png")
    _fails_cleanly(capsys, tmp_path, ["data.dataset=folder", f"data.path={root}"], "is 14x9.*data.image_size",
                   names=root / "class_1" / "wide.png")


def test_too_few_labels_per_class_and_no_labels(npz_file, flat_folder, tmp_path, capsys):
    _fails_cleanly(capsys, tmp_path, ["data.dataset=array", f"data.path={npz_file}"], "labels_per_class=30 is more than",
                   "semi_supervised.yaml", ["data.labels_per_class=30"], names=npz_file)
    _fails_cleanly(capsys, tmp_path, ["data.dataset=folder", f"data.path={flat_folder}"],
                   "semi_supervised.*has no labels|needs labels", "semi_supervised.yaml", ["data.labels_per_class=2"])
    _fails_cleanly(capsys, tmp_path, ["data.dataset=folder", f"data.path={flat_folder}"],
                   "supervised trains on every label.*has no labels", "supervised.yaml")


def test_a_checkpoint_resumes_only_on_data_of_its_shape(npz_file, rgb_folder, tmp_path, capsys):
    code, out = _run(tmp_path / "first", "aae.yaml", ["data.dataset=array", f"data.path={npz_file}"],
                     ["trainer.fast_dev_run=false", "trainer.max_epochs=1", "trainer.limit_train_batches=2"])
    assert code == 0
    (last,) = out.glob("*/*/checkpoints/last.ckpt")
    _fails_cleanly(capsys, tmp_path / "second", ["data.dataset=folder", f"data.path={rgb_folder}"],
                   "trained on image_shape \\[1, 8, 8\\].*\\[3, 12, 12\\]", extra=[f"ckpt_path={last}"])


def test_generate_and_evaluate_work_in_colour(rgb_folder, tmp_path):
    from lightning_aae.evaluate import evaluate
    from lightning_aae.generate import main as generate

    code, out = _run(tmp_path, "semi_supervised.yaml", SOURCES["rgb_folder"](rgb_folder),
                     ["data.labels_per_class=3", "trainer.fast_dev_run=false", "trainer.max_epochs=1",
                      "trainer.limit_train_batches=2", "callbacks.figures.enabled=false"])
    assert code == 0
    (last,) = out.glob("*/*/checkpoints/last.ckpt")
    assert generate([str(last), "--n", "6", "--label", "2", "--out", str(tmp_path / "s.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "s.png")).shape[-1] == 3  # a colour grid
    assert generate([str(last), "--encode", str(rgb_folder / "class_1"), "--out", str(tmp_path / "c.csv")]) == 0
    assert len((tmp_path / "c.csv").read_text().splitlines()) == 41  # a header and one row per image
    metrics = evaluate(str(last), parzen=True, n_samples=50, per_image=str(tmp_path / "e.csv"))
    assert 0 <= metrics["test/error"] <= 1 and np.isfinite(metrics["test/parzen_ll"])


def test_registry_lines_name_the_data_and_keep_it_off_the_mnist_tables():
    from experiments import registry, tables

    cfg = {"model": {"variant": "semi_supervised", "n_classes": 3, "latent_dim": 10},
           "data": {"dataset": "folder", "path": "/x/pets", "labels_per_class": 20}}
    assert registry.experiment_of(cfg) == {"experiment": "semi_supervised", "variant": "semi_supervised",
                                           "dataset": "pets", "labels": 60, "latent_dim": 10}
    mnist = {**cfg, "data": {"dataset": "mnist", "labels_per_class": 100}, "model": {**cfg["model"], "n_classes": 10}}
    assert "dataset" not in registry.experiment_of(mnist)
    line = {"experiment": "semi_supervised", "dataset": "pets", "metric": "test_error", "value": 12.5, "seed": 0,
            "epochs": 3, "recipe": "pets-ss", "labels": 60}
    assert "pets-ss" not in tables.experiment_table([line], "semi_supervised")
    assert "pets-ss" in tables.dataset_table([line]) and "12.50" in tables.dataset_table([line])

