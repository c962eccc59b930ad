"""Command line: `python train.py --config FILE [key.sub=value ...]`."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from .config import ConfigError, load_config
from .data import DataError
from .schedule import DivergenceError
from .training import train

USAGE = "python train.py --config configs/aae.yaml [key.sub=value ...]"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="train.py", usage=USAGE,
        description="Train an adversarial autoencoder variant on MNIST. Overrides are OmegaConf dotlist "
                    "entries, e.g. trainer.devices=2 model.latent_dim=8 optim.lr=1e-4.")
    parser.add_argument("--config", "-c", help="YAML file under configs/ (default: the built-in defaults)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value entries")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        train(cfg)
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DivergenceError as exc:
        print(f"error: training diverged: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
