"""The configuration schema: every key a user may set, with its type and default, as dataclasses.

It imports nothing from the project: which names are valid (variants, priors, figures, ...) is checked
against the registries one layer up, in lightning_aae/config.py, which also reads YAML and overrides.
"""
from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass, field
from typing import Any, List, Optional

LOGGER_MODES = ("auto", "offline", "online", "disabled")


class ConfigError(ValueError):
    """A problem with the user's configuration; its message is one line naming the culprit."""


@dataclass
class ModelConfig:
    variant: str = "aae"
    arch: str = "mlp"
    # set by train() from the data, never by hand: the images' [channels, height, width] and the number of
    # classes (0: unlabeled); null in a checkpoint written before they were stored means MNIST's [1, 28, 28], 10
    image_shape: Optional[List[int]] = None
    n_classes: Optional[int] = None
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
    # semi-supervised (ours), after the shift: each labeled image rotated by a random angle in
    # [-labeled_rotate, labeled_rotate] degrees, and displaced by an elastic field of strength
    # labeled_elastic pixels smoothed by a Gaussian of labeled_elastic_sigma pixels (Simard et al., 2003:
    # 34 and 4), drawn anew every time it is drawn; 0 = off
    labeled_rotate: float = 0.0
    labeled_elastic: float = 0.0
    labeled_elastic_sigma: float = 4.0
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
    # how a training step runs its phases: eager (lightning_aae/schedule.py), compiled (one torch.compile-d
    # function of tensors) or cuda_graph (that function captured as CUDA graphs; lightning_aae/compiled.py)
    stepper: str = "eager"
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
    # mnist | fashion_mnist (IDX files under <root>/MNIST/raw or <root>/FashionMNIST/raw) | svhn (.mat files
    # under <root>/SVHN) | array (an .npz file: data.path) | folder (images, one subfolder per class: data.path)
    dataset: str = "mnist"
    path: Optional[str] = None  # array, folder: the file or folder
    image_size: Optional[int] = None  # folder: every image resized to this many pixels square (null: as they are)
    svhn_extra: bool = False  # svhn: extra_32x32.mat joins the training images (531,131 more)
    download: bool = True
    batch_size: int = 100  # per device
    labeled_batch_size: int = 100  # per device, for variants that train on labels
    val_size: Optional[int] = None  # null: a sixth of the training images, at most 10,000 (MNIST: 10,000)
    # where the data has no test set of its own: a seeded, class-balanced test split of this size
    # (null: a sixth of the images, at most 10,000)
    test_size: Optional[int] = None
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
    kinds: List[str] = field(default_factory=lambda: ["all"])  # "all": every figure in callbacks.figures.FIGURES


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
    # several devices: how long a collective may wait for a process that died or hung before every
    # surviving process stops (the process group's timeout)
    ddp_timeout_s: float = 300.0
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
