"""Write scikit-learn's 8x8 digits (1,797 images, installed with scikit-learn, no download) as the .npz
that `data.dataset=array` reads: the data of configs/semi_supervised_digits.yaml.

    python -m experiments.digits data/digits.npz
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from lightning_aae.errors import EXIT_STORAGE, fail
from lightning_aae.storage import StorageError, write_atomic


def digits_arrays() -> dict:
    """images: float32 [1797, 8, 8] in [0, 1] (the 0-16 ink counts / 16); labels: int64 [1797]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return {"images": (digits.images / 16.0).astype(np.float32), "labels": digits.target.astype(np.int64)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.digits", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="the .npz file to write")
    args = p.parse_args(argv)
    arrays = digits_arrays()
    try:
        write_atomic(args.out, lambda f: np.savez(f, **arrays))
    except StorageError as exc:
        return fail(exc, EXIT_STORAGE)
    print(f"wrote {len(arrays['images'])} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
