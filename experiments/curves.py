"""Per-epoch curves of several runs in one figure, and their means over epoch windows.

    python -m experiments.curves ours=runs/semi_supervised/a shift=runs/semi_supervised/b --metric val/error --percent --out cmp.png
    python -m experiments.curves a=runs/clustering/a b=docs/results.jsonl#b --metric val/cluster_error --percent --windows 60-79,138-147

A source is a run folder (its CSVLogger files csv/version_N/metrics.csv, which train() writes as the run goes, or the
validation curve of the checkpoint's metric kept in its result.json, which holds every part of a resumed
or forked run), or `docs/results.jsonl#RUN` for the recorded run whose folder is named RUN (the registry
keeps that curve: figures of recorded runs can be redrawn on any checkout). NAME=A,B reads several sources
in order; a later value for an epoch wins.

`--windows 60-79,138-147` prints each run's mean (lowest-highest) over those epochs and marks the lowest
mean in each window. A window `A-` runs to each run's last epoch; a closed window a run has not reached,
or has gaps in, is named as an error rather than averaged over fewer epochs.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from lightning_aae.data import DataError
from lightning_aae.errors import EXIT_INPUT, EXIT_STORAGE, fail
from lightning_aae.storage import StorageError, write_figure

from .registry import read


def registry_curve(source: str, metric: str) -> Dict[int, float]:
    """epoch -> value of the kept validation curve of the run recorded as REGISTRY#RUN."""
    registry, _, run = source.partition("#")
    try:
        rows = [r for r in read(Path(registry)) if Path(r.get("run_dir", "")).name == run and r.get("val_curve")]
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if not rows:
        raise DataError(f"{registry}: no recorded run named {run} with a val_curve")
    return _from_record(rows[-1]["val_curve"], metric, source)


def _from_record(curve: dict, metric: str, source: str) -> Dict[int, float]:
    if curve["metric"] != metric:
        raise DataError(f"{source} keeps the curve of {curve['metric']}, not {metric}")
    return {curve["first_epoch"] + i: v for i, v in enumerate(curve["values"]) if v is not None}


def folder_curve(folder: Path, metric: str) -> Dict[int, float]:
    """epoch -> value from a run folder: result.json's kept curve when it is of this metric (it spans the
    parts before a fork), else the epoch rows of the metrics.csv of each part (Lightning's CSVLogger,
    csv/version_N/), a later part winning."""
    result = folder / "result.json"
    if result.is_file():
        curve = json.loads(result.read_text()).get("curve")
        if curve and curve["metric"] == metric:
            return _from_record(curve, metric, str(folder))
    parts = sorted(folder.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not parts:
        raise DataError(f"{folder} holds neither a result.json with a {metric} curve nor csv/version_*/metrics.csv")
    import pandas as pd

    table = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True)
    if metric not in table:
        raise DataError(f"{folder}: its metrics.csv files have no column {metric}")
    rows = table.dropna(subset=[metric]).groupby("epoch")[metric].last()  # a resumed epoch: its last value
    return {int(e): float(v) for e, v in rows.items()}


def read_curve(sources: Sequence[str | Path], metric: str) -> Dict[int, float]:
    """epoch -> value of `metric` from these sources in order (a later value for an epoch wins)."""
    curve: Dict[int, float] = {}
    for source in sources:
        if "#" in str(source):
            curve.update(registry_curve(str(source), metric))
        elif Path(source).is_dir():
            curve.update(folder_curve(Path(source), metric))
        else:
            raise DataError(f"not a run folder nor REGISTRY#RUN: {source}")
    if not curve:
        raise DataError(f"no value of {metric} in {', '.join(map(str, sources))}")
    return dict(sorted(curve.items()))


def trailing_mean(values: Sequence[float], k: int) -> List[float]:
    """Each value replaced by the mean of it and up to k-1 values before it."""
    return [sum(values[max(0, i - k + 1):i + 1]) / (i + 1 - max(0, i - k + 1)) for i in range(len(values))]


def curves_figure(curves: Dict[str, Dict[int, float]], metric: str, percent: bool = False, title: str = "",
                  smooth: int = 1, first_epoch: int = 0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = 100.0 if percent else 1.0
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name, curve in curves.items():
        epochs = [e for e in curve if e >= first_epoch]
        if not epochs:
            raise DataError(f"{name}: no epoch from {first_epoch} on (its last is {max(curve)})")
        values = [curve[e] * scale for e in epochs]
        best = min(range(len(values)), key=values.__getitem__)
        label = f"{name} (lowest {values[best]:.3g} at epoch {epochs[best]})"
        if smooth > 1:
            points = ax.plot(epochs, values, ".", alpha=0.3)[0]
            ax.plot(epochs, trailing_mean(values, smooth), color=points.get_color(), label=label)
        else:
            ax.plot(epochs, values, marker=".", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric + (" (%)" if percent else ""))
    if smooth > 1:
        title = (title + "\n" if title else "") + f"points: each epoch; lines: mean of the last {smooth} epochs"
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def parse_windows(text: str) -> List[Tuple[int, Optional[int]]]:
    """'60-79,138-147,159-' -> [(60, 79), (138, 147), (159, None)] (None: to the run's last epoch)."""
    windows = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)-(\d*)\s*", part)
        if not match or (match.group(2) and int(match.group(2)) < int(match.group(1))):
            raise DataError(f"--windows: expected FIRST-LAST or FIRST- with FIRST <= LAST, got {part!r}")
        windows.append((int(match.group(1)), int(match.group(2)) if match.group(2) else None))
    return windows


def window_span(window: Tuple[int, Optional[int]]) -> str:
    """(60, 79) -> '60-79'; (159, None) -> '159-' (to the run's last epoch), as --windows takes it."""
    return f"{window[0]}-{'' if window[1] is None else window[1]}"


def window_stats(name: str, curve: Dict[int, float], first: int, last: Optional[int]) -> Tuple[float, float, float, int]:
    """(mean, lowest, highest, epochs) of a curve over epochs first..last (last None: to its end). Every
    epoch of a closed window must be there: a mean over fewer epochs would not compare with the others."""
    end = max(curve) if last is None else last
    epochs = range(first, end + 1)
    missing = [e for e in epochs if e not in curve]
    if not epochs or missing:
        raise DataError(f"{name}: no value for epoch(s) {_ranges(missing) if missing else first} of window "
                        f"{window_span((first, last))} "
                        f"(its curve has epochs {_ranges(sorted(curve))})")
    values = [curve[e] for e in epochs]
    return sum(values) / len(values), min(values), max(values), len(values)


def _ranges(epochs: Sequence[int]) -> str:
    """[0, 1, 2, 5, 6] -> '0-2, 5-6'."""
    spans, start = [], None
    for i, e in enumerate(epochs):
        if start is None:
            start = e
        if i + 1 == len(epochs) or epochs[i + 1] != e + 1:
            spans.append(f"{start}-{e}" if e != start else str(e))
            start = None
    return ", ".join(spans)


def windows_table(curves: Dict[str, Dict[int, float]], windows, percent: bool = False) -> str:
    """One row per run, one column per window: mean (lowest-highest); '*' marks each window's lowest mean."""
    scale, unit = (100.0, " %") if percent else (1.0, "")
    stats = {name: [window_stats(name, curve, *w) for w in windows] for name, curve in curves.items()}
    best = [min(stats, key=lambda name: stats[name][i][0]) for i in range(len(windows))]
    header = ["run"] + [f"epochs {window_span(w)}" for w in windows]
    rows = [header, ["---"] * len(header)]
    for name, cells in stats.items():
        rows.append([name] + [f"{'*' if best[i] == name else ''}{m * scale:.2f}{unit} ({lo * scale:.2f}-{hi * scale:.2f}, {n})"
                              for i, (m, lo, hi, n) in enumerate(cells)])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows) + \
        "\n(mean over the window (lowest-highest, epochs); *: the lowest mean in that window)"


def parse_runs(specs: List[str]) -> Dict[str, List[str]]:
    runs = {}
    for spec in specs:
        name, sep, logs = spec.partition("=")
        if not sep or not name or not logs:
            raise DataError(f"expected NAME=SOURCE[,SOURCE...], got {spec!r}")
        runs[name] = logs.split(",")
    return runs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.curves", description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="NAME=SOURCE[,SOURCE...] (a run folder, REGISTRY#RUN), one line per run")
    p.add_argument("--metric", default="val/error")
    p.add_argument("--percent", action="store_true", help="draw the metric x 100 (errors as percentages)")
    p.add_argument("--title", default="")
    p.add_argument("--smooth", type=int, default=1, metavar="K", help="draw the mean of each epoch's last K values")
    p.add_argument("--first-epoch", type=int, default=0, metavar="N", help="draw epochs from N on")
    p.add_argument("--windows", metavar="A-B[,C-D,E-]", help="print each run's mean over these epoch windows")
    p.add_argument("--out", help="the PNG to write (needed unless --windows is given)")
    args = p.parse_args(argv)
    if args.smooth < 1 or args.first_epoch < 0:
        return fail(f"--smooth must be at least 1 and --first-epoch at least 0, got {args.smooth} and "
                    f"{args.first_epoch}", EXIT_INPUT)
    if not args.out and not args.windows:
        return fail("nothing to do: give --out FIGURE.png, --windows A-B, or both", EXIT_INPUT)
    try:
        windows = parse_windows(args.windows) if args.windows else None
        curves = {name: read_curve(logs, args.metric) for name, logs in parse_runs(args.runs).items()}
        table = windows_table(curves, windows, args.percent) if windows else None
        figure = curves_figure(curves, args.metric, args.percent, args.title, args.smooth, args.first_epoch) if args.out else None
    except DataError as e:
        return fail(str(e), EXIT_INPUT)
    if table:
        print(table)
    if figure is None:
        return 0
    try:
        write_figure(args.out, figure)
    except StorageError as exc:
        return fail(exc, EXIT_STORAGE)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
