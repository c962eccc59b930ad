"""Where images come from (`data.dataset`): each reader gives float32 images in [0, 1] flattened from
[C, H, W], labels where the data has them, and a test set where the data brings one.

    mnist, fashion_mnist   IDX files under <root>/MNIST/raw or <root>/FashionMNIST/raw (torchvision's layout)
    svhn                   train_32x32.mat, test_32x32.mat (and extra_32x32.mat) under <root>/SVHN
    array                  an .npz file (data.path): images, and optionally labels, test_images, test_labels
    folder                 a folder (data.path): one subfolder of PNG/JPEG images per class, or images only

Every problem with a file is a DataError whose message is one line naming the file and what is wrong.
"""
from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MNIST_SHAPE = (1, 28, 28)  # also the shape of checkpoints written before the shape was stored


class DataError(RuntimeError):
    """The dataset cannot be found or read; the message says which file and what to do."""


@dataclass
class Images:
    x: torch.Tensor  # float32 [N, C*H*W] in [0, 1]
    y: Optional[torch.Tensor]  # int64 [N], or None where the data has no labels


@dataclass
class Source:
    """What a reader gives: the training images, the test images where the data has its own, the
    image shape [C, H, W], the class names (empty: unlabeled), and what to call the data in messages.
    The DataModule sets train (and test) to None once its splits hold the images."""

    train: Optional[Images]
    test: Optional[Images]
    shape: Tuple[int, int, int]
    classes: Tuple[str, ...]
    title: str


@dataclass(frozen=True)
class IdxSpec:
    title: str  # in messages
    folder: str  # <root>/<folder>/raw holds the IDX files (torchvision's layout)
    torchvision_class: str  # downloads them
    classes: Tuple[str, ...]


# the IDX data sets: the same four file names, counts and 28x28 images
IDX_DATASETS = {
    "mnist": IdxSpec("MNIST", "MNIST", "MNIST", tuple(str(d) for d in range(10))),
    "fashion_mnist": IdxSpec("Fashion-MNIST", "FashionMNIST", "FashionMNIST",
                             ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                              "Sneaker", "Bag", "Ankle boot")),
}


# ---- IDX (MNIST, Fashion-MNIST) ------------------------------------------------------------------
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
    if len(raw) - header != int(np.prod(dims)):
        raise DataError(f"{title} file {path} is truncated or corrupted: {len(raw) - header} data bytes, "
                        f"expected {int(np.prod(dims))}")
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(dims)


def idx_raw_dir(root: Path, dataset: str = "mnist") -> Path:
    return root / IDX_DATASETS[dataset].folder / "raw"


def have_idx_files(root: Path, dataset: str = "mnist") -> bool:
    raw = idx_raw_dir(root, dataset)
    return all((raw / name).is_file() or (raw / (name + ".gz")).is_file()
               for images, labels, _ in MNIST_FILES.values() for name in (images, labels))


def download_idx(root: Path, dataset: str = "mnist") -> None:
    import torchvision.datasets

    spec = IDX_DATASETS[dataset]
    try:
        for train in (True, False):
            getattr(torchvision.datasets, spec.torchvision_class)(str(root), train=train, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(
            f"{spec.title} not found under {idx_raw_dir(root, dataset)} and the download failed ({type(exc).__name__}); "
            f"put the four IDX files there, or set data.root / AAE_DATA_DIR to a folder holding {spec.folder}/raw"
        ) from None


def load_mnist(root: str | Path, split: str, download: bool = False,
               dataset: str = "mnist") -> Tuple[torch.Tensor, torch.Tensor]:
    """Images as float32 [N, 784] in [0, 1] and labels as int64 [N], read straight from the IDX files
    of `dataset` (mnist or fashion_mnist)."""
    root, spec = Path(root).expanduser(), IDX_DATASETS[dataset]
    if not have_idx_files(root, dataset):
        if not download:
            raise DataError(f"{spec.title} not found under {idx_raw_dir(root, dataset)} and data.download=false; "
                            "put the four IDX files there or set data.root / AAE_DATA_DIR")
        download_idx(root, dataset)
    images_name, labels_name, count = MNIST_FILES[split]
    raw = idx_raw_dir(root, dataset)
    images = read_idx(raw / images_name, count, (28, 28), spec.title)
    labels = read_idx(raw / labels_name, count, (), spec.title)
    if int(labels.max()) >= len(spec.classes):
        raise DataError(f"{spec.title} file {raw / labels_name} holds labels outside 0-9")
    return images.reshape(count, 784).float().div_(255.0), labels.long()


def _read_idx_dataset(data, dataset: str) -> Source:
    spec = IDX_DATASETS[dataset]
    train = Images(*load_mnist(data.root, "train", data.download, dataset))
    test = Images(*load_mnist(data.root, "test", data.download, dataset))
    return Source(train, test, MNIST_SHAPE, spec.classes, spec.title)


# ---- arrays shared by the readers below --------------------------------------------------------
def as_images(array: np.ndarray, where: str, channels_last: bool = True) -> Tuple[torch.Tensor, Tuple[int, int, int]]:
    """N x H x W or N x H x W x C (channels_last) uint8, or floats in [0, 1], as float32 [N, C*H*W] and
    (C, H, W)."""
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[3 if channels_last else 1] not in (1, 3)):
        raise DataError(f"{where} has shape {tuple(array.shape)}; expected N x H x W or N x H x W x C with C 1 or 3")
    if len(array) == 0:
        raise DataError(f"{where} holds no images")
    if array.dtype == np.uint8:
        x = torch.from_numpy(np.ascontiguousarray(array)).float().div_(255.0)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise DataError(f"{where} holds floats outside [0, 1] (min {array.min():.3g}, max {array.max():.3g}); "
                            "scale them to [0, 1] or store uint8")
        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    else:
        raise DataError(f"{where} has dtype {array.dtype}; expected uint8 or floats in [0, 1]")
    if x.dim() == 3:
        x = x.unsqueeze(3 if channels_last else 1)
    if channels_last:
        x = x.permute(0, 3, 1, 2)
    n, c, h, w = x.shape
    return x.reshape(n, -1).contiguous(), (c, h, w)


def as_labels(array: np.ndarray, count: int, where: str) -> torch.Tensor:
    """Integer class indices >= 0, one per image."""
    array = np.asarray(array)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_)):
        raise DataError(f"{where} must be one integer class index per image; it is {array.dtype} of shape {array.shape}")
    if len(array) != count:
        raise DataError(f"{where} holds {len(array)} labels for {count} images")
    if len(array) and array.min() < 0:
        raise DataError(f"{where} holds negative labels (smallest {array.min()}); classes are 0, 1, 2, ...")
    return torch.from_numpy(array.astype(np.int64))


def _class_names(*labels: Optional[torch.Tensor]) -> Tuple[str, ...]:
    present = [y for y in labels if y is not None and len(y)]
    return tuple(str(c) for c in range(max(int(y.max()) for y in present) + 1)) if present else ()


# ---- SVHN ---------------------------------------------------------------------------------------
def _read_mat(path: Path) -> Tuple[torch.Tensor, torch.Tensor]:
    from scipy.io import loadmat

    if not path.is_file():
        raise DataError(f"SVHN file {path} is missing (torchvision's layout: <data.root>/SVHN/{path.name})")
    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises several types on a bad file
        raise DataError(f"SVHN file {path} cannot be read as a .mat file ({type(exc).__name__})") from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"SVHN file {path} has no X and y arrays")
    X = np.asarray(mat["X"])
    if X.ndim != 4 or X.shape[:3] != (32, 32, 3):
        raise DataError(f"SVHN file {path} holds X of shape {X.shape}; expected 32 x 32 x 3 x N")
    x, _ = as_images(np.transpose(X, (3, 0, 1, 2)), f"SVHN file {path}")
    y = as_labels(np.asarray(mat["y"]).reshape(-1), len(x), f"SVHN file {path}")
    return x, y % 10  # SVHN writes the digit 0 as 10


def _read_svhn(data, dataset: str) -> Source:
    folder = Path(data.root).expanduser() / "SVHN"
    names = ["train", "test"] + (["extra"] if data.svhn_extra else [])
    if data.download and not all((folder / SVHN_FILES[n]).is_file() for n in names):
        _download_svhn(folder, names)
    train, test = Images(*_read_mat(folder / SVHN_FILES["train"])), Images(*_read_mat(folder / SVHN_FILES["test"]))
    if data.svhn_extra:
        extra = _read_mat(folder / SVHN_FILES["extra"])
        train = Images(torch.cat([train.x, extra[0]]), torch.cat([train.y, extra[1]]))
    return Source(train, test, (3, 32, 32), tuple(str(d) for d in range(10)), "SVHN")


def _download_svhn(folder: Path, names) -> None:
    import torchvision.datasets

    try:
        for name in names:
            torchvision.datasets.SVHN(str(folder), split=name, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(f"SVHN not found under {folder} and the download failed ({type(exc).__name__}); put "
                        f"{', '.join(SVHN_FILES[n] for n in names)} there or set data.download=false") from None


# ---- an .npz array file -------------------------------------------------------------------------
def _read_array(data, dataset: str) -> Source:
    path = _given_path(data, "array", "an .npz file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"array file {path} cannot be read as .npz ({type(exc).__name__}: "
                        f"{(str(exc).splitlines() or [''])[0][:80]})") from None
    if "images" not in arrays:
        raise DataError(f"array file {path} has no 'images' array (it holds: {', '.join(arrays) or 'nothing'})")
    x, shape = as_images(arrays["images"], f"array file {path}: images")
    y = as_labels(arrays["labels"], len(x), f"array file {path}: labels") if "labels" in arrays else None
    test = None
    if "test_images" in arrays:
        tx, tshape = as_images(arrays["test_images"], f"array file {path}: test_images")
        if tshape != shape:
            raise DataError(f"array file {path}: test_images are {tshape} (C, H, W), images {shape}")
        if (y is None) != ("test_labels" not in arrays):
            raise DataError(f"array file {path}: labels and test_labels must both be given or both be left out")
        ty = as_labels(arrays["test_labels"], len(tx), f"array file {path}: test_labels") if y is not None else None
        test = Images(tx, ty)
    elif "test_labels" in arrays:
        raise DataError(f"array file {path} has test_labels but no test_images")
    return Source(Images(x, y), test, shape, _class_names(y, test.y if test else None), f"array file {path}")


def _given_path(data, dataset: str, what: str) -> Path:
    if not data.path:
        raise DataError(f"data.dataset={dataset} reads {what}: set data.path")
    path = Path(data.path).expanduser()
    if not path.exists():
        raise DataError(f"data.path {path} does not exist")
    return path


# ---- a folder of images -------------------------------------------------------------------------
def _read_folder(data, dataset: str) -> Source:
    """An ImageFolder tree (one subfolder per class, named as the class) or a flat folder of images
    (no labels). Grayscale where every image is; otherwise every image as RGB."""
    from torchvision.datasets.folder import find_classes, make_dataset

    root = _given_path(data, "folder", "a folder of images")
    if not root.is_dir():
        raise DataError(f"data.path {root} is not a folder")
    subfolders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if subfolders:
        classes, index = find_classes(str(root))
        try:
            items = make_dataset(str(root), index, extensions=IMAGE_SUFFIXES)
        except FileNotFoundError:  # a class folder without images
            empty = [c for c in classes if not any(_is_image(p) for p in (root / c).iterdir())]
            raise DataError(f"folder {root / empty[0]} holds no PNG or JPEG images") from None
        files, labels = [Path(p) for p, _ in items], torch.tensor([c for _, c in items], dtype=torch.long)
    else:
        files, labels, classes = sorted(p for p in root.iterdir() if _is_image(p)), None, []
    if not files:
        raise DataError(f"folder {root} holds no PNG or JPEG images")
    x, shape = _load_image_files(files, data.image_size)
    return Source(Images(x, labels), None, shape, tuple(classes), f"folder {root}")


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _load_image_files(files, size: Optional[int]) -> Tuple[torch.Tensor, Tuple[int, int, int]]:
    from PIL import Image, UnidentifiedImageError

    pictures = []
    for f in files:
        try:
            with Image.open(f) as img:
                img.load()
                pictures.append(img.copy())
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"image file {f} cannot be read ({type(exc).__name__})") from None
    mode = "L" if all(p.mode in ("L", "1", "I;16", "I") for p in pictures) else "RGB"
    arrays = []
    for f, p in zip(files, pictures):
        p = p.convert(mode)
        if size:
            p = p.resize((size, size), Image.Resampling.BILINEAR)
        elif p.size != pictures[0].size:
            raise DataError(f"image file {f} is {p.size[0]}x{p.size[1]} but {files[0]} is "
                            f"{pictures[0].size[0]}x{pictures[0].size[1]}; set data.image_size to resize them all")
        arrays.append(np.asarray(p, dtype=np.uint8))
    return as_images(np.stack(arrays), f"folder {Path(files[0]).parent}")


READERS: Dict[str, Callable[..., Source]] = {
    "mnist": _read_idx_dataset,
    "fashion_mnist": _read_idx_dataset,
    "svhn": _read_svhn,
    "array": _read_array,
    "folder": _read_folder,
}


def read_source(data) -> Source:
    """The images `data` (the `data` config section) names, checked."""
    return READERS[data.dataset](data, data.dataset)
