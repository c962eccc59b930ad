import shutil

import pytest
import torch

from lightning_aae.data import DataError, MNISTDataModule, load_mnist, read_idx, split_indices


@pytest.fixture(scope="module")
def train_labels(data_root):
    return load_mnist(data_root, "train")[1]


def test_loads_the_real_mnist(data_root):
    x, y = load_mnist(data_root, "test")
    assert x.shape == (10000, 784) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) == 1.0
    assert torch.bincount(y).tolist()[0] == 980  # the test set's count of zeros


def test_split_sizes_balance_and_disjointness(train_labels):
    lab, unl, val = split_indices(train_labels, 10000, 10, seed=0)
    assert (len(lab), len(unl), len(val)) == (100, 49900, 10000)
    assert torch.bincount(train_labels[lab], minlength=10).tolist() == [10] * 10
    all_idx = torch.cat([lab, unl, val])
    assert len(torch.unique(all_idx)) == 60000  # disjoint and complete
    # validation keeps the training set's class proportions to within one image
    expected = torch.bincount(train_labels, minlength=10).double() / 6
    assert (torch.bincount(train_labels[val], minlength=10) - expected).abs().max() <= 1


def test_split_is_deterministic_by_seed(train_labels):
    a = split_indices(train_labels, 10000, 100, seed=3)
    b = split_indices(train_labels, 10000, 100, seed=3)
    c = split_indices(train_labels, 10000, 100, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_zero_labels_allowed(train_labels):
    lab, unl, val = split_indices(train_labels, 5000, 0, seed=0)
    assert len(lab) == 0 and len(unl) == 55000 and len(val) == 5000


def test_impossible_splits_are_named(train_labels):
    with pytest.raises(DataError, match="labels_per_class=6000"):
        split_indices(train_labels, 10000, 6000, seed=0)
    with pytest.raises(DataError, match="val_size=60000"):
        split_indices(train_labels, 60000, 0, seed=0)


def test_datamodule_batches(data_root):
    dm = MNISTDataModule(root=str(data_root), batch_size=32, labeled_batch_size=16, labels_per_class=10)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))[0]
    assert batch["unlabeled"][0].shape == (32, 784)
    assert (batch["unlabeled"][1] == -1).all()  # unlabeled images carry no label
    x, y = batch["labeled"]
    assert x.shape == (16, 784) and y.min() >= 0
    dm0 = MNISTDataModule(root=str(data_root), batch_size=50)
    dm0.setup("fit")
    x, y = next(iter(dm0.train_dataloader()))
    assert x.shape == (50, 784) and y.min() >= 0
    assert len(dm0.train_dataloader()) == 50000 // 50


def test_missing_data_without_download_says_where(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "MNIST" / "raw")):
        load_mnist(tmp_path, "train", download=False)


def _copy_raw(data_root, tmp_path):
    shutil.copytree(data_root / "MNIST" / "raw", tmp_path / "MNIST" / "raw")
    return tmp_path / "MNIST" / "raw"


def test_truncated_and_corrupted_files_are_named(data_root, tmp_path):
    raw = _copy_raw(data_root, tmp_path)
    labels = raw / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:5000])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte is truncated"):
        load_mnist(tmp_path, "test")
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(b"\x01\x02" + images.read_bytes()[2:])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte is not an unsigned-byte IDX"):
        read_idx(images, 10000, (28, 28))
