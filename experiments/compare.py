"""Reconstructions of several trained models side by side, on the same test images.

    python -m experiments.compare plain=runs/.../last.ckpt denoising=runs/.../last.ckpt --out family.png

One row of originals, then one row per model; a model trained with input corruption (noise,
masking, dropout) also gets a row of its corrupted inputs (seeded, as in training) above its
reconstructions of them. The test images come from the first checkpoint's run (its dataset and
data root, or --data-root / $AAE_DATA_DIR).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch

from lightning_aae.errors import EXIT_INPUT, EXIT_STORAGE, fail


def comparison_rows(models: List[Tuple[str, object]], x: torch.Tensor, seed: int = 0) -> List[Tuple[str, np.ndarray]]:
    """(row label, images [n, 28, 28]) for the originals and each model."""
    rows = [("original", x)]
    with torch.no_grad():
        for name, module in models:
            if module.corrupts():
                noisy, recon = module.corrupted_view(x, seed)
                rows += [(f"{name}: input", noisy), (name, recon)]
            else:
                rows.append((name, module.reconstruct(x)))
    return [(label, images.detach().cpu().reshape(-1, 28, 28).numpy()) for label, images in rows]


def draw(rows: List[Tuple[str, np.ndarray]], title: str = ""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows[0][1])
    fig, axes = plt.subplots(len(rows), n, figsize=(0.8 * n + 1.6, 0.8 * len(rows) + 0.4), dpi=100, squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(images[c], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _named(spec: str) -> Tuple[str, str]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"'{spec}' must look like NAME=CHECKPOINT")
    if not Path(path).is_file():
        raise ValueError(f"checkpoint not found: {path}")
    return name, path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.compare", description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="NAME=CHECKPOINT, in the order of the rows")
    p.add_argument("--out", type=Path, required=True, help="the PNG to write")
    p.add_argument("--n", type=int, default=10, help="test images (columns)")
    p.add_argument("--data-root", help="data root (default: $AAE_DATA_DIR, else the first run's data.root)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corrupted inputs shown")
    p.add_argument("--title", default="")
    args = p.parse_args(argv)
    from lightning_aae.data import DataError
    from lightning_aae.evaluate import datamodule_for
    from lightning_aae.storage import StorageError, load_checkpoint, write_figure
    from lightning_aae.variants import load_module

    try:
        named = [_named(s) for s in args.models]
        dm = datamodule_for(load_checkpoint(named[0][1]), args.data_root)
        dm.on_device = False
        dm.setup("test")
        models = [(name, load_module(path)) for name, path in named]
        write_figure(args.out, draw(comparison_rows(models, dm.test.x[: args.n], args.seed), args.title))
    except (DataError, ValueError) as exc:
        return fail(exc, EXIT_INPUT)
    except StorageError as exc:
        return fail(exc, EXIT_STORAGE)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
