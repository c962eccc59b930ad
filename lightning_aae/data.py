"""The images of `data.dataset` (lightning_aae/sources.py reads them) as in-memory tensors, and the
DataModule that owns the labeled / unlabeled / validation (and, where the data has none, test) splits."""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Optional, Tuple

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset, Sampler

from .sources import (IDX_DATASETS, MNIST_SHAPE, DataError, Images, Source, download_idx,  # noqa: F401
                      have_idx_files, idx_raw_dir, load_mnist, read_idx, read_source)


# re-exported: the readers live in sources.py
__all__ = ["DataError", "ImageDataModule", "MNISTDataModule", "TensorPairs", "load_mnist", "read_idx", "split_indices"]


class TensorPairs(Dataset):
    """(x, y) rows of two tensors, fetched a whole batch at a time.

    `__getitems__` lets the DataLoader index the tensors once per batch instead of once per
    sample, so loading costs one gather per step; Lightning can still shard it under DDP.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices, device=self.x.device)
        return self.x[idx], self.y[idx]

    def to(self, device) -> "TensorPairs":
        return TensorPairs(self.x.to(device), self.y.to(device))


class EpochShuffle(Sampler):
    """A random order per pass, seeded from (run seed, epoch, pass) and never from the global generator.

    Any pass can be rebuilt, so a run stopped mid-epoch resumes with exactly the batches the
    uninterrupted run would have trained on, and data loading never moves the global random stream
    that the training noise comes from (which the checkpoint's RNG state restores).
    """

    def __init__(self, n: int, batch_size: int, seed: int, resume: Optional[dict] = None):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.passes = 0, 0
        self._resume = resume  # {"epoch", "trained" (batches), "batches_per_pass"}

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:  # Lightning calls it at every epoch start
        self.epoch, self.passes = epoch, 0
        if self._resume is not None and self._resume["epoch"] == epoch:
            self.passes = self._resume["trained"] // self._resume["batches_per_pass"]

    def __iter__(self):
        skip = 0
        if self._resume is not None and self._resume["epoch"] == self.epoch:
            skip = (self._resume["trained"] % self._resume["batches_per_pass"]) * self.batch_size
            self._resume = None  # only the interrupted pass resumes part-way
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch * 10_007 + self.passes) % 2**63)
        self.passes += 1
        return iter(torch.randperm(self.n, generator=g)[skip:].tolist())


def _batch_as_is(batch):
    return batch


def _proportional(counts: torch.Tensor, size: int) -> torch.Tensor:
    """How many of `size` each class gives, in proportion to `counts`; the remainder one by one to the
    classes whose share was rounded down most."""
    n = int(counts.sum())
    share = (counts.double() * size / n).floor().long()
    for c in torch.argsort(counts.double() * size / n - share, descending=True)[: size - int(share.sum())]:
        share[c] += 1
    return share


def split_indices(labels: Optional[torch.Tensor], val_size: int, labels_per_class: int, seed: int,
                  n: Optional[int] = None, title: str = "the training set"):
    """Seeded, class-balanced split of the training set into (labeled, unlabeled, validation) indices.

    The validation set takes images of each class in proportion to the class's size, so every split
    sees the classes in the same proportions whatever the seed. Without labels (`labels` None, `n`
    images) the validation set is a seeded random one and nothing is labeled.
    """
    n = len(labels) if labels is not None else n
    if val_size >= n:
        raise DataError(f"data.val_size={val_size} leaves no training images ({title} holds {n})")
    g = torch.Generator().manual_seed(seed)
    if labels is None:
        order = torch.randperm(n, generator=g)
        return order[:0], order[val_size:], order[:val_size]
    n_classes = int(labels.max()) + 1
    counts = torch.bincount(labels, minlength=n_classes)
    per_class = [torch.nonzero(labels == c).flatten() for c in range(n_classes)]
    per_class = [idx[torch.randperm(len(idx), generator=g)] for idx in per_class]
    share = _proportional(counts, val_size)
    val = torch.cat([idx[: int(share[c])] for c, idx in enumerate(per_class)])
    rest = [idx[int(share[c]):] for c, idx in enumerate(per_class)]
    smallest = min(range(n_classes), key=lambda c: len(rest[c]))
    if labels_per_class > len(rest[smallest]):
        raise DataError(f"data.labels_per_class={labels_per_class} is more than {title} holds of class {smallest} "
                        f"after the validation split ({len(rest[smallest])})")
    labeled = torch.cat([r[:labels_per_class] for r in rest])
    unlabeled = torch.cat([r[labels_per_class:] for r in rest])
    # shuffle so no split is ordered by class
    return tuple(t[torch.randperm(len(t), generator=g)] for t in (labeled, unlabeled, val))


def test_split(labels: Optional[torch.Tensor], n: int, test_size: int, seed: int, title: str):
    """(training, test) indices for data that brings no test set: a seeded test set, class-balanced
    where there are labels, drawn from its own stream (the other splits' seeds are unchanged by it)."""
    if test_size >= n:
        raise DataError(f"data.test_size={test_size} leaves no training images ({title} holds {n})")
    g = torch.Generator().manual_seed(seed * 1_000_003 + 7)
    if labels is None:
        order = torch.randperm(n, generator=g)
        return order[test_size:].sort().values, order[:test_size].sort().values
    counts = torch.bincount(labels)
    share = _proportional(counts, test_size)
    taken = [torch.nonzero(labels == c).flatten() for c in range(len(counts))]
    test = torch.cat([idx[torch.randperm(len(idx), generator=g)[: int(share[c])]] for c, idx in enumerate(taken)])
    keep = torch.ones(n, dtype=torch.bool)
    keep[test] = False
    return torch.nonzero(keep).flatten(), test.sort().values


def default_split_size(n: int) -> int:
    """A sixth of the images, at most 10,000: MNIST's 10,000 of 60,000, and a few dozen of a few hundred."""
    return max(1, min(10000, n // 6))


def make_splits(src: Source, val_size: Optional[int], test_size: Optional[int], labels_per_class: int,
                split_seed: int, batch_size: int) -> dict:
    """train / test images (a seeded test split where the data has no test set) and the labeled,
    unlabeled and validation indices into train; DataError names what cannot be split."""
    train, test = src.train, src.test
    if test is None:
        keep, held = test_split(train.y, len(train.x), test_size or default_split_size(len(train.x)), split_seed,
                                src.title)
        test = Images(train.x[held], train.y[held] if train.y is not None else None)
        train = Images(train.x[keep], train.y[keep] if train.y is not None else None)
    elif test_size:
        raise DataError(f"data.test_size sets the size of a test split, but {src.title} has its own test set")
    if labels_per_class and train.y is None:
        raise DataError(f"data.labels_per_class={labels_per_class} needs labels; {src.title} has none")
    lab, unl, val = split_indices(train.y, val_size or default_split_size(len(train.x)), labels_per_class,
                                  split_seed, n=len(train.x), title=src.title)
    if len(unl) < batch_size:
        raise DataError(f"{src.title}: {len(unl)} training images after the splits, fewer than one batch "
                        f"(data.batch_size={batch_size})")
    return {"train": train, "test": test, "labeled": lab, "unlabeled": unl, "val": val}


class ImageDataModule(L.LightningDataModule):
    """The images of `dataset` (MNIST by default; lightning_aae/sources.py) held in memory as tensors.

    Training batches:
      * labels_per_class == 0: (x, y) from every non-validation training image (y for the
        variants that condition on labels; the unsupervised ones ignore it; -1 where the data has
        no labels).
      * labels_per_class > 0: {"unlabeled": (x, y=-1), "labeled": (x, y)} through a
        CombinedLoader; the labeled set is cycled, so an epoch is one pass over the unlabeled set.
    Batch sizes are per device: with N devices an optimizer step sees N * batch_size images. The test set
    (the data's own, or a seeded split) is only for `test`, never for model selection.
    """

    def __init__(self, root: str = "data", download: bool = True, batch_size: int = 100,
                 labeled_batch_size: int = 100, val_size: Optional[int] = None, labels_per_class: int = 0,
                 split_seed: int = 0, on_device: bool = True, seed: int = 0, dataset: str = "mnist",
                 path: Optional[str] = None, image_size: Optional[int] = None, test_size: Optional[int] = None,
                 svhn_extra: bool = False):
        super().__init__()
        self.root, self.download, self.dataset = root, download, dataset
        self.path, self.image_size, self.svhn_extra = path, image_size, svhn_extra
        self.batch_size, self.labeled_batch_size = batch_size, labeled_batch_size
        self.val_size, self.test_size, self.labels_per_class = val_size, test_size, labels_per_class
        self.split_seed, self.on_device = split_seed, on_device
        self.seed = seed  # the run's seed: the training order of every epoch derives from it
        self.labeled: Optional[TensorPairs] = None
        self.unlabeled: Optional[TensorPairs] = None
        self.val: Optional[TensorPairs] = None
        self.test: Optional[TensorPairs] = None
        self._source: Optional[Source] = None
        self._splits: Optional[dict] = None
        self._samplers: dict = {}
        self._resume: Optional[dict] = None

    @classmethod
    def from_config(cls, data_cfg, seed: int = 0) -> "ImageDataModule":
        return cls(**dict(data_cfg), seed=seed)

    def prepare_data(self) -> None:
        root = Path(self.root).expanduser()
        if self.dataset in IDX_DATASETS and not have_idx_files(root, self.dataset):
            if not self.download:
                load_mnist(root, "train", download=False, dataset=self.dataset)  # raises the explanatory error
            download_idx(root, self.dataset)

    # ---- what the data is ---------------------------------------------------------------------
    @property
    def source(self) -> Source:
        """The images as read (once) from disk; after setup only what they are (the splits hold the images)."""
        if self._source is None:
            self._source = read_source(self)
        return self._source

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        return self.source.shape

    @property
    def class_names(self) -> Tuple[str, ...]:
        return self.source.classes

    @property
    def n_classes(self) -> int:
        """0 where the data has no labels."""
        return len(self.class_names)

    def check_splits(self) -> None:
        """Fail now, with the setting or file named, if the data cannot be read or split."""
        self._split()

    def _split(self) -> dict:
        if self._splits is None:
            self._splits = make_splits(self.source, self.val_size, self.test_size, self.labels_per_class,
                                       self.split_seed, self.batch_size)
        return self._splits

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        if self.on_device and trainer is not None:
            return trainer.strategy.root_device
        return torch.device("cpu")

    def setup(self, stage: Optional[str] = None) -> None:
        """Every split at once, whatever the stage ("test" needs the validation split too: clustering
        names its clusters from validation images and Parzen chooses sigma on them); then the images as
        read are let go, so the data is held once."""
        if self.val is not None:
            return
        device, splits = self._device(), self._split()
        x, y = splits["train"].x, splits["train"].y
        if y is None:  # unlabeled data: -1, as for the hidden labels of the semi-supervised split
            y = torch.full((len(x),), -1, dtype=torch.long)
        lab, unl, val = splits["labeled"], splits["unlabeled"], splits["val"]
        hidden = torch.full_like(y[unl], -1)
        self.labeled = TensorPairs(x[lab], y[lab]).to(device)
        self.unlabeled = TensorPairs(x[unl], hidden if self.labels_per_class else y[unl]).to(device)
        self.val = TensorPairs(x[val], y[val]).to(device)
        test = splits["test"]
        self.test = TensorPairs(test.x, test.y if test.y is not None else
                                torch.full((len(test.x),), -1, dtype=torch.long)).to(device)
        self._splits, self._source = None, dataclasses.replace(self.source, train=None, test=None)

    def _loader(self, data: TensorPairs, batch_size: int, shuffle: bool, drop_last: bool = False) -> DataLoader:
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                          collate_fn=_batch_as_is, num_workers=0)

    def _eval_loader(self, data: TensorPairs) -> DataLoader:
        # Lightning's default DDP sampler pads by repeating images; this one does not, so
        # metrics over the whole set count each image exactly once.
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:
            sampler = UnrepeatedDistributedSampler(data, num_replicas=trainer.world_size,
                                                   rank=trainer.global_rank, shuffle=False)
            return DataLoader(data, batch_size=self.batch_size * 10, sampler=sampler,
                              collate_fn=_batch_as_is, num_workers=0)
        return self._loader(data, self.batch_size * 10, shuffle=False)

    def _train_loader(self, name: str, data: TensorPairs, batch_size: int, drop_last: bool) -> DataLoader:
        # a private generator: making an iterator draws a seed from it, not from the global stream
        private = torch.Generator().manual_seed(self.seed)
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:  # Lightning shards it with its DistributedSampler
            return DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=drop_last, generator=private,
                              collate_fn=_batch_as_is, num_workers=0)
        per_pass = len(data) // batch_size if drop_last else -(-len(data) // batch_size)
        resume = {**self._resume, "batches_per_pass": per_pass} if self._resume else None
        stream = {"unlabeled": 0, "labeled": 1}[name]
        self._samplers[name] = EpochShuffle(len(data), batch_size, self.seed * 2 + stream, resume)
        return DataLoader(data, batch_size=batch_size, sampler=self._samplers[name], drop_last=drop_last,
                          generator=private, collate_fn=_batch_as_is, num_workers=0)

    def train_dataloader(self):
        unlabeled = self._train_loader("unlabeled", self.unlabeled, self.batch_size, drop_last=True)
        if not self.labels_per_class:
            return unlabeled
        labeled = self._train_loader("labeled", self.labeled, min(self.labeled_batch_size, len(self.labeled)), False)
        return CombinedLoader({"unlabeled": unlabeled, "labeled": labeled}, mode="max_size_cycle")

    def state_dict(self) -> dict:
        """Where training stands in the epoch, for an exact mid-epoch resume (single process)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or not self._samplers or trainer.world_size > 1:
            return {}
        trained = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if trained >= trainer.num_training_batches:  # the epoch's batches are all done: the next epoch starts afresh
            trained = 0  # (at the end of fit the count is still the last epoch's, the epoch already the next one)
        return {"epoch": trainer.current_epoch, "trained": trained}

    def load_state_dict(self, state: dict) -> None:
        self._resume = state or None
        if self._resume:
            # true of Lightning's own view of the loaders, not here: the samplers replay the epoch
            warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")

    def val_dataloader(self):
        return self._eval_loader(self.val)

    def test_dataloader(self):
        return self._eval_loader(self.test)


MNISTDataModule = ImageDataModule  # the name before other data sets could be read
