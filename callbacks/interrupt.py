"""Ctrl-C saves a checkpoint before the process exits."""
from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import Callback


class SaveOnInterrupt(Callback):
    """On KeyboardInterrupt, write `<dirpath>/last.ckpt` from the current state, then let Lightning exit."""

    def __init__(self, dirpath: str | Path):
        self.path = Path(dirpath) / "last.ckpt"

    def on_exception(self, trainer, module, exception) -> None:
        if isinstance(exception, KeyboardInterrupt) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.path)
            if trainer.is_global_zero:
                print(f"\ninterrupted: saved {self.path}; resume with ckpt_path={self.path}", flush=True)
