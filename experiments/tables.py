"""Markdown tables made from the registry (pandas: group, mean and std over seeds, to_markdown).

The headline table shows confirmation records only (docs/protocol.md); the experiment pages show every
recipe, each row marked confirmation or exploratory.
"""
from __future__ import annotations

import math
import operator
import shlex
from typing import Any, Dict, List, Optional, Tuple

import pandas as pd

from .registry import EXTRA_METRICS, METRICS, PERCENT, recipe_overrides

# the headline rows: config name -> (what it measures, the paper's number, the experiment page, the
# exploratory recipe in the registry that the row's config trains, shown until the row is confirmed)
HEADLINE = {
    "semi_supervised_100": ("Semi-supervised, 100 labels: error (%)", "1.90 ± 0.10", "semi_supervised",
                            "semi_supervised_100-rotate10-elastic8-e80"),
    "semi_supervised": ("Semi-supervised, 1000 labels: error (%)", "1.60 ± 0.08", "semi_supervised",
                        "semi_supervised_1000-rotate10-elastic8-e70"),
    "clustering": ("Clustering, 16 clusters: error (%)", "9.55 ± 2.82", "clustering", "clustering16-e80-bn-dropout"),
    "clustering30_long": ("Clustering, 30 clusters: error (%)", "4.10 ± 1.13", "clustering",
                          "clustering30-long-bn-dropout-catnoise0-from148"),
    "dim_reduction": ("2-D, 20 clusters: error (%)", "", "dim_reduction", "dim_reduction-e20"),
    "parzen": ("Parzen, 8-D code: nats", "340 ± 2", "parzen", "parzen-8d-adam-h1000-e80"),
}
FAMILY = "autoencoder"  # the experiment whose runs go to the family table, one row per recipe


def number_format(value: float) -> str:
    """Two decimals for percents and log-likelihoods; four significant digits below 1 (MSE, mean |code|),
    as fixed decimals so a spread beside it shows to the same place."""
    if not math.isfinite(value) or abs(value) >= 1 or value == 0:
        return ".2f"
    return f".{3 - math.floor(math.log10(abs(value)))}f"


def spread(values: pd.Series) -> str:
    """mean ± sample std, or the mean alone for one value (one seed claims no spread)."""
    values = values.dropna()
    if values.empty:
        return ""
    mean = values.mean()
    fmt = number_format(mean)
    return f"{mean:{fmt}} ± {values.std():{fmt}}" if len(values) > 1 else f"{mean:{fmt}}"


def frame(rows: List[Dict[str, Any]], claims: Optional[Dict[str, Dict[str, Any]]] = None) -> pd.DataFrame:
    """One row per registry line, with the columns the tables group by (`claims`: row -> its preregistered
    file, which names the confirmation seeds of the row's current recipe)."""
    df = pd.DataFrame(rows)
    for column in ("experiment", "metric", "value", "epochs", "seed", "row", "stage", "value_last", "selection",
                   "recipe", "dataset", "val_curve", "preregistered", "started"):
        if column not in df:
            df[column] = None
    df["dataset"] = df["dataset"].fillna("mnist")
    df["stage"] = df["stage"].fillna("exploratory")
    df["recipe"] = df["recipe"].fillna(df["experiment"])
    df["group"] = [_group(*run, claims or {}) for run in zip(df["stage"], df["recipe"], df["row"], df["seed"],
                                                              df["preregistered"])]
    df["epochs_shown"] = [("selected" if isinstance(s, dict) else e) for s, e in zip(df["selection"], df["epochs"])]
    return df


def _group(stage: str, recipe: str, row: Any, seed: Any, commit: Any, claims: Dict[str, Dict[str, Any]]) -> str:
    """What a run is tabled under: its recipe when exploratory, its row when it confirms the row's current
    claim, and "<row> (recipe of <commit>)" when it confirmed an earlier claim of a row re-preregistered since
    for a new recipe on fresh seeds (`git show <commit>:configs/<row>.yaml` is the recipe it confirmed)."""
    if stage != "confirmation":
        return recipe
    if seed not in claims.get(row, {}).get("seeds", [seed]) and isinstance(commit, str):
        return f"{row} (recipe of {commit[:7]})"
    return row


def _main(df: pd.DataFrame) -> pd.DataFrame:
    """Each run's main-metric line."""
    main = {exp: m[0] for exp, m in METRICS.items()}
    return df[[main.get(e) == m for e, m in zip(df["experiment"], df["metric"])]]


def _epochs(runs: pd.DataFrame) -> str:
    lo, hi = int(runs["epochs"].min()), int(runs["epochs"].max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _all_in(confirmed: pd.DataFrame, planned: Optional[int]) -> bool:
    """Whether a row's confirmation is complete: some runs, and every preregistered seed (`planned`, where
    known) among them."""
    return bool(len(confirmed)) and (planned is None or len(confirmed) >= planned)


def _superseded(df: pd.DataFrame, row: str) -> Tuple[str, pd.DataFrame]:
    """The preregistering commit (7 digits) and the runs of a row's latest confirmation of an earlier
    recipe, the runs `_group` tables apart from the row (none: "", no runs)."""
    old = df[(df["stage"] == "confirmation") & (df["row"] == row) & (df["group"] != row)]
    if old.empty:
        return "", old
    commit = old.sort_values("started")["preregistered"].iloc[-1]
    return commit[:7], old[old["preregistered"] == commit]


def _ours(confirmed: pd.DataFrame, explored: pd.DataFrame, planned: Optional[int],
          superseded: Tuple[str, pd.DataFrame]) -> str:
    """The headline's "ours" cell: the confirmation runs' mean ± std in bold once every preregistered seed
    is in, marked as partial before that; the recipe's exploratory runs until then, beside the latest
    confirmation of the row's earlier recipe (`superseded`: its commit and runs), so a re-preregistered row
    keeps its last confirmed number in view."""
    n = len(confirmed)
    if _all_in(confirmed, planned):
        return f"**{spread(confirmed['value'])}** (n={n})"
    ours = f"confirmation {n} of {planned} seeds: {spread(confirmed['value'])}" if n else "not yet confirmed"
    ours += f"; exploratory {spread(explored['value'])} (n={len(explored)})" if len(explored) else ""
    commit, old = superseded
    return ours + (f"; earlier recipe ({commit}): {spread(old['value'])} (n={len(old)})" if len(old) else "")


# a preregistered threshold's key -> how the claim reads, and the comparison a mean must pass
THRESHOLDS = {"value_mean_at_most": ("≤", operator.le), "value_mean_at_least": ("≥", operator.ge)}


def verdict(confirmed: pd.DataFrame, claim: Optional[Dict[str, Any]]) -> str:
    """The headline's "claim" cell: the preregistered bound on the mean and, once every preregistered seed
    is in, whether the confirmation mean meets it ("met" / "missed"); "pending" before that."""
    if not claim or not claim.get("threshold"):
        return ""
    (key, bound), = claim["threshold"].items()
    sign, holds = THRESHOLDS[key]
    if not _all_in(confirmed, len(claim.get("seeds", []))):
        return f"{sign} {bound:g}: pending"
    return f"{sign} {bound:g}: " + ("met" if holds(confirmed["value"].mean(), bound) else "**missed**")


def headline_table(rows: List[Dict[str, Any]], link: str = "docs/experiments/{page}.md",
                   claims: Optional[Dict[str, Dict[str, Any]]] = None) -> str:
    """experiment | paper | ours (confirmation: mean ± std over n seeds; until a row is confirmed on all its
    preregistered seeds (`claims`: row -> its preregistered file), its recipe's exploratory runs too, marked
    so) | claim (the preregistered bound, met or missed) | last epoch and epochs (of the runs "ours" reports) |
    command."""
    claims = claims or {}
    df = _main(frame(rows, claims))
    out = []
    for row, (what, paper, page, explored) in HEADLINE.items():
        runs = df[(df["group"] == row) & (df["stage"] == "confirmation")]  # not an earlier recipe's
        earlier = df[(df["recipe"] == explored) & (df["stage"] == "exploratory")]
        planned = len(claims[row].get("seeds", [])) if row in claims else None
        shown = runs if len(runs) else earlier  # the runs the "ours" cell reports
        out.append({"experiment": f"[{what}]({link.format(page=page)})", "paper": paper,
                    "ours": _ours(runs, earlier, planned, _superseded(df, row)),
                    "claim": verdict(runs, claims.get(row)),
                    "last epoch": spread(shown["value_last"]) if len(shown) else "",
                    "epochs": _epochs(shown) if len(shown) else "",
                    "one seed": f"`python train.py --config configs/{row}.yaml seed=0`"})
    return pd.DataFrame(out).to_markdown(index=False)


# experiment -> the validation metric that is the test metric's counterpart (the table's validation column)
VALIDATION = {"semi_supervised": "val/error", "clustering": "val/cluster_error", "dim_reduction": "val/cluster_error"}


def _curve_values(curve: Any, metric: Optional[str]) -> List[float]:
    """A run's kept validation values where its curve is `metric`; none for a run recorded without it."""
    if not isinstance(curve, dict) or metric is None or curve.get("metric") != metric:
        return []
    return [v for v in curve.get("values", []) if v is not None]


def _best_validation(curve: Any, metric: Optional[str], scale: float) -> float:
    """The lowest value of a run's kept validation curve where it is `metric` (the checkpoint chosen on
    it), in the table's unit; NaN for a run recorded without that curve."""
    values = _curve_values(curve, metric)
    return min(values) * scale if values else math.nan


def experiment_table(rows: List[Dict[str, Any]], experiment: str,
                     claims: Optional[Dict[str, Dict[str, Any]]] = None) -> str:
    """Every recipe of an experiment: one row per (size, recipe, epochs, stage), mean ± std over seeds of
    the chosen checkpoint's validation value (where every run kept its curve), of its test value (value)
    and of the last epoch's test value (value_last); an earlier recipe of a re-preregistered row (`claims`)
    has its own row."""
    df = _main(frame(rows, claims))
    df = df[(df["experiment"] == experiment) & (df["dataset"] == "mnist")]
    if df.empty:
        return "(no recorded runs)"
    size = next((k for k in ("labels", "clusters") if k in df and df[k].notna().any()), "latent_dim")
    out = []
    keys = [size, "group", "stage", "epochs_shown"]
    scale = METRICS[experiment][2]
    for (n, group, stage, epochs), runs in df.groupby(keys, sort=True, dropna=False):
        seeds = ", ".join(str(s) for s in sorted(runs["seed"]))
        best = pd.Series([_best_validation(c, VALIDATION.get(experiment), scale) for c in runs["val_curve"]],
                         dtype=float)
        out.append({size: n, "recipe": group, "stage": stage, "epochs": epochs if epochs != "selected" else
                    f"selected ({_epochs(runs)})", "validation (chosen)": spread(best) if best.notna().all() else "",
                    "test (chosen on validation)": spread(runs["value"]),
                    "test (last epoch)": spread(runs["value_last"]), "seeds": seeds})
    table = pd.DataFrame(out)
    if (table["validation (chosen)"] == "").all():  # no run of this experiment kept that curve
        table = table.drop(columns="validation (chosen)")
    order = {"confirmation": 0, "exploratory": 1}
    table = table.sort_values([size, "stage", "recipe"], key=lambda c: c.map(order) if c.name == "stage" else c)
    confirmed, explored = table[table["stage"] == "confirmation"], table[table["stage"] != "confirmation"]
    if confirmed.empty or explored.empty:
        return table.to_markdown(index=False)
    summary = f"Exploratory runs: {len(explored)} row{'s' * (len(explored) > 1)}, made while a recipe was being chosen"
    return (f"{confirmed.to_markdown(index=False)}\n\n<details><summary>{summary}</summary>\n\n"
            f"{explored.to_markdown(index=False)}\n\n</details>")


def changes_of(command: str) -> str:
    """What a run's command changes from its config (registry.recipe_overrides), as one code span; "the
    config" where it changes nothing."""
    changed = recipe_overrides(shlex.split(command))
    return "`" + " ".join(changed) + "`" if changed else "the config"


def _window_mean(curve: Any, metric: Optional[str], last: int, scale: float) -> float:
    """Mean of a run's last `last` validation values (the end of the run, not its best epoch)."""
    values = _curve_values(curve, metric)[-last:]
    return sum(values) / len(values) * scale if values else math.nan


def arms_table(rows: List[Dict[str, Any]], experiment: str, prefixes: Tuple[str, ...], last: int = 5) -> str:
    """Exploratory arms (recipes named `<prefix><arm>`, one prefix per labeled-set size), one row per
    (labels, arm, epochs), ranked on validation: what the command changes, the chosen epoch's validation
    value and the mean of the last `last` epochs' (mean ± std over seeds), then the test values, read only
    to report."""
    df = _main(frame(rows))
    df = df[(df["experiment"] == experiment) & (df["stage"] == "exploratory")
            & df["recipe"].astype(str).str.startswith(tuple(prefixes))]
    if df.empty:
        return "(no recorded arms)"
    metric, scale, out = VALIDATION.get(experiment), METRICS[experiment][2], []
    for (labels, recipe, epochs), runs in df.groupby(["labels", "recipe", "epochs"], sort=True):
        best = pd.Series([_best_validation(c, metric, scale) for c in runs["val_curve"]], dtype=float)
        end = pd.Series([_window_mean(c, metric, last, scale) for c in runs["val_curve"]], dtype=float)
        prefix = next(p for p in prefixes if recipe.startswith(p))
        out.append({"labels": labels, "arm": recipe[len(prefix):], "changes": changes_of(runs["command"].iloc[0]),
                    "epochs": epochs, "validation (chosen)": spread(best),
                    f"validation (last {last} epochs)": spread(end), "test (chosen)": spread(runs["value"]),
                    "test (last epoch)": spread(runs["value_last"]),
                    "seeds": ", ".join(str(s) for s in sorted(runs["seed"])), "_rank": best.mean()})
    table = pd.DataFrame(out).sort_values(["labels", "epochs", "_rank"]).drop(columns="_rank")
    return table.to_markdown(index=False)


DATASETS = "datasets"  # the page of the runs on data other than MNIST


def dataset_table(rows: List[Dict[str, Any]]) -> str:
    """Runs on data other than MNIST: one row per (data set, experiment, recipe, epochs, stage), the main
    metric's mean ± std over seeds, chosen on validation and at the last epoch."""
    df = _main(frame(rows))
    df = df[df["dataset"] != "mnist"]
    if df.empty:
        return "(no recorded runs)"
    out = []
    keys = ["dataset", "experiment", "metric", "group", "stage", "epochs_shown"]
    for (dataset, experiment, metric, group, stage, epochs), runs in df.groupby(keys, sort=True, dropna=False):
        unit = " (%)" if metric in PERCENT else ""
        out.append({"data": dataset, "experiment": experiment, "recipe": group, "stage": stage, "epochs": epochs,
                    "metric": metric + unit, "test (chosen on validation)": spread(runs["value"]),
                    "test (last epoch)": spread(runs["value_last"]),
                    "seeds": ", ".join(str(s) for s in sorted(runs["seed"]))})
    return pd.DataFrame(out).to_markdown(index=False, disable_numparse=True)  # 12.50 stays 12.50


def family_table(rows: List[Dict[str, Any]]) -> str:
    """The autoencoder family: one row per (recipe, epochs), a column per metric (mean ± std over seeds)."""
    df = frame(rows)
    df = df[(df["experiment"] == FAMILY) & (df["dataset"] == "mnist")]
    if df.empty:
        return "(no recorded runs)"
    metrics = [m for m, _, _ in (METRICS[FAMILY], *EXTRA_METRICS[FAMILY])]
    out = []
    for (recipe, epochs), runs in df.groupby(["recipe", "epochs"], sort=True):
        line: Dict[str, Optional[str]] = {"recipe": recipe, "epochs": epochs}
        for m in metrics:
            line[m + (" (%)" if m in PERCENT else "")] = spread(runs.loc[runs["metric"] == m, "value"])
        line["seeds"] = ", ".join(str(s) for s in sorted(set(runs["seed"])))
        out.append(line)
    return pd.DataFrame(out).to_markdown(index=False)
