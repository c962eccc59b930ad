"""One optimizer (and LR schedule) per phase, built from `optim` with per-phase overrides.

`optim.<phase>.<key>` overrides `optim.<key>` for that phase; unset (null) falls back.
Schedules step once per epoch (global_step counts optimizer steps, 1-4 per batch).
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional

import torch
from torch import nn


def phase_setting(optim_cfg: Dict[str, Any], phase: str, key: str, default=None):
    value = (optim_cfg.get(phase) or {}).get(key)
    return optim_cfg.get(key, default) if value is None else value


_FUSED_ADAM_DEVICES = ("cpu", "cuda")


def _fused(optim_cfg: Dict[str, Any], params: List[nn.Parameter]) -> Optional[bool]:
    """optim.fused, or where it is null, whether every parameter is a float tensor on a device
    with a fused Adam kernel. None leaves the choice to torch (its for-loop / foreach path)."""
    wanted = optim_cfg.get("fused")
    if wanted is not None:
        return bool(wanted) or None
    return True if all(p.is_floating_point() and p.device.type in _FUSED_ADAM_DEVICES for p in params) else None


def _adam(cfg, phase, params):
    return torch.optim.Adam(params, lr=phase_setting(cfg, phase, "lr"), betas=tuple(phase_setting(cfg, phase, "betas")),
                            weight_decay=phase_setting(cfg, phase, "weight_decay"), fused=_fused(cfg, params))


def _sgd(cfg, phase, params):
    return torch.optim.SGD(params, lr=phase_setting(cfg, phase, "lr"), momentum=phase_setting(cfg, phase, "momentum", 0.9),
                           weight_decay=phase_setting(cfg, phase, "weight_decay"))


OPTIMIZERS = {"adam": _adam, "sgd": _sgd}

SCHEDULERS = {
    "none": lambda cfg, phase, opt, epochs: None,
    "step": lambda cfg, phase, opt, epochs: torch.optim.lr_scheduler.StepLR(opt, cfg["step_size"], cfg["gamma"]),
    "multistep": lambda cfg, phase, opt, epochs: torch.optim.lr_scheduler.MultiStepLR(
        opt, list(phase_setting(cfg, phase, "milestones") or []), cfg["gamma"]),
    "exponential": lambda cfg, phase, opt, epochs: torch.optim.lr_scheduler.ExponentialLR(opt, cfg["gamma"]),
    "cosine": lambda cfg, phase, opt, epochs: torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs)),
}


def make_optimizer(optim_cfg: Dict[str, Any], phase: str, params: List[nn.Parameter]) -> torch.optim.Optimizer:
    return OPTIMIZERS[optim_cfg.get("optimizer", "adam")](optim_cfg, phase, params)


def make_scheduler(optim_cfg: Dict[str, Any], phase: str, optimizer, max_epochs: int):
    return SCHEDULERS[optim_cfg["scheduler"]](optim_cfg, phase, optimizer, max_epochs)


def build_optimizers(optim_cfg: Dict[str, Any], params: Dict[str, List[nn.Parameter]], max_epochs: int):
    """phase -> optimizer, and the schedules of those that have one (in phase order)."""
    optimizers = {name: make_optimizer(optim_cfg, name, p) for name, p in params.items()}
    scheds = [make_scheduler(optim_cfg, name, opt, max_epochs) for name, opt in optimizers.items()]
    return optimizers, [s for s in scheds if s is not None]


CONFIG_HYPERPARAMETERS = ("lr", "betas", "momentum", "weight_decay")  # what a resumed fit takes from the config


def follow_config(optim_cfg: Dict[str, Any], optimizers: Dict[str, torch.optim.Optimizer], epoch: int,
                  max_epochs: int) -> list:
    """Restored optimizers (phase -> optimizer) set to this config's rates, betas, momentum and weight
    decay, and the schedules of those that have one rebuilt from it at `epoch` (returned, in phase order).

    Lightning restores an optimizer's hyperparameters and its schedule with its moments, so a run
    resumed with other settings (a fork with a lower rate, or a rate drop added at the resumed epoch)
    would train on with the old ones and say nothing. Each schedule is stepped from epoch 0 as an
    uninterrupted run steps it: settings left unchanged come back exactly as restored."""
    schedules = []
    for name, opt in optimizers.items():
        wanted = make_optimizer(optim_cfg, name, [p for g in opt.param_groups for p in g["params"]]).defaults
        for group in opt.param_groups:
            group.update({k: wanted[k] for k in CONFIG_HYPERPARAMETERS if k in group and k in wanted})
            group["initial_lr"] = group["lr"]  # what a schedule scales from
        schedule = make_scheduler(optim_cfg, name, opt, max_epochs)
        if schedule is None:
            continue
        with warnings.catch_warnings():  # "step() before optimizer.step()": replayed, no step is skipped
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(epoch):
                schedule.step()
        schedules.append(schedule)
    return schedules
