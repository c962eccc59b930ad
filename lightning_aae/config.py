"""Typed configuration: schema (dataclasses) <- YAML file <- command-line dotlist.

Every key a user may set is declared here, so a typo or a wrong type is caught before any
work starts and reported as one line naming the key.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

LOGGER_MODES = ("auto", "offline", "online", "disabled")


def _registries() -> dict:
    """Each name list is the registry of what implements it; nothing is listed twice."""
    from callbacks.figures import FIGURES

    from .components import ACTIVATIONS, ARCHS, RNN_CELLS
    from .data import DATASETS
    from .losses import RECONSTRUCTION_LOSSES, SPARSITY, SPARSITY_REDUCTIONS
    from .module import NONNEGATIVE
    from .optim import OPTIMIZERS, SCHEDULERS
    from .priors import PRIORS
    from .schedule import STEPPERS
    from .variants import VARIANTS

    from callbacks.figures import PROJECTIONS

    return {"model.variant": VARIANTS, "model.arch": ARCHS, "model.prior": PRIORS,
            "model.recon_loss": RECONSTRUCTION_LOSSES, "model.activation": ACTIVATIONS,
            "model.code_activation": ACTIVATIONS, "model.rnn_cell": RNN_CELLS, "model.sparsity": SPARSITY,
            "model.sparsity_reduce": SPARSITY_REDUCTIONS, "model.nonnegative": NONNEGATIVE,
            "data.dataset": DATASETS, "optim.optimizer": OPTIMIZERS, "optim.scheduler": SCHEDULERS,
            "optim.stepper": STEPPERS, "callbacks.figures.kinds": FIGURES,
            "callbacks.figures.projection": PROJECTIONS}


class ConfigError(ValueError):
    """A problem with the user's configuration; its message is one line naming the culprit."""


@dataclass
class ModelConfig:
    variant: str = "aae"
    arch: str = "mlp"
    latent_dim: int = 2
    hidden_dims: List[int] = field(default_factory=lambda: [1000, 1000])
    disc_hidden_dims: List[int] = field(default_factory=lambda: [1000, 1000])
    dropout: float = 0.0
    # hidden layers of the MLP encoder/decoder (relu, selu with LeCun-normal init, sigmoid, tanh,
    # identity); discriminators stay ReLU; arch=linear is the MLP with identity everywhere
    activation: str = "relu"
    # on the encoder's output, for variants whose code is that output (autoencoder, aae, supervised):
    # identity, relu (the sparse L1 guide), sigmoid (needed by sparsity=kl)
    code_activation: str = "identity"
    conv_channels: List[int] = field(default_factory=lambda: [32, 64])  # arch=conv
    rnn_cell: str = "gru"  # arch=rnn: gru | lstm, one layer per hidden_dims entry, rows as time steps
    # never in a discriminator. arch=conv: encoder and decoder; arch=mlp: the encoder's every layer
    # including its output layer (the paper's clustering encoder: "crucial")
    batch_norm: bool = False
    prior: str = "gaussian"
    prior_std: float = 1.0
    label_regularized: bool = False  # aae: the discriminator also sees the digit (paper Fig. 4)
    n_clusters: int = 16  # clustering, dim_reduction
    # semi_supervised, clustering, dim_reduction: std of Gaussian noise added to both inputs of the
    # categorical discriminator (instance noise; not in the paper). 0 = the paper's exact one-hots.
    category_noise: float = 0.0
    # a schedule of that noise (ours): category_noise until epoch category_noise_from, then linear
    # to category_noise_final over category_noise_epochs epochs (0: a step) and held there. None: none
    category_noise_final: Optional[float] = None
    category_noise_from: int = 0
    category_noise_epochs: int = 0
    # semi_supervised, clustering, dim_reduction (ours): weight of log K - H(batch mean of q(y|x)) in
    # the reconstruction loss, so no category is left empty; 0 = the paper (the adversary alone)
    category_balance: float = 0.0
    # (ours) weight of the batch's mean entropy of q(y|x) in the same loss: confident categories
    category_confidence: float = 0.0
    # (ours) the epoch from which category_balance and category_confidence apply (before it: the paper)
    category_terms_from: int = 0
    head_distance: float = 2.0  # dim_reduction: cluster heads closer than this are penalised
    head_penalty: float = 1.0  # dim_reduction: weight of that hinge penalty
    kl_weight: float = 1.0  # vae
    recon_loss: str = "mse"
    # std of Gaussian noise added to the encoder's input in training only; the reconstruction
    # target stays the clean image and evaluation sees clean images (also the denoising option)
    input_noise: float = 0.0
    # training-only corruptions of the encoder's input, the target staying clean: the share of pixels
    # zeroed (masking noise, the denoising guide) and dropout on the input (zeroed and the rest scaled
    # by 1/(1-p): the paper's clustering encoder)
    input_mask: float = 0.0
    input_dropout: float = 0.0
    # semi-supervised: each labeled image shifted by a random whole number of pixels, up to this many
    # in each direction (zero fill), every time it is drawn: augmentation of the labeled batch (ours)
    labeled_shift: int = 0
    # code sparsity added to the reconstruction loss: l1 (weight x mean over the batch of |code|
    # summed over units) or kl (weight x KL(target || each unit's mean activation); sigmoid code)
    sparsity: str = "none"
    sparsity_weight: float = 0.0
    sparsity_target: float = 0.05
    sparsity_reduce: str = "sum"  # over code units: sum | mean
    # encoder/decoder weight matrices: penalty (weight/2 x sum of squared negative entries) or
    # project (negative entries set to 0 after every optimizer step)
    nonnegative: str = "none"
    nonnegative_weight: float = 1.0


@dataclass
class PhaseOptimConfig:
    """Optimizer of one phase; unset values fall back to the shared ones under `optim`."""

    lr: Optional[float] = None
    betas: Optional[List[float]] = None
    weight_decay: Optional[float] = None
    grad_clip: Optional[float] = None
    momentum: Optional[float] = None
    milestones: Optional[List[int]] = None


@dataclass
class OptimConfig:
    optimizer: str = "adam"  # adam | sgd (with momentum, the paper's appendix)
    stepper: str = "eager"  # how a training step runs its phases (lightning_aae/schedule.py)
    lr: float = 1e-3
    momentum: float = 0.9  # optimizer=sgd
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # max gradient norm per phase; 0 disables clipping
    # Adam's fused kernel (one pass over all parameters instead of a Python loop over them):
    # null = on where torch has it for the device (CPU, CUDA); false = torch's default Adam
    fused: Optional[bool] = None
    scheduler: str = "none"
    step_size: int = 10  # epochs, for scheduler=step
    gamma: float = 0.5  # decay factor for step / multistep / exponential
    milestones: List[int] = field(default_factory=list)  # epochs, for scheduler=multistep
    recon: PhaseOptimConfig = field(default_factory=PhaseOptimConfig)
    disc: PhaseOptimConfig = field(default_factory=PhaseOptimConfig)
    gen: PhaseOptimConfig = field(default_factory=PhaseOptimConfig)
    classify: PhaseOptimConfig = field(default_factory=PhaseOptimConfig)


@dataclass
class DataConfig:
    root: str = "${oc.env:AAE_DATA_DIR,data}"
    dataset: str = "mnist"  # mnist | fashion_mnist (IDX files under <root>/MNIST/raw or <root>/FashionMNIST/raw)
    download: bool = True
    batch_size: int = 100  # per device
    labeled_batch_size: int = 100  # per device, for variants that train on labels
    val_size: int = 10000
    labels_per_class: int = 0
    split_seed: int = 0
    on_device: bool = True  # keep the tensors on the accelerator


@dataclass
class LoggerConfig:
    enabled: bool = True
    mode: str = "auto"  # auto: online when logged in to W&B, offline otherwise
    project: str = "lightning-aae"
    entity: Optional[str] = None
    name: Optional[str] = None
    group: Optional[str] = None  # defaults to the variant
    tags: List[str] = field(default_factory=list)
    save_dir: str = "."  # W&B writes its runs under <save_dir>/wandb
    init_timeout: float = 30.0  # seconds W&B may take to start online before the run goes on offline


@dataclass
class CheckpointConfig:
    monitor: str = "val/recon_loss"
    mode: str = "min"
    save_top_k: int = 1
    save_last: bool = True


@dataclass
class FiguresConfig:
    enabled: bool = True
    every_n_epochs: int = 1
    n_images: int = 10  # digits per row in reconstruction / sample grids
    max_points: int = 5000  # codes in the latent scatterplot
    # codes wider than 2-D are drawn projected: pca (with the prior's samples behind) or tsne (scikit-learn,
    # on a seeded subsample of tsne_points codes)
    projection: str = "pca"
    tsne_points: int = 2000
    # figures drawn where they apply to the variant: reconstructions, prior_samples, latent_scatter,
    # manifold, style_grid, classification, filters, accuracy_curve, training_health
    kinds: List[str] = field(default_factory=lambda: list(_registries()["callbacks.figures.kinds"]))


@dataclass
class PreemptionConfig:
    # signals that, during fit, finish the step, save checkpoints/last.ckpt and exit with 128 + signal
    # (one the parent process ignores, as nohup does SIGHUP, stays ignored)
    signals: List[str] = field(default_factory=lambda: ["SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2"])
    # under SLURM, this one also requeues the job (scontrol requeue); run it with ckpt_path=auto
    requeue_signal: Optional[str] = "SIGUSR1"


@dataclass
class CallbacksConfig:
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    figures: FiguresConfig = field(default_factory=FiguresConfig)
    preemption: PreemptionConfig = field(default_factory=PreemptionConfig)
    progress_bar_refresh_rate: int = 20


def _trainer_field_type(annotation: Any) -> Any:
    """Map a Trainer argument's annotation to one OmegaConf can check, or Any."""
    simple = (int, float, bool, str)
    if annotation in simple:
        return annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Union and len(args) == 2 and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        if inner in simple:
            return Optional[inner]
    return Any


# Trainer arguments built by train() itself, never from the config.
_TRAINER_BUILT_HERE = {"self", "logger", "callbacks", "plugins", "default_root_dir"}
# Our defaults where they differ from Lightning's.
_TRAINER_DEFAULTS = {"max_epochs": 50, "log_every_n_steps": 50, "num_sanity_val_steps": 0}


def _make_trainer_config() -> type:
    import lightning as L

    fields = []
    for name, p in inspect.signature(L.Trainer.__init__).parameters.items():
        if name in _TRAINER_BUILT_HERE or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        default = _TRAINER_DEFAULTS.get(name, p.default)
        if not (default is None or isinstance(default, (int, float, str, bool))):
            continue
        fields.append((name, _trainer_field_type(p.annotation), field(default=default)))
    return dataclasses.make_dataclass("TrainerConfig", fields)


TrainerConfig = _make_trainer_config()


@dataclass
class EvaluateConfig:
    """What train() evaluates after its test pass, on the checkpoint it tested."""

    parzen: bool = False  # Parzen-window log-likelihood of the test images (sigma chosen on validation)
    parzen_samples: int = 10000  # generated samples the window is built on


@dataclass
class Config:
    seed: int = 42
    output_dir: str = "runs"
    # a checkpoint file; "last": the newest last.ckpt of this variant (or logger.name), which must exist;
    # "auto": the same if there is one, else a new run (for jobs that are requeued or restarted)
    ckpt_path: Optional[str] = None
    num_threads: Optional[int] = None  # torch CPU threads for this run (null: torch's default)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


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
        "data.val_size": d.val_size,
        "optim.lr": o.lr,
        "trainer.log_every_n_steps": cfg.trainer.log_every_n_steps,
        "callbacks.figures.every_n_epochs": cfg.callbacks.figures.every_n_epochs,
        "callbacks.figures.tsne_points": cfg.callbacks.figures.tsne_points,
        "evaluate.parzen_samples": cfg.evaluate.parzen_samples,
    }
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
    if not 0 <= m.labeled_shift < 14:
        raise ConfigError(f"model.labeled_shift must be a pixel count in [0, 13], got {m.labeled_shift}")
    if m.labeled_shift and not d.labels_per_class:
        raise ConfigError("model.labeled_shift shifts the labeled batch: it needs data.labels_per_class > 0")
    if not 0 < m.sparsity_target < 1:
        raise ConfigError(f"model.sparsity_target must be in (0, 1), got {m.sparsity_target}")
    for name in ("hidden_dims", "disc_hidden_dims"):
        if any(h <= 0 for h in m[name]):
            raise ConfigError(f"model.{name} must hold positive sizes, got {list(m[name])}")
    _check_run(cfg)
    _check_variant(cfg)
    _check_optim(cfg)


def _check_run(cfg: DictConfig) -> None:
    from callbacks.preemption import signal_numbers

    p = cfg.callbacks.preemption
    try:
        signal_numbers(list(p.signals) + ([p.requeue_signal] if p.requeue_signal else []))
    except ValueError as exc:
        raise ConfigError(f"callbacks.preemption: {exc}") from None
    if cfg.num_threads is not None and cfg.num_threads < 1:
        raise ConfigError(f"num_threads must be at least 1, got {cfg.num_threads}")


def _check_optim(cfg: DictConfig) -> None:
    from .schedule import PHASES

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
    from .priors import PRIORS
    from .variants import VARIANTS, CategoricalAAE

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
    _check_choices(cfg)
    return cfg
