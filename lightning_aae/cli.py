"""Command line: `python train.py --config FILE [key.sub=value ...]`."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from callbacks.preemption import Preempted
from lightning.fabric.utilities.rank_zero import rank_zero_only

from .config import ConfigError, load_config
from .data import DataError
from .errors import EXIT_DISTRIBUTED, EXIT_DIVERGED, EXIT_INPUT, EXIT_STORAGE, fail
from .provenance import command_line
from .schedule import DivergenceError
from .storage import CheckpointError, StorageError
from .training import DistributedFailure, train

USAGE = "python train.py --config configs/aae.yaml [key.sub=value ...]"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="train.py", usage=USAGE,
        description="Train an adversarial autoencoder variant on MNIST, SVHN or your own images (data.dataset). Overrides are OmegaConf dotlist "
                    "entries, e.g. trainer.devices=2 model.latent_dim=8 optim.lr=1e-4.")
    parser.add_argument("--config", "-c", help="YAML file under configs/ (default: the built-in defaults)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value entries")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        train(cfg)
    except (ConfigError, DataError, CheckpointError) as exc:
        return fail(exc, EXIT_INPUT)
    except DivergenceError as exc:
        return fail(f"training diverged: {exc}", EXIT_DIVERGED)
    except StorageError as exc:
        return fail(f"{exc}; earlier checkpoints are as they were", EXIT_STORAGE)
    except DistributedFailure as failure:
        return _report_distributed(failure, argv)
    except Preempted as stop:
        if rank_zero_only.rank == 0:  # Lightning's own answer: RANK, SLURM_PROCID, LOCAL_RANK, ...
            print(f"{stop}; resume with: {command_line(['train.py', *_resume_args(argv), f'ckpt_path={stop.checkpoint}'])}",
                  file=sys.stderr, flush=True)
        return stop.exit_code
    return 0


def _resume_args(argv: Optional[List[str]]) -> List[str]:
    return [a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("ckpt_path=")]


def _report_distributed(failure: DistributedFailure, argv: Optional[List[str]]) -> int:
    """Each process writes its traceback to error-rank<R>.log in the run folder; rank 0 says in one line
    what failed, where the last checkpoint is and how to resume."""
    import traceback

    log = failure.run_dir / f"error-rank{failure.rank}.log"
    try:
        log.write_text("".join(traceback.format_exception(failure.cause)))
    except OSError:
        log = None
    if failure.rank != 0:
        return EXIT_DISTRIBUTED
    last = failure.run_dir / "checkpoints" / "last.ckpt"
    go_on = (f"the last checkpoint is {last}; resume with: "
             f"{command_line(['train.py', *_resume_args(argv), f'ckpt_path={last}'])}") if last.is_file() else \
        "no epoch was checkpointed; run the command again"
    where = f" (traceback in {log})" if log else ""
    return fail(f"another process of this multi-process run failed or stopped answering: {failure}{where}; {go_on}",
                EXIT_DISTRIBUTED)


if __name__ == "__main__":
    sys.exit(main())
