"""Per-epoch curves of several runs in one figure, read from their logs.

A run trained without a progress bar (`trainer.enable_progress_bar=false`, as background runs are)
prints one line per epoch (callbacks/summary.py): `epoch N 61.2s key=value ...`. This reads those
lines back, so a comparison of runs can be redrawn from their logs alone:

    python -m lightning_aae.curves ours=ours.log shift=shift.log --metric val/error --percent --out cmp.png

A run resumed into a second log: NAME=first.log,second.log (a later line for an epoch wins).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, List, Sequence

from .data import DataError
from .errors import EXIT_INPUT, EXIT_STORAGE, fail

EPOCH_LINE = re.compile(r"^epoch (\d+) [\d.]+s (.*)$")


def read_curve(logs: Sequence[str | Path], metric: str) -> Dict[int, float]:
    """epoch -> value of `metric` from the epoch lines of these logs, in order."""
    curve: Dict[int, float] = {}
    for log in logs:
        path = Path(log)
        if not path.is_file():
            raise DataError(f"log not found: {path}")
        for line in path.read_text(errors="replace").splitlines():
            match = EPOCH_LINE.match(line.strip())
            if not match:
                continue
            values = dict(kv.split("=", 1) for kv in match.group(2).split() if "=" in kv)
            if metric in values:
                curve[int(match.group(1))] = float(values[metric])
    if not curve:
        raise DataError(f"no epoch line with {metric} in {', '.join(map(str, logs))}")
    return dict(sorted(curve.items()))


def curves_figure(curves: Dict[str, Dict[int, float]], metric: str, percent: bool = False, title: str = ""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = 100.0 if percent else 1.0
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name, curve in curves.items():
        epochs = list(curve)
        values = [v * scale for v in curve.values()]
        best = min(range(len(values)), key=values.__getitem__)
        ax.plot(epochs, values, marker=".", label=f"{name} (lowest {values[best]:.3g} at epoch {epochs[best]})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric + (" (%)" if percent else ""))
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def parse_runs(specs: List[str]) -> Dict[str, List[str]]:
    runs = {}
    for spec in specs:
        name, sep, logs = spec.partition("=")
        if not sep or not name or not logs:
            raise DataError(f"expected NAME=LOG[,LOG...], got {spec!r}")
        runs[name] = logs.split(",")
    return runs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lightning_aae.curves", description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="NAME=LOG[,LOG...], one line per run in this order")
    p.add_argument("--metric", default="val/error")
    p.add_argument("--percent", action="store_true", help="draw the metric x 100 (errors as percentages)")
    p.add_argument("--title", default="")
    p.add_argument("--out", required=True, help="the PNG to write")
    args = p.parse_args(argv)
    try:
        curves = {name: read_curve(logs, args.metric) for name, logs in parse_runs(args.runs).items()}
    except DataError as e:
        return fail(str(e), EXIT_INPUT)
    from .storage import StorageError, write_figure

    try:
        write_figure(args.out, curves_figure(curves, args.metric, args.percent, args.title))
    except StorageError as exc:
        return fail(exc, EXIT_STORAGE)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
