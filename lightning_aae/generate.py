"""Draw images from a trained model, or encode a folder of images.

    python -m lightning_aae.generate CKPT --n 64 --out samples.png
    python -m lightning_aae.generate CKPT --n 64 --label 3 --out threes.png     # label-aware variants
    python -m lightning_aae.generate CKPT --encode digits/ --out codes.csv       # PNG files of the model's size
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import EXIT_INPUT, fail


def load_digits(folder: Path, shape=(1, 28, 28)):
    """The PNG files of `folder` as flat images of `shape` [C, H, W] (gray or RGB as C says)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise ValueError(f"no .png files in {folder}")
    c, h, w = shape
    images = []
    for f in files:
        img = Image.open(f).convert("L" if c == 1 else "RGB")
        if img.size != (w, h):
            raise ValueError(f"{f} is {img.size[0]}x{img.size[1]}; the model's images are {w}x{h}")
        images.append(np.asarray(img, dtype=np.float32).reshape(h, w, c).transpose(2, 0, 1) / 255.0)
    return files, torch.from_numpy(np.stack(images)).reshape(len(files), -1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lightning_aae.generate", description=__doc__.splitlines()[0])
    p.add_argument("ckpt")
    p.add_argument("--n", type=int, default=64, help="images to draw")
    p.add_argument("--label", type=int, help="draw only this digit (or cluster), for label-aware variants")
    p.add_argument("--encode", type=Path, help="folder of PNG images (the model's size) to encode instead")
    p.add_argument("--out", type=Path, required=True, help="PNG grid (sampling) or CSV (encoding)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from callbacks.publish import image_grid
    from .variants import load_module

    try:
        if not Path(args.ckpt).is_file():
            raise ValueError(f"checkpoint not found: {args.ckpt}")
        module = load_module(args.ckpt)
        with torch.no_grad():
            if args.encode:
                files, x = load_digits(args.encode, module.image_shape)
                z = module.encode(x)
                probs = module.classify(x) if module.categories is not None else None
                with open(args.out, "w", newline="") as f:
                    w = csv.writer(f)
                    w.writerow(["file", *[f"z{i}" for i in range(z.shape[1])]] + (["predicted"] if probs is not None else []))
                    for i, path in enumerate(files):
                        row = [path.name, *[f"{v:.6g}" for v in z[i].tolist()]]
                        w.writerow(row + ([int(probs[i].argmax())] if probs is not None else []))
                print(f"wrote {len(files)} codes to {args.out}")
                return 0
            if args.n < 1:
                raise ValueError(f"--n must be positive, got {args.n}")
            labels = None
            if args.label is not None:
                if not module.label_aware:
                    raise ValueError(f"--label needs a label-aware variant; this checkpoint is '{module.variant}'")
                if not 0 <= args.label < module.n_categories:
                    raise ValueError(f"--label must be in 0..{module.n_categories - 1}")
                labels = torch.full((args.n,), args.label)
            g = torch.Generator().manual_seed(args.seed)
            images = module.sample(args.n, labels=labels, generator=g).reshape(-1, *module.image_shape).numpy()
        Image.fromarray(image_grid(images, int(math.ceil(math.sqrt(args.n))))).save(args.out)
        print(f"wrote {args.n} samples to {args.out}")
    except ValueError as exc:
        return fail(exc, EXIT_INPUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
