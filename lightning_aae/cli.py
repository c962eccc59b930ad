"""Command line: `python train.py --config FILE [key.sub=value ...]`."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from callbacks.preemption import Preempted

from .config import ConfigError, load_config
from .data import DataError
from .results import command_line
from .schedule import DivergenceError
from .storage import CheckpointError, StorageError
from .training import train

# exit codes (README, "Faults"): 2 bad input, 3 diverged, 4 a write failed, 128 + N stopped by signal N
EXIT_INPUT, EXIT_DIVERGED, EXIT_STORAGE = 2, 3, 4

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
    except (ConfigError, DataError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except DivergenceError as exc:
        print(f"error: training diverged: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except StorageError as exc:
        print(f"error: {exc}; earlier checkpoints are as they were", file=sys.stderr)
        return EXIT_STORAGE
    except Preempted as stop:
        if _rank_zero():
            resume = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("ckpt_path=")]
            print(f"{stop}; resume with: {command_line(['train.py', *resume, f'ckpt_path={stop.checkpoint}'])}",
                  file=sys.stderr, flush=True)
        return stop.exit_code
    return 0


def _rank_zero() -> bool:
    import os

    return os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) == "0"


if __name__ == "__main__":
    sys.exit(main())
