"""MNIST (or Fashion-MNIST, `data.dataset`) as in-memory tensors, and the DataModule that owns the
labeled / unlabeled / validation splits."""
from __future__ import annotations

import gzip
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset, Sampler

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
N_CLASSES = 10


@dataclass(frozen=True)
class DatasetSpec:
    title: str  # in messages
    folder: str  # <root>/<folder>/raw holds the IDX files (torchvision's layout)
    torchvision_class: str  # downloads them
    classes: Tuple[str, ...]


# data.dataset -> the dataset; both have the same four file names, counts and 28x28 images
DATASETS = {
    "mnist": DatasetSpec("MNIST", "MNIST", "MNIST", tuple(str(d) for d in range(10))),
    "fashion_mnist": DatasetSpec("Fashion-MNIST", "FashionMNIST", "FashionMNIST",
                                 ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                  "Sneaker", "Bag", "Ankle boot")),
}


class DataError(RuntimeError):
    """The dataset cannot be found or read; the message says which file and what to do."""


def _open_idx(path: Path, title: str = "MNIST") -> bytes:
    try:
        return _read_idx_bytes(path, title)
    except FileNotFoundError:
        raise DataError(f"{title} file {path} (or {path.name}.gz) is missing") from None
    except OSError as exc:
        raise DataError(f"{title} file {exc.filename or path} cannot be read ({exc.strerror or type(exc).__name__})") from None


def _read_idx_bytes(path: Path, title: str = "MNIST") -> bytes:
    if path.is_file():
        return path.read_bytes()
    gz = path.with_name(path.name + ".gz")
    if gz.is_file():
        try:
            with gzip.open(gz) as f:
                return f.read()
        except (OSError, EOFError) as exc:
            raise DataError(f"{title} file {gz} is corrupted ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                            "delete it and download again") from None
    raise FileNotFoundError(path)


def read_idx(path: Path, expected_count: int, expected_dims: Tuple[int, ...], title: str = "MNIST") -> torch.Tensor:
    """Read one IDX file (uint8) and check its header and length against what the dataset should hold."""
    raw = _open_idx(path, title)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{title} file {path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{title} file {path} is truncated (header incomplete)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if dims != (expected_count, *expected_dims):
        raise DataError(f"{title} file {path} has shape {dims}, expected {(expected_count, *expected_dims)}")
    n = 1
    for d in dims:
        n *= d
    if len(raw) - header != n:
        raise DataError(f"{title} file {path} is truncated or corrupted: {len(raw) - header} data bytes, expected {n}")
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(dims)


def _raw_dir(root: Path, dataset: str = "mnist") -> Path:
    return root / DATASETS[dataset].folder / "raw"


def _have_files(root: Path, dataset: str = "mnist") -> bool:
    raw = _raw_dir(root, dataset)
    return all(
        (raw / name).is_file() or (raw / (name + ".gz")).is_file()
        for images, labels, _ in MNIST_FILES.values()
        for name in (images, labels)
    )


def _download(root: Path, dataset: str = "mnist") -> None:
    import torchvision.datasets

    spec = DATASETS[dataset]
    try:
        for train in (True, False):
            getattr(torchvision.datasets, spec.torchvision_class)(str(root), train=train, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(
            f"{spec.title} not found under {_raw_dir(root, dataset)} and the download failed ({type(exc).__name__}); "
            f"put the four IDX files there, or set data.root / AAE_DATA_DIR to a folder holding {spec.folder}/raw"
        ) from None


def load_mnist(root: str | Path, split: str, download: bool = False,
               dataset: str = "mnist") -> Tuple[torch.Tensor, torch.Tensor]:
    """Images as float32 [N, 784] in [0, 1] and labels as int64 [N], read straight from the IDX files
    of `dataset` (mnist or fashion_mnist)."""
    root, spec = Path(root).expanduser(), DATASETS[dataset]
    if not _have_files(root, dataset):
        if not download:
            raise DataError(
                f"{spec.title} not found under {_raw_dir(root, dataset)} and data.download=false; "
                "put the four IDX files there or set data.root / AAE_DATA_DIR"
            )
        _download(root, dataset)
    images_name, labels_name, count = MNIST_FILES[split]
    raw = _raw_dir(root, dataset)
    images = read_idx(raw / images_name, count, (28, 28), spec.title)
    labels = read_idx(raw / labels_name, count, (), spec.title)
    if int(labels.max()) >= N_CLASSES:
        raise DataError(f"{spec.title} file {raw / labels_name} holds labels outside 0-9")
    return images.reshape(count, 784).float().div_(255.0), labels.long()


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


def split_indices(labels: torch.Tensor, val_size: int, labels_per_class: int, seed: int):
    """Seeded, class-balanced split of the training set into (labeled, unlabeled, validation) indices.

    The validation set takes val_size/10 images of each class where it can, so every split sees
    the digits in the same proportions whatever the seed.
    """
    n = len(labels)
    counts = torch.bincount(labels, minlength=N_CLASSES)
    if val_size >= n:
        raise DataError(f"data.val_size={val_size} leaves no training images (the training set holds {n})")
    g = torch.Generator().manual_seed(seed)
    per_class = [torch.nonzero(labels == c).flatten() for c in range(N_CLASSES)]
    per_class = [idx[torch.randperm(len(idx), generator=g)] for idx in per_class]
    # validation: proportional to class frequency, remainder spread one by one
    share = (counts.double() * val_size / n).floor().long()
    for c in torch.argsort(counts.double() * val_size / n - share, descending=True)[: val_size - int(share.sum())]:
        share[c] += 1
    val = torch.cat([idx[: int(share[c])] for c, idx in enumerate(per_class)])
    rest = [idx[int(share[c]):] for c, idx in enumerate(per_class)]
    smallest = min(len(r) for r in rest)
    if labels_per_class > smallest:
        raise DataError(
            f"data.labels_per_class={labels_per_class} is more than the smallest class holds "
            f"after the validation split ({smallest})"
        )
    labeled = torch.cat([r[:labels_per_class] for r in rest])
    unlabeled = torch.cat([r[labels_per_class:] for r in rest])
    # shuffle so no split is ordered by class
    return tuple(t[torch.randperm(len(t), generator=g)] for t in (labeled, unlabeled, val))


class MNISTDataModule(L.LightningDataModule):
    """MNIST (or Fashion-MNIST: `dataset`) held in memory as tensors.

    Training batches:
      * labels_per_class == 0: (x, y) from every non-validation training image (y for the
        variants that condition on labels; the unsupervised ones ignore it).
      * labels_per_class > 0: {"unlabeled": (x, y=-1), "labeled": (x, y)} through a
        CombinedLoader; the labeled set is cycled, so an epoch is one pass over the unlabeled set.
    Batch sizes are per device: with N devices an optimizer step sees N * batch_size images.
    The test set is only for `test`, never for model selection.
    """

    def __init__(self, root: str = "data", download: bool = True, batch_size: int = 100,
                 labeled_batch_size: int = 100, val_size: int = 10000, labels_per_class: int = 0,
                 split_seed: int = 0, on_device: bool = True, seed: int = 0, dataset: str = "mnist"):
        super().__init__()
        self.root, self.download, self.dataset = root, download, dataset
        self.batch_size, self.labeled_batch_size = batch_size, labeled_batch_size
        self.val_size, self.labels_per_class = val_size, labels_per_class
        self.split_seed, self.on_device = split_seed, on_device
        self.seed = seed  # the run's seed: the training order of every epoch derives from it
        self.labeled: Optional[TensorPairs] = None
        self.unlabeled: Optional[TensorPairs] = None
        self.val: Optional[TensorPairs] = None
        self.test: Optional[TensorPairs] = None
        self._samplers: dict = {}
        self._resume: Optional[dict] = None

    @classmethod
    def from_config(cls, data_cfg, seed: int = 0) -> "MNISTDataModule":
        return cls(**dict(data_cfg), seed=seed)

    def prepare_data(self) -> None:
        root = Path(self.root).expanduser()
        if not _have_files(root, self.dataset):
            if not self.download:
                load_mnist(root, "train", download=False, dataset=self.dataset)  # raises the explanatory error
            _download(root, self.dataset)

    def check_splits(self) -> None:
        """Fail now, with the setting named, if the splits cannot be made (reads only the labels)."""
        count = MNIST_FILES["train"][2]
        labels = read_idx(_raw_dir(Path(self.root).expanduser(), self.dataset) / MNIST_FILES["train"][1], count, (),
                          DATASETS[self.dataset].title)
        split_indices(labels.long(), self.val_size, self.labels_per_class, self.split_seed)

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        if self.on_device and trainer is not None:
            return trainer.strategy.root_device
        return torch.device("cpu")

    def setup(self, stage: Optional[str] = None) -> None:
        device = self._device()
        # "test" needs the validation split too: clustering names its clusters from validation
        # images and Parzen chooses sigma on them, also when a checkpoint is tested on its own
        if stage in (None, "fit", "validate", "test") and self.val is None:
            x, y = load_mnist(self.root, "train", self.download, self.dataset)
            lab, unl, val = split_indices(y, self.val_size, self.labels_per_class, self.split_seed)
            hidden = torch.full_like(y[unl], -1)
            self.labeled = TensorPairs(x[lab], y[lab]).to(device)
            self.unlabeled = TensorPairs(x[unl], hidden if self.labels_per_class else y[unl]).to(device)
            self.val = TensorPairs(x[val], y[val]).to(device)
        if stage in (None, "test", "predict") and self.test is None:
            self.test = TensorPairs(*load_mnist(self.root, "test", self.download, self.dataset)).to(device)

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
