"""Keep the better of several runs on validation, and record the kept run's test result as one seed of a
recipe made of that choice (`python -m experiments.registry select`).

The 30-cluster restart rule is such a recipe: reported seed i trains trunks i and i + 5, keeps the one
whose validation cluster error is lower on average over epochs 60-79, and reports that trunk's late-drop
fork; two means within 0.5 points go on to the next window (138-147), where the lower mean wins.

    python -m experiments.registry select --recipe clustering30-restart-rule --seed 2 \\
        --metric val/cluster_error --percent --windows 60-79,138-147 --band 0.5 \\
        --candidate t2=<trunk 2's curve sources> --candidate t7=docs/results.jsonl#clu30-to148-s7 \\
        --report t7=clu30-cn0at148-s7

Each candidate's curve comes from any source `experiments.curves` reads (run folders,
REGISTRY#RUN); a candidate whose curve was lost can be given as its quoted window mean
(`t2=quoted:60-79:26.83`), which the line marks as quoted. The registry line is the reported run's
line under the new recipe and seed, with `selection` naming the rule, every candidate's window means (and
the curve over the windows where it was read from a log, so the choice can be checked from the registry
alone), the chosen candidate and the reported run. The test set plays no part in the choice.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from lightning_aae.data import DataError

from .curves import parse_windows, read_curve, window_span as _span, window_stats
from .registry import METRICS

Window = Tuple[int, Optional[int]]
QUOTED = re.compile(r"quoted:(\d+)-(\d+):([0-9.]+)")


def parse_candidates(specs: Sequence[str]) -> Dict[str, Any]:
    """LABEL=SOURCE[,SOURCE...] or LABEL=quoted:A-B:MEAN -> {label: [sources] or (window, mean)}."""
    out: Dict[str, Any] = {}
    for spec in specs:
        label, sep, rest = spec.partition("=")
        if not sep or not label or not rest:
            raise ValueError(f"--candidate: expected LABEL=SOURCE[,SOURCE...] or LABEL=quoted:A-B:MEAN, got {spec!r}")
        if label in out:
            raise ValueError(f"--candidate: {label} given twice")
        if rest.startswith("quoted:"):
            match = QUOTED.fullmatch(rest)
            if not match:
                raise ValueError(f"--candidate {label}: a quoted mean is quoted:FIRST-LAST:MEAN, got {rest!r}")
            out[label] = ((int(match.group(1)), int(match.group(2))), float(match.group(3)))
        else:
            out[label] = rest.split(",")
    if len(out) < 2:
        raise ValueError("select: give at least two --candidate runs to choose between")
    return out


def window_mean(label: str, curve: Dict[int, float], window: Window, scale: float = 1.0) -> float:
    """The curve's mean over the window, after `scale`, to the 4 decimals the rule compares and records."""
    return round(window_stats(label, curve, *window)[0] * scale, 4)


def within_band(means: Dict[Any, float], band: float) -> List[Any]:
    """The lowest mean's key first, then every other whose mean is within `band` of it (in their order)."""
    lowest = min(means, key=means.get)
    return [lowest] + [k for k, m in means.items() if k != lowest and m - means[lowest] <= band]


def choose(candidates: Dict[str, Any], metric: str, windows: List[Window], band: float, scale: float = 1.0):
    """The rule: compare the candidates' means over the first window; the lowest wins unless others are
    within `band` of it, in which case those go on to the next window; in the last window the lowest
    wins. Means are compared after `scale` (100: percent points). Returns (chosen label, the window it
    was decided in, {label: {window: mean}}, {label: curve read from a log or folder, for the record})."""
    curves = {label: read_curve(src, metric) for label, src in candidates.items() if isinstance(src, list)}
    means: Dict[str, Dict[str, float]] = {label: {} for label in candidates}
    alive = list(candidates)
    for i, window in enumerate(windows):
        span = _span(window)
        for label in alive:
            src = candidates[label]
            if isinstance(src, tuple):
                if src[0] != window:
                    raise ValueError(f"candidate {label} is quoted over epochs {_span(src[0])} only, and the rule "
                                     f"needs its mean over {span}")
                means[label][span] = src[1]
            else:
                means[label][span] = window_mean(label, curves[label], window, scale)
        close = within_band({label: means[label][span] for label in alive}, band)
        if len(close) == 1 or i == len(windows) - 1:
            return close[0], span, {k: v for k, v in means.items() if v}, curves
        alive = close
    raise AssertionError("unreachable: the last window always decides")


def _window_curve(curve: Dict[int, float], windows: List[Window]) -> Dict[str, List[float]]:
    """The curve's values over each window, keyed by the window's span as the means are."""
    kept = {}
    for first, last in windows:
        end = max(curve) if last is None else last
        kept[_span((first, last))] = [round(curve[e], 5) for e in range(first, end + 1)]
    return kept


def selection_line(reported: Dict[str, Any], recipe: str, seed: int, chosen: str, decided: str,
                   means: Dict[str, Dict[str, float]], candidates: Dict[str, Any], curves: Dict[str, Dict[int, float]],
                   metric: str, band: float, windows: List[Window], command: str) -> Dict[str, Any]:
    """The reported run's registry line as seed `seed` of `recipe`, with what the choice was made on."""
    line = {k: v for k, v in reported.items() if k != "val_curve"}
    sources = {}
    for label, src in candidates.items():
        if isinstance(src, tuple):
            sources[label] = {"quoted": True}
        else:
            entry: Dict[str, Any] = {"sources": src}
            if not all("#" in s for s in src):  # a log or a folder may not outlive this checkout: keep the epochs used
                entry["window_values"] = _window_curve(curves[label], [w for w in windows if _span(w) in means[label]])
            sources[label] = entry
    # a rule written after test numbers were seen (docs/protocol.md)
    line.update(recipe=recipe, seed=seed, stage="exploratory", selection={
        "metric": metric, "windows": [_span(w) for w in windows], "band": band, "means": means,
        "candidates": sources, "chosen": chosen, "decided_on": decided, "run_seed": reported["seed"],
        "reported_run": Path(reported["run_dir"]).name, "command": command})
    return line


def reported_line(rows: List[Dict[str, Any]], run: str) -> Dict[str, Any]:
    """The main registry line of the recorded run whose folder is named `run` (its last, if recorded twice)."""
    found = [r for r in rows if Path(r.get("run_dir", "")).name == run and not r.get("selection")
             and r["metric"] == METRICS[r["experiment"]][0]]
    if not found:
        raise ValueError(f"no recorded run named {run} in the registry: record it first")
    return found[-1]


def parse_windows_checked(text: str) -> List[Window]:
    try:
        return parse_windows(text)
    except DataError as exc:
        raise ValueError(str(exc)) from None
