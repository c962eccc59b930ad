"""The LightningModule every variant is: networks, the interface callbacks use, and thin hooks that
hand each training batch to the stepper (lightning_aae/schedule.py) and each evaluation batch to the
variant's metric bundles (lightning_aae/metrics.py).

Cross-cutting concerns live elsewhere: the divergence check and the RNG state in checkpoints are
callbacks (callbacks/guards.py), optimizers and schedules are built by lightning_aae/optim.py.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .components import MNIST_SHAPE, MLPDiscriminator, build_decoder, build_encoder, image_shape_of
from .losses import IMAGE_MAPS, SPARSITY, negative_weight_penalty
from .metrics import EvalBundle, ReconstructionMetrics, RunningMeans, compute_all
from .optim import build_optimizers, follow_config, phase_setting
from .priors import make_prior
from .schedule import StepBatch
from .steppers import make_stepper


def plain(cfg: Any) -> Dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def model_defaults() -> Dict[str, Any]:
    """Every model key with its default: checkpoints written before a key existed load with it."""
    import dataclasses

    from .schema import ModelConfig

    return dataclasses.asdict(ModelConfig())


def one_hot(labels: torch.Tensor, n: int) -> torch.Tensor:
    return F.one_hot(labels.long(), n).float()


class CodeInterface:
    """Sizes and the interface callbacks, scripts and notebooks use (no Trainer needed): `encode`,
    `style`, `decode`, `reconstruct`, `sample_prior`, `sample`, `forward`, `prior`, and `classify`
    where `categories` is set. Needs `encoder`, `decoder`, `prior` and `latent_dim`."""

    label_aware = False  # decode/sample take digit (or category) labels
    plain_code = True  # the code is the encoder's output itself (not heads, not moments)
    categories: Optional[str] = None  # "digits" or "clusters" where classify(x) gives q(y|x)

    # ---- sizes ------------------------------------------------------------------------------
    @property
    def n_categories(self) -> int:
        """The labels decode/sample/classify take: the data's classes (the clustering variants: clusters)."""
        return self.n_classes

    def encoder_out_dim(self) -> int:
        return self.latent_dim

    def decoder_in_dim(self) -> int:
        return self.latent_dim

    def discriminator_dims(self) -> Dict[str, int]:
        """Name -> input size of each discriminator; none for the non-adversarial variants."""
        return {}

    # ---- interface --------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The continuous code (the style, for variants that also infer a category)."""
        return self.encoder(x)

    def style(self, x: torch.Tensor) -> torch.Tensor:
        """The part of the code that decode(style, labels) combines with a label."""
        return self.encode(x)

    def decoder_input(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return z

    def decode(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Images in [0, 1], shape [B, C*H*W] (`image_shape`)."""
        return self.to_image(self.decoder(self.decoder_input(z, labels)))

    def to_image(self, logits: torch.Tensor) -> torch.Tensor:
        """The decoder's output as images in [0, 1] (a sigmoid, or a clamp for mse_linear)."""
        return IMAGE_MAPS[self.model_cfg["recon_loss"]](logits)

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """One encoder pass: 'code' (what `encode` gives), 'logits' (the reconstruction's pixel
        logits) and, where the variant has categories, 'probs' (q(y|x))."""
        z = self.encode(x)
        return {"code": z, "logits": self.decoder(self.decoder_input(z, labels))}

    def reconstruct(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.to_image(self(x, labels)["logits"])

    def sample_prior(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if generator is not None:
            return self.prior.sample(n, device="cpu", generator=generator).to(self.device)
        return self.prior.sample(n, device=self.device)

    def sample(self, n: int, labels: Optional[torch.Tensor] = None,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Decoded draws from the prior (for `labels`, where the variant knows categories)."""
        if self.label_aware and labels is None:
            labels = torch.randint(0, self.n_categories, (n,), generator=generator).to(self.device)
        return self.decode(self.sample_prior(n, generator), labels)


def warp_images(x: torch.Tensor, degrees: float, alpha: float, sigma: float,
                shape: Tuple[int, int, int] = MNIST_SHAPE) -> torch.Tensor:
    """Each [N, C*H*W] image rotated by its own angle in [-degrees, degrees] and displaced by its own elastic
    field (uniform noise in [-1, 1] per pixel and axis, Gaussian-blurred with sigma, times alpha pixels),
    sampled bilinearly with zero fill (torch's affine_grid and grid_sample, torchvision's gaussian_blur)."""
    from torchvision.transforms.v2.functional import gaussian_blur

    n, (c, h, w) = len(x), shape
    angle = torch.deg2rad((torch.rand(n, device=x.device) * 2 - 1) * degrees)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    if alpha:
        noise = torch.rand(n, 2, h, w, device=x.device) * 2 - 1
        kernel = 2 * int(math.ceil(3 * sigma)) + 1  # cut to the image where it is smaller (reflect padding)
        field = gaussian_blur(noise, [min(kernel, 2 * w - 1), min(kernel, 2 * h - 1)], [sigma, sigma]) * alpha
        field = torch.stack([field[:, 0] * 2 / w, field[:, 1] * 2 / h], 1)  # -> [-1, 1] units
        grid = grid + field.permute(0, 2, 3, 1)
    return F.grid_sample(x.view(n, c, h, w), grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False).reshape(n, -1)


def shift_images(x: torch.Tensor, s: int, shape: Tuple[int, int, int] = MNIST_SHAPE) -> torch.Tensor:
    """Each [N, C*H*W] image shifted by its own random whole number of pixels in [-s, s] along each axis,
    the pixels shifted in being 0."""
    n, (c, h, w) = len(x), shape
    padded = F.pad(x.view(n, c, h, w), (s, s, s, s))
    dy, dx = torch.randint(0, 2 * s + 1, (2, n, 1), device=x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[torch.arange(n, device=x.device)[:, None, None, None], chans, rows, cols].reshape(n, -1)


class InputCorruption:
    """The training-time corruption of the encoder's input (the `corrupt` hook of the schedule) and
    its seeded view for figures. Needs `model_cfg` and `reconstruct`."""

    def corrupt(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The encoder's training input (x itself when no corruption is set), in this order:
        model.input_dropout (pixels zeroed with that probability, the rest scaled by 1/(1-p), as a
        dropout layer on the input does), model.input_mask (pixels zeroed, no scaling: masking
        noise), model.input_noise (Gaussian noise of that std). The target stays the clean x."""
        m = self.model_cfg

        def draw(like: torch.Tensor, normal: bool) -> torch.Tensor:
            if generator is None:  # the training stream
                return torch.randn_like(like) if normal else torch.rand_like(like)
            fn = torch.randn if normal else torch.rand
            return fn(like.shape, generator=generator, dtype=like.dtype).to(like.device)

        for rate, scale in ((m["input_dropout"], True), (m["input_mask"], False)):
            if rate:
                keep = draw(x, False) >= rate
                x = x * keep / (1 - rate) if scale else x * keep
        if m["input_noise"]:
            x = x + m["input_noise"] * draw(x, True)
        return x

    def augment_labeled(self, x: torch.Tensor) -> torch.Tensor:
        """The labeled batch as the classification phase sees it (before `corrupt`): each image shifted
        by a random whole number of pixels in [-s, s] along each axis, s = model.labeled_shift, the
        pixels shifted in being 0. x itself when s is 0."""
        m = self.model_cfg
        if m["labeled_shift"]:
            x = shift_images(x, m["labeled_shift"], self.image_shape)
        if m["labeled_rotate"] or m["labeled_elastic"]:
            x = warp_images(x, m["labeled_rotate"], m["labeled_elastic"], m["labeled_elastic_sigma"], self.image_shape)
        return x

    def corrupts(self) -> bool:
        m = self.model_cfg
        return bool(m["input_dropout"] or m["input_mask"] or m["input_noise"])

    def corrupted_view(self, x: torch.Tensor, seed: int, labels: Optional[torch.Tensor] = None):
        """For figures: x corrupted as in training but from a seeded generator (clamped to [0, 1] to
        be shown), and the reconstruction of the corrupted input."""
        noisy = self.corrupt(x, generator=torch.Generator().manual_seed(seed))
        return noisy.clamp(0, 1), self.reconstruct(noisy, labels)


class AutoencoderModule(CodeInterface, InputCorruption, L.LightningModule):
    """The LightningModule of every variant: networks, hyperparameters (the run config among them),
    the hooks the schedule calls, and Lightning's hooks, which hand batches to the stepper and to
    the variant's metric bundles."""

    variant = "autoencoder"  # set by the registry in variants.py

    def __init__(self, model: Dict[str, Any], optim: Dict[str, Any], run_config: Optional[Dict[str, Any]] = None,
                 **legacy: Any):  # checkpoints before 2026-11-23 also carry log_every_n_steps
        super().__init__()
        model, optim = {**model_defaults(), **plain(model)}, plain(optim)
        run_config = plain(run_config) if run_config is not None else None
        self.save_hyperparameters({"variant": self.variant, "model": model, "optim": optim, "run_config": run_config})
        self.automatic_optimization = False
        self.model_cfg, self.optim_cfg = model, optim
        self.latent_dim = model["latent_dim"]
        self.image_shape = image_shape_of(model)  # [C, H, W]; MNIST's for checkpoints from before it was stored
        self.n_classes = 10 if model["n_classes"] is None else model["n_classes"]  # 0: the data has no labels
        self.prior = make_prior(model["prior"], self.latent_dim, model["prior_std"])
        self.encoder = build_encoder(model, self.encoder_out_dim())
        self.decoder = build_decoder(model, self.decoder_in_dim())
        self.discriminators = nn.ModuleDict({
            name: MLPDiscriminator(dim, model["disc_hidden_dims"], model["dropout"])
            for name, dim in self.discriminator_dims().items()})
        self.eval_metrics = nn.ModuleDict({stage: nn.ModuleList(self.metric_bundles(stage)) for stage in ("val", "test")})
        self.running = RunningMeans()
        self.stepper = None  # built with the optimizers
        # what a test pass reports as: "test" (the chosen checkpoint) or "test_last" (the final weights)
        self.test_name = "test"
        self.constrain("init")

    # ---- hooks of the schedule (and `corrupt`, from InputCorruption) -------------------------
    def training_forward(self, x: torch.Tensor, y: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The reconstruction phase's pass; y is the digit (-1 where hidden), used only by decoders that take it."""
        return self(x, y)

    def code_penalties(self, batch: StepBatch, out: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Terms added to the reconstruction loss; they see the batch (input and target) and the pass.
        Here: code sparsity (model.sparsity: l1 or kl, weight model.sparsity_weight) and the
        negative-weight penalty (model.nonnegative=penalty, weight model.nonnegative_weight)."""
        m, terms = self.model_cfg, {}
        if m["sparsity"] != "none":
            terms["sparsity"] = m["sparsity_weight"] * SPARSITY[m["sparsity"]](out["code"], m)
        if m["nonnegative"] == "penalty":
            terms["nonnegative"] = m["nonnegative_weight"] * negative_weight_penalty(self.constrained_weights())
        return terms

    def constrained_weights(self) -> List[nn.Parameter]:
        """What model.nonnegative keeps >= 0: the encoder's and decoder's weight matrices (not biases)."""
        return [p for n, p in [*self.encoder.named_parameters(), *self.decoder.named_parameters()]
                if p.dim() >= 2 and n.rsplit(".", 1)[-1].startswith("weight")]

    @torch.no_grad()
    def constrain(self, phase: str) -> None:
        """Called after each optimizer step (and once at construction, phase "init"): with
        model.nonnegative=project, the negative weights are set to 0."""
        if self.model_cfg["nonnegative"] == "project":
            for w in self.constrained_weights():
                w.clamp_(min=0)

    def adversary_pairs(self, batch: StepBatch) -> Dict[str, tuple]:
        """Discriminator name -> (codes with gradient to the encoder, samples of the target distribution)."""
        return {}

    def phase_params(self) -> Dict[str, List[nn.Parameter]]:
        """Phase name -> the parameters its optimizer steps; the phases a variant has are these keys."""
        params = {"recon": [*self.encoder.parameters(), *self.decoder.parameters()]}
        if len(self.discriminators):
            params["disc"] = list(self.discriminators.parameters())
            params["gen"] = list(self.encoder.parameters())
        return params

    def metric_bundles(self, stage: str) -> List[EvalBundle]:
        return [ReconstructionMetrics(self.latent_dim, self.model_cfg["recon_loss"])]

    # ---- Lightning: training ----------------------------------------------------------------
    def configure_optimizers(self):
        params = self.phase_params()
        max_epochs = int(self.trainer.max_epochs or 1) if self._trainer is not None else 1
        optimizers, scheds = build_optimizers(self.optim_cfg, params, max_epochs)
        self._phase_of_optimizer = {id(opt): name for name, opt in optimizers.items()}  # by name, not position
        self.stepper = make_stepper(
            self.optim_cfg.get("stepper", "eager"), params=params,
            clip_norms={name: phase_setting(self.optim_cfg, name, "grad_clip") for name in params},
            backward=self.manual_backward, toggle=self.toggled_optimizer,
            clip=lambda opt, _, norm: self.clip_gradients(opt, gradient_clip_val=norm, gradient_clip_algorithm="norm"))
        return (list(optimizers.values()), scheds) if scheds else list(optimizers.values())

    def optimizers_by_phase(self) -> Dict[str, Any]:
        opts = self.optimizers()
        return {self._phase_of_optimizer[id(o.optimizer)]: o for o in (opts if isinstance(opts, list) else [opts])}

    def step_batch(self, batch) -> StepBatch:
        return StepBatch.from_loader(batch, self.corrupt, self.augment_labeled)

    def training_step(self, batch, batch_idx):
        stats = self.stepper.step(self, self.step_batch(batch), self.optimizers_by_phase())
        means = self.running.add(stats, self.trainer.log_every_n_steps)
        if means is not None:
            self.log_dict({f"train/{n}": v for n, v in means.items()}, on_step=True, on_epoch=False)
            self.log("train/recon_loss_step", means["recon_loss"], on_step=True, on_epoch=False, prog_bar=True,
                     logger=False)

    def on_train_start(self) -> None:
        """A fit resumed from a checkpoint trains with this config's optimizer settings and schedule,
        placed at the resumed epoch, not the ones the checkpoint's run had (lightning_aae/optim.py)."""
        if self.trainer.ckpt_path is None:
            return
        optimizers = {name: opt.optimizer for name, opt in self.optimizers_by_phase().items()}
        schedules = follow_config(self.optim_cfg, optimizers, self.current_epoch, int(self.trainer.max_epochs or 1))
        by_optimizer = {id(s.optimizer): s for s in schedules}
        for config in self.trainer.lr_scheduler_configs:
            config.scheduler = by_optimizer[id(config.scheduler.optimizer)]

    def on_train_epoch_start(self) -> None:
        self.running.start_epoch()

    def on_train_epoch_end(self) -> None:
        means = self.running.epoch_means()
        if means:
            self.log_dict({f"train/{n}_epoch": v for n, v in means.items()}, on_step=False, on_epoch=True,
                          sync_dist=True)
        scheds = self.lr_schedulers()
        for s in scheds if isinstance(scheds, list) else [scheds] if scheds is not None else []:
            s.step()

    # ---- Lightning: evaluation --------------------------------------------------------------
    def _eval_step(self, stage: str, x: torch.Tensor, y: torch.Tensor) -> None:
        labels = y if self.label_aware and self.categories is None else None  # supervised: the true digit
        out = self(x, labels)
        for bundle in self.eval_metrics[stage]:
            bundle.update(self, x, y, out)

    def _log_eval(self, stage: str) -> None:
        values = compute_all(self.eval_metrics[stage], self, stage)
        if stage == "test" and self.test_name != "test":
            values = {f"{self.test_name}/{k.split('/', 1)[1]}": v for k, v in values.items()}
            stage = self.test_name
        main = f"{stage}/recon_loss"
        self.log(main, values.pop(main), prog_bar=True)
        self.log_dict(values)

    def validation_step(self, batch, batch_idx):
        self._eval_step("val", *batch)

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def test_step(self, batch, batch_idx):
        self._eval_step("test", *batch)

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")
