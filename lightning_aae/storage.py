"""Files the project writes and reads back: atomic writes, a writability check, and checkpoint
loading that never runs code from the file.

Every checkpoint, run record and registry line is written to a temporary file in the same folder
and renamed over the target, so a full disk or a kill mid-write leaves the previous file whole
and no partial file where `ckpt_path=last` or a reader would find it.
"""
from __future__ import annotations

import errno
import glob
import io
import os
import pickle
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class StorageError(RuntimeError):
    """A write failed (no space, no permission, read-only); the message names the path and the reason."""


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file and why."""


def _reason(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, "") or type(exc).__name__


def write_atomic(path: str | os.PathLike, write: Callable[[Any], None]) -> None:
    """Run `write(file)` on a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {_reason(exc)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode()))


def write_figure(path: str | os.PathLike, fig) -> None:
    """A matplotlib figure as a PNG file, written atomically; the figure is closed."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    write_atomic(path, lambda f: f.write(buf.getvalue()))


def append_line_atomic(path: str | os.PathLike, line: str | list) -> None:
    """Append one line (or several, all or none) by rewriting the file atomically: a failure leaves the
    earlier lines as they were."""
    lines = [line] if isinstance(line, str) else list(line)
    new = b"".join(text.rstrip("\n").encode() + b"\n" for text in lines)
    with _locked(path):  # writers in other processes wait: none reads the file while another renames over it
        old = Path(path).read_bytes() if Path(path).is_file() else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        write_atomic(path, lambda f: f.write(old + new))


@contextmanager
def _locked(path: str | os.PathLike):
    """An advisory lock (flock) on the folder holding `path`, held for the block: no lock file is left."""
    import fcntl

    folder = Path(path).absolute().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {_reason(exc)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def check_writable(folder: str | os.PathLike, what: str) -> None:
    """Fail now, naming the folder and the reason, if files cannot be created in it. Creates nothing:
    it tries a file in the folder, or in the nearest existing folder above it, and removes it."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StorageError(f"{what} {folder} is not writable: {existing} is a file, not a folder")
    probe = existing / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StorageError(f"{what} {folder} is not writable: {_reason(exc)}") from None


# torch names the object it refused: "Unsupported global: GLOBAL x.y" or "unsupported GLOBAL x.y whose module ..."
_UNSAFE = re.compile(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)")


def _recorded_name(folder: Path) -> Optional[str]:
    """The logger.name in a run folder's config.yaml; None when there is none to read."""
    from omegaconf import OmegaConf
    try:
        name = OmegaConf.select(OmegaConf.load(folder / "config.yaml"), "logger.name")
    except Exception:  # no config.yaml, or not one train.py wrote: fall back to the folder's name
        return None
    return str(name) if name is not None else None


def runs_named(base: str | os.PathLike, name: str) -> List[Path]:
    """The run folders under `base` that train.py made for logger.name `name`: `name` itself, or `name-K`
    when the name was taken (never `name2` or `name-s0` of another run whose name starts the same way). A
    `name-K` folder whose config.yaml records another logger.name (a run named `name-2` on purpose) is not one."""
    def made_for(folder: Path) -> bool:
        if folder.name == name:
            return True
        if not (folder.name.startswith(name + "-") and folder.name[len(name) + 1:].isdigit()):
            return False
        recorded = _recorded_name(folder)
        return recorded is None or recorded == name
    return sorted(p for p in Path(base).glob(glob.escape(name) + "*") if made_for(p))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Dict[str, Any]:
    """torch.load with weights_only=True: tensors, numbers, strings and containers, nothing that runs.

    Everything a lightning-aae checkpoint holds is of those types (tested for every variant), so
    no extra types are allowed; a file holding anything else is refused without being executed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _UNSAFE.search(str(exc))
        if found is None:  # not an unsafe object: not a pickle at all, or a damaged one
            raise CheckpointError(f"checkpoint {path} is not readable (damaged, or not a checkpoint)") from None
        raise CheckpointError(f"refusing checkpoint {path}: it holds '{found.group(1)}', which a lightning-aae "
                              "checkpoint never does (loading it could run code)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"checkpoint {path} is not readable ({first[:120]})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"checkpoint {path} is not a lightning-aae checkpoint (no state_dict)")
    return ckpt


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with atomic saves and weights-only loads (resume included)."""

    def save_checkpoint(self, checkpoint: Dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        # serialised in memory first: torch's zip writer reports a full disk as a RuntimeError of its own
        # ("unexpected pos"), the write of the bytes as the OSError (ENOSPC) the storage error names
        def write(f) -> None:
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            f.write(buffer.getbuffer())

        write_atomic(path, write)

    def load_checkpoint(self, path, map_location: Optional[Any] = "cpu", weights_only: Optional[bool] = None):
        return load_checkpoint(path, map_location)
