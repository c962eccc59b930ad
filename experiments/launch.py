"""Run the seeds of a results-table row and record each finished run in the registry.

    python -m experiments.launch semi_supervised_100 --seeds 100,101,102 --jobs 2 num_threads=1
    python -m experiments.launch parzen --seeds 0,1,2,3 --slurm --partition gpu trainer.accelerator=gpu

One seed is `python train.py --config configs/<row>.yaml seed=S` plus the runtime keys given here
(docs/protocol.md): a key that changes what is trained is refused, since another recipe is another row.
Runs go through submitit: on this machine its local executor, `--jobs` of them side by side; with `--slurm`
a SLURM job array (`--jobs` at a time). Each run is named `<row>-s<seed>`, its W&B group is the row, and
when it ends well its lines are appended to the registry (under a file lock: runs that end together all
land). Job logs are under `<output_dir>/launch/`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from lightning_aae.errors import EXIT_INPUT, fail

from .registry import REGISTRY, ROOT, RUNTIME_KEYS, record_run


def seed_args(row: str, seed: int, overrides: List[str]) -> List[str]:
    """train.py's arguments for one seed of the row (the run's name and W&B group are the row's)."""
    named = [o for o in overrides if not o.startswith(("logger.name=", "logger.group="))]
    return ["--config", f"configs/{row}.yaml", f"seed={seed}", *named, f"logger.name={row}-s{seed}",
            f"logger.group={row}"]


def run_seed(root: str, row: str, seed: int, overrides: List[str], registry: Optional[str]) -> Dict[str, Any]:
    """One seed, in the job's process: train, then record. Returns what happened."""
    from lightning_aae.cli import main as train_main
    from lightning_aae.config import load_config
    from lightning_aae.storage import runs_named

    os.chdir(root)  # configs/<row>.yaml and the registry are the checkout's
    args = seed_args(row, seed, overrides)
    sys.argv = ["train.py", *args]  # the run records the command it was given, as train.py would
    code = train_main(args)
    out: Dict[str, Any] = {"row": row, "seed": seed, "exit_code": code}
    if code != 0:
        return out
    cfg = load_config(args[1], args[2:])
    finished = [d for d in runs_named(Path(cfg.output_dir) / cfg.model.variant, f"{row}-s{seed}")
                if (d / "result.json").is_file()]
    run_dir = max(finished, key=lambda d: (d / "result.json").stat().st_mtime)
    out["run_dir"] = str(run_dir)
    if registry:
        lines = record_run(run_dir, Path(registry), root=Path(root))
        out.update(stage=lines[0]["stage"], metric=lines[0]["metric"], value=lines[0]["value"],
                   value_last=lines[0].get("value_last"))
    return out


def check_runtime_keys(overrides: List[str]) -> None:
    for o in overrides:
        if "=" not in o or not o.startswith(RUNTIME_KEYS) or o.startswith(("seed=", "ckpt_path=")):
            raise ValueError(f"'{o}' is not a runtime key ({', '.join(k.rstrip('=') for k in RUNTIME_KEYS)}; "
                             "seeds come from --seeds): a different recipe is a different row, a config of its own")


def _absolute(overrides: List[str]) -> List[str]:
    """Paths given relative to where the launcher started, made absolute: the jobs run in the checkout."""
    out = []
    for o in overrides:
        key, value = o.split("=", 1)
        if key in ("data.root", "output_dir", "logger.save_dir") and value and not os.path.isabs(value):
            o = f"{key}={Path(value).resolve()}"
        out.append(o)
    if os.environ.get("AAE_DATA_DIR"):
        os.environ["AAE_DATA_DIR"] = str(Path(os.environ["AAE_DATA_DIR"]).resolve())
    return out


def _executor(args, log_dir: Path):
    import submitit

    if args.slurm:
        ex = submitit.AutoExecutor(folder=log_dir, cluster="slurm")
        ex.update_parameters(timeout_min=args.timeout_min, slurm_array_parallelism=args.jobs,
                             **({"slurm_partition": args.partition} if args.partition else {}),
                             **({"gpus_per_node": args.gpus} if args.gpus else {}))
    else:
        ex = submitit.LocalExecutor(folder=log_dir)
        ex.update_parameters(timeout_min=args.timeout_min)
    return ex


def launch(args) -> List[Dict[str, Any]]:
    root = Path(args.root).resolve()
    if not (root / "configs" / f"{args.row}.yaml").is_file():
        raise ValueError(f"no config for row '{args.row}': {root / 'configs' / (args.row + '.yaml')} not found")
    check_runtime_keys(args.overrides)
    args.overrides = _absolute(args.overrides)
    registry = str(Path(args.registry).resolve()) if args.registry else None
    # the jobs import this code, wherever they start and whether or not it is installed
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    output_dir = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("output_dir=")), "runs")
    ex = _executor(args, root / output_dir / "launch")  # an absolute output_dir stays itself
    calls = [(str(root), args.row, s, list(args.overrides), registry) for s in args.seeds]
    if args.slurm:  # SLURM keeps --jobs of the array running
        jobs = ex.map_array(run_seed, *zip(*calls))
        return [job.result() for job in jobs]
    waiting, running, done = list(calls), [], []
    while waiting or running:  # the local executor starts what it is given at once: hand it --jobs at a time
        while waiting and len(running) < args.jobs:
            call = waiting.pop(0)
            running.append(ex.submit(run_seed, *call))
            print(f"started {args.row} seed {call[2]}: log {running[-1].paths.stdout}", flush=True)
        for job in [j for j in running if j.done()]:
            running.remove(job)
            done.append(job.result())
            print(_said(done[-1]), flush=True)
        time.sleep(args.poll)
    return done


def _said(result: Dict[str, Any]) -> str:
    if result["exit_code"] != 0:
        return f"{result['row']} seed {result['seed']}: train.py exited with {result['exit_code']}; not recorded"
    if "value" not in result:
        return f"{result['row']} seed {result['seed']}: finished in {result['run_dir']} (not recorded)"
    last = f", last epoch {result['value_last']}" if result.get("value_last") is not None else ""
    return f"{result['row']} seed {result['seed']} ({result['stage']}): {result['metric']} = {result['value']}{last}"


def _seeds(text: str) -> List[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 100,101,102, got {text!r}") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.launch", description=__doc__.splitlines()[0],
                                epilog="Runtime keys (key=value) go to every seed, e.g. num_threads=1 output_dir=runs.")
    p.add_argument("row", help="the row's config name: configs/<row>.yaml")
    p.add_argument("--seeds", type=_seeds, required=True, metavar="S[,S...]", help="e.g. 100,101,102")
    p.add_argument("--jobs", type=int, default=1, help="seeds trained at once (default 1)")
    p.add_argument("--registry", default=str(REGISTRY), help="where finished runs are recorded ('' for nowhere)")
    p.add_argument("--root", default=str(ROOT), help="the checkout to run in (default: this one)")
    p.add_argument("--slurm", action="store_true", help="submit a SLURM job array instead of running here")
    p.add_argument("--partition", help="SLURM partition")
    p.add_argument("--gpus", type=int, default=0, help="GPUs per SLURM job")
    p.add_argument("--timeout-min", type=int, default=24 * 60, help="each job's time limit in minutes")
    p.add_argument("--poll", type=float, default=5.0, help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*")
    args = p.parse_intermixed_args(argv)  # overrides may come before or after the options
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    try:
        done = launch(args)
    except ValueError as exc:
        return fail(exc, EXIT_INPUT)
    if args.slurm:
        for result in done:
            print(_said(result))
    failed = [r for r in done if r["exit_code"] != 0]
    return failed[0]["exit_code"] if failed else 0


if __name__ == "__main__":
    sys.exit(main())
