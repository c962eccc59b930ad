"""The one place figures leave the process: a PNG in the run folder, and W&B when attached."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from lightning.pytorch.loggers import WandbLogger
from PIL import Image


MIN_TILE = 28  # pixels: images smaller than this are enlarged (nearest neighbour) in grids


def image_grid(images: np.ndarray, nrow: int, pad: int = 2) -> np.ndarray:
    """Tile [N, H, W] or [N, C, H, W] (C 1 or 3) images in [0, 1] into one uint8 picture with `nrow` images
    per row (torchvision's make_grid, white between the images): H x W for gray, H x W x 3 for colour.
    Images under MIN_TILE pixels a side are enlarged by a whole factor to reach it."""
    import torch
    from torchvision.utils import make_grid

    tiles = torch.as_tensor(np.asarray(images, dtype=np.float32)).clamp(0, 1)
    if tiles.dim() == 3:
        tiles = tiles.unsqueeze(1)
    scale = max(1, -(-MIN_TILE // min(tiles.shape[-2:])))  # small images (8x8 digits) drawn in blocks of pixels
    tiles = tiles.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
    grid = make_grid(tiles, nrow=nrow, padding=pad, pad_value=1.0)  # make_grid repeats one channel to three
    if tiles.shape[1] == 1:
        return (grid[0].numpy() * 255).astype(np.uint8)
    return (grid.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


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
