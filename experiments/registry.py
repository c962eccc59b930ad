"""The results registry, docs/results.jsonl: one JSON line per recorded metric of a finished run.

This is the data layer: what a line holds, how a run folder's result.json becomes lines, and whether a
run confirms a preregistered row (docs/protocol.md). The command line is experiments/results.py; the
tables are experiments/tables.py.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from lightning_aae.storage import append_line_atomic
from lightning_aae.variants import VARIANTS

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = Path("docs/results.jsonl")
PREREGISTERED = Path("docs/preregistered")
REQUIRED = ("experiment", "seed", "epochs", "metric", "value", "command", "commit", "date", "hardware", "wall_s",
            "stage")
STAGES = ("confirmation", "exploratory")

# experiment -> its main metric (registry name, test metric key, scale: 100 = recorded in percent);
# EXTRA_METRICS: further lines `record` writes for the same run
METRICS = {
    "semi_supervised": ("test_error", "test/error", 100.0),
    "clustering": ("cluster_error", "test/cluster_error", 100.0),
    "dim_reduction": ("cluster_error", "test/cluster_error", 100.0),
    "parzen": ("parzen_ll", "test/parzen_ll", 1.0),
    "autoencoder": ("recon_loss", "test/recon_loss", 1.0),
}
EXTRA_METRICS = {
    "parzen": (("parzen_ll_stderr", "test/parzen_ll_stderr", 1.0), ("parzen_sigma", "test/parzen_sigma", 1.0)),
    # the autoencoder family's table: how sparse each code is
    "autoencoder": (("code_mean_abs", "test/code_mean_abs", 1.0), ("code_near_zero", "test/code_near_zero", 100.0),
                    ("code_hoyer", "test/code_hoyer", 1.0)),
}
PERCENT = {metric for metric, _, scale in (*METRICS.values(), *(m for ms in EXTRA_METRICS.values() for m in ms))
           if scale == 100.0}

# keys a row's command may add without changing what is trained (docs/protocol.md)
RUNTIME_KEYS = ("seed=", "num_threads=", "output_dir=", "logger.", "trainer.enable_progress_bar=",
                "trainer.accelerator=", "trainer.devices=", "data.root=", "ckpt_path=")


def experiment_of(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The registry's description of a run's setting: experiment and its size keys."""
    model, data = cfg["model"], cfg["data"]
    variant = model["variant"]
    out: Dict[str, Any] = {"experiment": variant, "variant": variant}
    name = dataset_name(data)
    if name != "mnist":  # lines without the key are MNIST's
        out["dataset"] = name
    if (cfg.get("evaluate") or {}).get("parzen"):
        out["experiment"] = "parzen"
    if variant == "semi_supervised":
        out["labels"] = (model.get("n_classes") or 10) * data["labels_per_class"]
    if VARIANTS[variant].categories == "clusters":
        out["clusters"] = model["n_clusters"]
    out["latent_dim"] = model["latent_dim"]
    return out


def dataset_name(data: Dict[str, Any]) -> str:
    """mnist, fashion_mnist, svhn, or the file or folder name of the user's own data (array, folder)."""
    dataset = data.get("dataset", "mnist")
    return Path(data["path"]).stem if dataset in ("array", "folder") and data.get("path") else dataset


def row_of(command: str) -> Optional[str]:
    """The row a command runs: X for `python train.py --config configs/X.yaml` plus runtime keys only."""
    words = shlex.split(command)
    if len(words) < 4 or words[:4] != ["python", "train.py", "--config", words[3]] or \
            not re.fullmatch(r"configs/\w+\.yaml", words[3]):
        return None
    if recipe_overrides(words):
        return None
    return Path(words[3]).stem


def recipe_overrides(words: List[str]) -> List[str]:
    """The words of a train.py command after `--config X.yaml` that change what is trained (not runtime keys)."""
    rest = words[words.index("--config") + 2:] if "--config" in words else []
    return [w for w in rest if not w.startswith(RUNTIME_KEYS)]


def _last_change(path: Path, root: Path) -> Optional[List[str]]:
    """[SHA, ISO time] of the commit that last changed `path` under `root`; None where git has none."""
    out = subprocess.run(["git", "log", "-1", "--format=%H %cI", "--", str(path)], cwd=root,
                         capture_output=True, text=True).stdout.split()
    return out or None


def preregistration(row: str, root: Path = ROOT) -> Optional[Dict[str, Any]]:
    """The row's preregistered file with `commit` and `committed` (ISO time) of the commit that last changed
    it: a row re-preregistered for a new recipe (a new claim on fresh seeds) counts from its new version.
    None when there is none, when it is not committed, or when the config it names changed after it (the
    claim was written for another recipe)."""
    path = PREREGISTERED / f"{row}.yaml"
    last = _last_change(path, root) if (root / path).is_file() else None
    if last is None:
        return None
    spec = yaml.safe_load((root / path).read_text())
    commit, committed = last
    config = _last_change(Path(spec["config"]), root) if spec.get("config") else None
    if config and subprocess.run(["git", "merge-base", "--is-ancestor", config[0], commit],
                                 cwd=root, capture_output=True).returncode != 0:
        return None
    return {**spec, "commit": commit, "committed": committed}


def claims(root: Path = ROOT) -> Dict[str, Dict[str, Any]]:
    """row -> its preregistered file (docs/preregistered/<row>.yaml): seeds, metric, claim, threshold."""
    return {path.stem: yaml.safe_load(path.read_text()) for path in sorted((root / PREREGISTERED).glob("*.yaml"))}


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def stage_of(result: Dict[str, Any], root: Path = ROOT) -> Dict[str, Any]:
    """{'row', 'stage', 'preregistered'} of a finished run: a confirmation when every part of it ran the
    row's command plus runtime keys, its seed is one the row's file lists, and that file was committed
    before the run started; exploratory otherwise."""
    commands = [s["command"] for s in result.get("segments") or []] or [result["command"]]
    rows = {row_of(c) for c in commands}
    row = rows.pop() if len(rows) == 1 else None
    out: Dict[str, Any] = {"stage": "exploratory", **({"row": row} if row else {})}
    spec = preregistration(row, root) if row else None
    started = result.get("started")
    if spec and started and result["config"]["seed"] in spec.get("seeds", []) and \
            _utc(spec["committed"]) < _utc(started):
        out.update(stage="confirmation", preregistered=spec["commit"])
    return out


def rounded_curve(curve: Dict[str, Any], digits: int = 5) -> Dict[str, Any]:
    return {**curve, "values": [None if v is None else round(v, digits) for v in curve["values"]]}


def registry_lines(result: Dict[str, Any], recipe: Optional[str] = None, root: Path = ROOT) -> List[Dict[str, Any]]:
    """The registry lines of a run folder's result.json: its experiment's main metric first, then any
    EXTRA_METRICS, one line each; `value` is the chosen checkpoint's, `value_last` the last epoch's."""
    setting = experiment_of(result["config"])
    exp = setting["experiment"]
    if exp not in METRICS:
        raise ValueError(f"no registry metric for experiment '{exp}' (recordable: {', '.join(METRICS)})")
    stage = stage_of(result, root)
    lines = []
    for metric, key, scale in (METRICS[exp], *EXTRA_METRICS.get(exp, ())):
        if key not in result["metrics"]:
            raise ValueError(f"the run's result.json has no '{key}'")
        digits = 6 if scale == 1.0 else 4
        line = {**setting, **stage, "recipe": recipe or result.get("recipe") or exp, "seed": result["config"]["seed"],
                "epochs": result["epochs"], "best_epoch": result.get("best_epoch"), "metric": metric,
                "value": round(result["metrics"][key] * scale, digits)}
        last = result["metrics"].get(key.replace("test/", "test_last/", 1))
        if last is not None:
            line["value_last"] = round(last * scale, digits)
        line.update({k: result[k] for k in ("command", "commit", "date", "hardware", "wall_s", "run_dir", "started")
                     if k in result})
        line.update({"segments": result["segments"]} if result.get("segments") else {})
        if not lines and result.get("curve"):  # the main line carries the run's validation curve
            line["val_curve"] = rounded_curve(result["curve"])
        lines.append(line)
    return lines


def append(line: Dict[str, Any] | List[Dict[str, Any]], registry: Path = REGISTRY) -> None:
    """Append a line, or a run's lines all at once (all or none: a run is never half recorded)."""
    lines = [line] if isinstance(line, dict) else list(line)
    for one in lines:
        missing = [k for k in REQUIRED if one.get(k) is None]
        if missing:
            raise ValueError(f"registry line lacks {', '.join(missing)}")
        if one["stage"] not in STAGES:
            raise ValueError(f"registry line's stage must be one of {', '.join(STAGES)}, got {one['stage']!r}")
    # a failed write keeps the earlier lines; a lock keeps every line of concurrent writers
    append_line_atomic(registry, [json.dumps(one, sort_keys=True) for one in lines])


def read(registry: Path = REGISTRY) -> List[Dict[str, Any]]:
    if not Path(registry).is_file():
        return []
    rows = []
    for i, text in enumerate(Path(registry).read_text().splitlines(), 1):
        if text.strip():
            try:
                rows.append(json.loads(text))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{registry} line {i} is not JSON ({exc.msg})") from None
    return rows


def holds_selection(rows: List[Dict[str, Any]], recipe: str, seed: int) -> bool:
    """Whether the registry already holds seed `seed` of a recipe made by a choice among runs (`select`)."""
    return any(r.get("recipe") == recipe and r["seed"] == seed and r.get("selection") for r in rows)


def record_run(run_dir: Path, registry: Path = REGISTRY, recipe: Optional[str] = None,
               root: Path = ROOT) -> List[Dict[str, Any]]:
    """Append a finished run folder's lines; returns them."""
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        raise ValueError(f"{path} not found: is the run finished?")
    lines = registry_lines(json.loads(path.read_text()), recipe, root)
    append(lines, Path(registry))
    return lines
