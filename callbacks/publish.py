"""The one place figures leave the process: a PNG in the run folder, and W&B when attached."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from lightning.pytorch.loggers import WandbLogger
from PIL import Image


def image_grid(images: np.ndarray, nrow: int, pad: int = 2) -> np.ndarray:
    """Tile [N, H, W] images in [0, 1] into one uint8 picture with `nrow` images per row (torchvision's
    make_grid, white between the images)."""
    import torch
    from torchvision.utils import make_grid

    tiles = torch.as_tensor(np.asarray(images, dtype=np.float32)).clamp(0, 1).unsqueeze(1)
    grid = make_grid(tiles, nrow=nrow, padding=pad, pad_value=1.0)[0]  # make_grid repeats one channel to three
    return (grid.numpy() * 255).astype(np.uint8)


def figure_to_array(fig) -> np.ndarray:
    fig.canvas.draw()
    array = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    import matplotlib.pyplot as plt

    plt.close(fig)
    return array


def publish_image(trainer, key: str, image: np.ndarray, out_dir: Optional[Path], caption: str = "") -> Optional[Path]:
    """Save `image` (uint8, HxW or HxWx3) as <out_dir>/<key>.png and send it to every W&B logger.

    The PNG of the latest epoch replaces the previous one; W&B keeps the history per step.
    """
    path = None
    if out_dir is not None:
        from lightning_aae.storage import write_atomic

        path = Path(out_dir) / (key.replace("/", "_") + ".png")
        # atomic like every file a run writes: a full disk leaves the previous PNG and one line (StorageError)
        write_atomic(path, lambda f: Image.fromarray(image).save(f, format="PNG"))
    for logger in getattr(trainer, "loggers", []):
        if isinstance(logger, WandbLogger):
            extra = {"caption": [caption]} if caption else {}
            logger.log_image(key=key, images=[image], step=trainer.global_step, **extra)
    return path


def publish_wandb(trainer, items: dict) -> None:
    """Log W&B-only objects (tables, plots) to every W&B logger. Values are functions of the wandb
    module, called only when a W&B logger is attached: without one, wandb is never imported."""
    loggers = [lg for lg in getattr(trainer, "loggers", []) if isinstance(lg, WandbLogger)]
    if not loggers:
        return
    import wandb

    for logger in loggers:
        logger.experiment.log({key: make(wandb) for key, make in items.items()})
