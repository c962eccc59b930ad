"""Typed configuration as a user loads it: schema (lightning_aae/schema.py) <- YAML file <- command-line
dotlist, then checked against the registries of what implements each name.

A typo in a key, a wrong type or an impossible setting is one line naming the key, before any work starts.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from callbacks.figures import FIGURES, PROJECTIONS
from callbacks.preemption import signal_numbers

from .components import ACTIVATIONS, ARCHS, RNN_CELLS
from .sources import READERS
from .losses import NONNEGATIVE, RECONSTRUCTION_LOSSES, SPARSITY, SPARSITY_REDUCTIONS
from .optim import OPTIMIZERS, SCHEDULERS
from .priors import PRIORS
from .schedule import PHASES
from .steppers import STEPPERS
from .schema import (LOGGER_MODES, CallbacksConfig, CheckpointConfig, Config, ConfigError, DataConfig,  # noqa: F401
                     EvaluateConfig, FiguresConfig, LoggerConfig, ModelConfig, OptimConfig, PhaseOptimConfig,
                     PreemptionConfig, TrainerConfig)
from .variants import VARIANTS, CategoricalAAE


def _registries() -> dict:
    """Each name list is the registry of what implements it; nothing is listed twice."""
    return {"model.variant": VARIANTS, "model.arch": ARCHS, "model.prior": PRIORS,
            "model.recon_loss": RECONSTRUCTION_LOSSES, "model.activation": ACTIVATIONS,
            "model.code_activation": ACTIVATIONS, "model.rnn_cell": RNN_CELLS, "model.sparsity": SPARSITY,
            "model.sparsity_reduce": SPARSITY_REDUCTIONS, "model.nonnegative": NONNEGATIVE,
            "data.dataset": READERS, "optim.optimizer": OPTIMIZERS, "optim.scheduler": SCHEDULERS,
            "optim.stepper": STEPPERS, "callbacks.figures.kinds": FIGURES,
            "callbacks.figures.projection": PROJECTIONS}


def _one_line(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__


def _key_error(exc: OmegaConfBaseException, source: str) -> ConfigError:
    key = getattr(exc, "full_key", None)
    first = _one_line(exc)
    if "not in struct" in first or "Key '" in first and "not" in first:
        return ConfigError(f"unknown config key '{key}' (from {source})")
    if key:
        return ConfigError(f"invalid value for '{key}' (from {source}): {first}")
    return ConfigError(f"invalid config (from {source}): {first}")


def _read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    if data is None:
        raise ConfigError(f"config file {path} is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(data).__name__}")
    return OmegaConf.create(data)


def _check_choices(cfg: DictConfig) -> None:
    choices = {key: list(registry) for key, registry in _registries().items()}
    choices.update({"logger.mode": LOGGER_MODES, "callbacks.checkpoint.mode": ("min", "max")})
    for key, valid in choices.items():
        value = OmegaConf.select(cfg, key)
        for v in (value if key == "callbacks.figures.kinds" else [value]):
            if v not in valid:
                raise ConfigError(f"unknown {key} '{v}'; valid: {', '.join(valid)}")
    m, d, o = cfg.model, cfg.data, cfg.optim
    positive = {
        "model.latent_dim": m.latent_dim,
        "model.prior_std": m.prior_std,
        "data.batch_size": d.batch_size,
        "data.labeled_batch_size": d.labeled_batch_size,
        "optim.lr": o.lr,
        "trainer.log_every_n_steps": cfg.trainer.log_every_n_steps,
        "callbacks.figures.every_n_epochs": cfg.callbacks.figures.every_n_epochs,
        "callbacks.figures.tsne_points": cfg.callbacks.figures.tsne_points,
        "evaluate.parzen_samples": cfg.evaluate.parzen_samples,
    }
    positive.update({f"data.{key}": d[key] for key in ("val_size", "test_size", "image_size") if d[key] is not None})
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    non_negative = ["data.labels_per_class", "optim.momentum", "optim.weight_decay", "optim.grad_clip"] + [
        f"model.{key}" for key in ("dropout", "input_noise", "sparsity_weight", "nonnegative_weight", "category_noise",
                                   "category_noise_final", "category_noise_from", "category_noise_epochs",
                                   "category_balance", "category_confidence", "category_terms_from")]
    for key in non_negative:
        value = OmegaConf.select(cfg, key)
        if value is not None and value < 0:  # None: category_noise_final unscheduled
            raise ConfigError(f"{key} must not be negative, got {value}")
    for key in ("dropout", "input_mask", "input_dropout"):
        if not 0 <= m[key] < 1:
            raise ConfigError(f"model.{key} must be in [0, 1), got {m[key]}")
    _check_labeled(m, d.labels_per_class)
    _check_data(cfg)
    if not 0 < m.sparsity_target < 1:
        raise ConfigError(f"model.sparsity_target must be in (0, 1), got {m.sparsity_target}")
    for name in ("hidden_dims", "disc_hidden_dims"):
        if any(h <= 0 for h in m[name]):
            raise ConfigError(f"model.{name} must hold positive sizes, got {list(m[name])}")
    _check_run(cfg)
    _check_variant(cfg)
    _check_optim(cfg)


def _check_labeled(m: DictConfig, labels_per_class: int) -> None:
    """The augmentations of the labeled batch."""
    if not 0 <= m.labeled_shift < 14:
        raise ConfigError(f"model.labeled_shift must be a pixel count in [0, 13], got {m.labeled_shift}")
    for key in ("labeled_shift", "labeled_rotate", "labeled_elastic"):
        if m[key] and not labels_per_class:
            raise ConfigError(f"model.{key} augments the labeled batch: it needs data.labels_per_class > 0")
    if not 0 <= m.labeled_rotate <= 180:
        raise ConfigError(f"model.labeled_rotate must be degrees in [0, 180], got {m.labeled_rotate}")
    if m.labeled_elastic < 0 or not m.labeled_elastic_sigma > 0:
        raise ConfigError(f"model.labeled_elastic must not be negative and model.labeled_elastic_sigma must be "
                          f"positive, got {m.labeled_elastic} and {m.labeled_elastic_sigma}")


def _check_data(cfg: DictConfig) -> None:
    """Settings of the data source; what the files hold is checked when they are read (sources.py)."""
    d = cfg.data
    if d.dataset in ("array", "folder") and not d.path:
        raise ConfigError(f"data.dataset={d.dataset} reads {'an .npz file' if d.dataset == 'array' else 'a folder'}: "
                          "set data.path")
    if d.path and d.dataset not in ("array", "folder"):
        raise ConfigError(f"data.path is read by data.dataset=array or folder, not {d.dataset}")
    if d.image_size is not None and d.dataset != "folder":
        raise ConfigError(f"data.image_size resizes the images of data.dataset=folder, not {d.dataset}")
    if d.svhn_extra and d.dataset != "svhn":
        raise ConfigError(f"data.svhn_extra adds SVHN's extra images; data.dataset is {d.dataset}")


def _check_run(cfg: DictConfig) -> None:
    p = cfg.callbacks.preemption
    try:
        signal_numbers(list(p.signals) + ([p.requeue_signal] if p.requeue_signal else []))
    except ValueError as exc:
        raise ConfigError(f"callbacks.preemption: {exc}") from None
    if not cfg.ddp_timeout_s > 0:
        raise ConfigError(f"ddp_timeout_s must be positive, got {cfg.ddp_timeout_s}")
    if cfg.num_threads is not None and cfg.num_threads < 1:
        raise ConfigError(f"num_threads must be at least 1, got {cfg.num_threads}")


def _check_optim(cfg: DictConfig) -> None:
    any_milestones = False
    for phase in ["", *(f".{name}" for name in PHASES)]:  # the shared settings, then each phase's
        betas = OmegaConf.select(cfg, f"optim{phase}.betas")
        if betas is not None and (len(betas) != 2 or not all(0 <= b < 1 for b in betas)):
            raise ConfigError(f"optim{phase}.betas must be two numbers in [0, 1), got {list(betas)}")
        milestones = OmegaConf.select(cfg, f"optim{phase}.milestones")
        if milestones is not None and (any(e < 1 for e in milestones) or list(milestones) != sorted(set(milestones))):
            raise ConfigError(f"optim{phase}.milestones must be increasing epochs >= 1, got {list(milestones)}")
        any_milestones = any_milestones or bool(milestones)
    if cfg.optim.scheduler == "multistep" and not any_milestones:
        raise ConfigError("optim.scheduler=multistep needs optim.milestones (epochs at which lr is multiplied by gamma)")


def _check_variant(cfg: DictConfig) -> None:
    """Settings that only make sense together; which variants and priors they concern is read off
    the registries (a variant's `categories`, a prior's `ten_parts`)."""
    m, labels = cfg.model, cfg.data.labels_per_class
    parts = [name for name, cls in PRIORS.items() if cls.ten_parts]
    if m.prior in parts and m.latent_dim != 2:
        raise ConfigError(f"model.prior={m.prior} is 2-D; set model.latent_dim=2 (got {m.latent_dim})")
    if m.variant == "supervised" and labels:
        raise ConfigError("model.variant=supervised trains on every label; set data.labels_per_class=0")
    if m.variant == "semi_supervised" and not labels:
        raise ConfigError("model.variant=semi_supervised needs data.labels_per_class > 0 (10 or 100 in the paper)")
    if VARIANTS[m.variant].categories == "clusters":
        if labels:
            raise ConfigError(f"model.variant={m.variant} uses no labels; set data.labels_per_class=0")
        if m.n_clusters < 2:
            raise ConfigError(f"model.n_clusters must be at least 2, got {m.n_clusters}")
    categorical = [name for name, cls in VARIANTS.items() if issubclass(cls, CategoricalAAE)]
    if m.category_noise_final is None and (m.category_noise_from or m.category_noise_epochs):
        raise ConfigError("model.category_noise_from / category_noise_epochs schedule the noise toward "
                          "model.category_noise_final: set it too")
    if m.category_noise_final is not None and not (m.category_noise_from or m.category_noise_epochs):
        raise ConfigError("model.category_noise_final from epoch 0 on is model.category_noise: set "
                          "model.category_noise_from or model.category_noise_epochs, or only model.category_noise")
    if (m.category_noise or m.category_noise_final) and m.variant not in categorical:
        raise ConfigError(f"model.category_noise applies to the categorical discriminator of {', '.join(categorical)}, "
                          f"not model.variant={m.variant}")
    if (m.category_balance or m.category_confidence) and m.variant not in categorical:
        raise ConfigError(f"model.category_balance / category_confidence apply to the categories of {', '.join(categorical)}, "
                          f"not model.variant={m.variant}")
    if m.category_terms_from and not (m.category_balance or m.category_confidence):
        raise ConfigError("model.category_terms_from says when model.category_balance / category_confidence begin: "
                          "set one of them")
    if m.label_regularized and (m.variant != "aae" or m.prior not in parts):
        raise ConfigError(f"model.label_regularized needs model.variant=aae and model.prior={' or '.join(parts)}")
    if m.code_activation != "identity" and not VARIANTS[m.variant].plain_code:
        plain = [name for name, cls in VARIANTS.items() if cls.plain_code]
        raise ConfigError(f"model.code_activation applies where the code is the encoder's output ({', '.join(plain)}), "
                          f"not model.variant={m.variant}")
    if m.sparsity == "kl" and m.code_activation != "sigmoid":
        raise ConfigError("model.sparsity=kl compares mean activations in (0, 1) with the target: set model.code_activation=sigmoid")
    if m.batch_norm and m.arch not in ("mlp", "conv"):
        raise ConfigError(f"model.batch_norm applies to arch mlp or conv, not model.arch={m.arch}")
    if m.variant == "vae" and (m.prior != "gaussian" or m.prior_std != 1.0):
        raise ConfigError("model.variant=vae matches N(0, I): set model.prior=gaussian and model.prior_std=1.0")


def load_config(path: Optional[str | os.PathLike] = None, overrides: Optional[List[str]] = None) -> DictConfig:
    """Schema <- YAML file <- dotlist overrides, validated and resolved.

    Raises ConfigError (one line naming the key or file) on any problem.
    """
    cfg = OmegaConf.structured(Config)
    sources = []
    if path is not None:
        sources.append((_read_yaml(Path(path)), str(path)))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value")
        key = item.split("=", 1)[0]
        try:
            sources.append((OmegaConf.from_dotlist([item]), f"override {key}"))
        except OmegaConfBaseException as exc:
            raise ConfigError(f"cannot parse override '{item}': {_one_line(exc)}") from None
    for src, name in sources:
        try:
            cfg = OmegaConf.merge(cfg, src)
        except OmegaConfBaseException as exc:
            raise _key_error(exc, name) from None
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise _key_error(exc, "interpolation") from None
    if list(cfg.callbacks.figures.kinds) == ["all"]:
        cfg.callbacks.figures.kinds = list(FIGURES)
    _check_choices(cfg)
    return cfg
