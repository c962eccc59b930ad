"""A run's own record: where the code came from, what ran it, on what, for how long (result.json).

train() writes <run>/result.json from these; recording it in the results registry is the lab's
business (experiments/registry.py), not the library's.
"""
from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional


def git_commit(cwd: Optional[Path] = None) -> str:
    """HEAD's hash, with '+dirty' when tracked files differ from it; 'unknown' outside a checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's name with its family and model numbers ("AMD EPYC (family 25 model 1)"): a virtual
    machine often names only the brand, and a CPU run that repeated exactly on one such machine did not on
    another (README, "Configuration"), so the registry should tell them apart."""
    fields: Dict[str, str] = {}
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                if fields:
                    break  # the first processor's block is enough
                continue
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']} model {fields['model']})"
    return name


def hardware(accelerator: str = "cpu", threads: Optional[int] = None) -> str:
    """One line: the GPU's name when one is used, else the CPU model, cores and torch threads."""
    import torch

    if accelerator not in ("cpu",) and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return (f"{cpu_model()}, {os.cpu_count()} cores, {threads or torch.get_num_threads()} torch threads "
            f"(torch {torch.__version__})")


def command_line(argv: Optional[List[str]] = None) -> str:
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0].endswith("train.py"):
        argv[0] = "train.py"
    elif argv and Path(argv[0]).parent.name in ("lightning_aae", "experiments"):  # python -m <package>.<tool>
        argv[:1] = ["-m", f"{Path(argv[0]).parent.name}.{Path(argv[0]).stem}"]
    return "python " + " ".join(shlex.quote(a) for a in argv)


def provenance() -> Dict[str, Any]:
    """Taken when a run starts: the code that runs is the code of that moment, whatever HEAD is later."""
    now = time.time()
    return {"command": command_line(), "commit": git_commit(), "date": time.strftime("%Y-%m-%d", time.gmtime(now)),
            "started": now}


def iso_utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


SEGMENT = ("commit", "command", "date", "wall_s")  # what names one part of a run that was resumed


def segment(start: Dict[str, Any]) -> Dict[str, Any]:
    """The part of a run that began at `start` (its `provenance()`), up to now."""
    return {"commit": start["commit"], "command": start["command"], "date": start["date"],
            "started": iso_utc(start["started"]), "wall_s": round(time.time() - start["started"], 1)}


def run_record(cfg: Dict[str, Any], metrics: Dict[str, float], epochs: int, best_epoch: Optional[int],
               start: Dict[str, Any], run_dir: Path, accelerator: str,
               earlier: Iterable[Dict[str, Any]] = (), curve: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """What train() leaves as <run_dir>/result.json. `earlier`: the parts of a resumed run that trained
    before this one (callbacks.WallClock); its wall time is then theirs plus this part's, and
    `segments` names every part's commit, command, date and wall seconds. `curve`: the monitored
    validation metric per epoch over all parts (WallClock.curve())."""
    record = {"config": cfg, "metrics": metrics, "epochs": epochs, "best_epoch": best_epoch, **segment(start),
              "hardware": hardware(accelerator, cfg.get("num_threads")), "run_dir": str(run_dir),
              "recipe": cfg["logger"]["group"], **({"curve": curve} if curve else {})}
    return with_earlier(record, list(earlier))


def with_earlier(result: Dict[str, Any], earlier: List[Dict[str, Any]]) -> Dict[str, Any]:
    """A run's result with the parts that trained before it (each with commit, command, date, wall_s)
    counted in: wall_s summed over all parts, `segments` listing them, the last being this one."""
    if not earlier:
        return result
    this = {k: result[k] for k in (*SEGMENT, "started") if k in result}
    first = earlier[0].get("started")  # parts recorded before 2026-12-04 name only their date
    return {**result, "wall_s": round(sum(seg["wall_s"] for seg in earlier) + this["wall_s"], 1),
            "segments": [*earlier, this], **({"started": first} if first else {})}


def curve_record(metric: str, values: Dict[int, float]) -> Optional[Dict[str, Any]]:
    """A curve as result.json and the registry keep it: one value per epoch from first_epoch on, None
    for an epoch without one; None when there is no value at all."""
    if not values:
        return None
    first, last = min(values), max(values)
    return {"metric": metric, "first_epoch": first, "values": [values.get(e) for e in range(first, last + 1)]}
