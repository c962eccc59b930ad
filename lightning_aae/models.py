"""The AAE training schedule, written once, and the variants built on it.

Optimizers, in the order `configure_optimizers` returns them (a variant has a prefix of them):
    recon     encoder + decoder   reconstruction phase (every variant)
    disc      discriminators      discriminator phase  (adversarial variants)
    gen       encoder             generator phase: the encoder learns to fool the discriminators
    classify  encoder             supervised cross-entropy on a labeled batch (semi-supervised)

Variants change small hooks (what the decoder gets, what each discriminator compares, what is
evaluated), never the loop. `global_step` counts optimizer steps (3 or 4 per batch), so
schedules are by epoch.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from .components import ConvDecoder, ConvEncoder, MLPDecoder, MLPDiscriminator, MLPEncoder
from .losses import discriminator_accuracy, discriminator_loss, generator_loss, reconstruction_loss
from .metrics import CodeMoments, ClusterCounts, assign_clusters_by_max_posterior, cluster_error, hungarian_accuracy
from .priors import N_PARTS, make_prior

N_DIGITS = 10
Pair = Tuple[torch.Tensor, torch.Tensor]


class DivergenceError(RuntimeError):
    """A phase produced a non-finite loss."""


def _plain(cfg: Any) -> Dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def one_hot(labels: torch.Tensor, n: int) -> torch.Tensor:
    return F.one_hot(labels.long(), n).float()


class AAEBase(L.LightningModule):
    """Encoder, decoder and the phase schedule. Subclasses set the class attributes and hooks.

    Public interface for callbacks, scripts and notebooks (no Trainer needed): `encode`,
    `decode`, `reconstruct`, `sample_prior`, `sample`, `classify` (label-aware variants), `prior`.
    """

    variant = "base"
    label_aware = False  # decode/sample take digit labels
    has_classifier = False  # classify(x) gives class probabilities

    def __init__(self, model: Dict[str, Any], optim: Dict[str, Any], log_every_n_steps: int = 50):
        super().__init__()
        model, optim = _plain(model), _plain(optim)
        self.save_hyperparameters({"variant": self.variant, "model": model, "optim": optim,
                                   "log_every_n_steps": log_every_n_steps})
        self.automatic_optimization = False
        self.model_cfg, self.optim_cfg = model, optim
        self.log_every_n_steps = log_every_n_steps
        self.latent_dim = model["latent_dim"]
        self.prior = make_prior(model["prior"], self.latent_dim, model["prior_std"])
        self.encoder = self._encoder(self.encoder_out_dim())
        self.decoder = self._decoder(self.decoder_in_dim())
        self.discriminators = nn.ModuleDict({
            name: MLPDiscriminator(dim, model["disc_hidden_dims"], model["dropout"])
            for name, dim in self.discriminator_dims().items()})
        self.eval_metrics = nn.ModuleDict({stage: self.make_eval_metrics() for stage in ("val", "test")})
        self._stat_names: List[str] = []
        self._interval_sums: Optional[torch.Tensor] = None
        self._epoch_sums: Optional[torch.Tensor] = None
        self._interval_batches = 0
        self._epoch_batches = 0

    # ---- structure hooks --------------------------------------------------------------------
    def encoder_out_dim(self) -> int:
        return self.latent_dim

    def decoder_in_dim(self) -> int:
        return self.latent_dim

    def discriminator_dims(self) -> Dict[str, int]:
        """Name -> input size of each discriminator; none for the non-adversarial variants."""
        return {}

    def _encoder(self, out_dim: int) -> nn.Module:
        m = self.model_cfg
        if m["arch"] == "conv":
            return ConvEncoder(out_dim, m["conv_channels"], m["batch_norm"], m["dropout"])
        return MLPEncoder(out_dim, m["hidden_dims"], m["dropout"])

    def _decoder(self, in_dim: int) -> nn.Module:
        m = self.model_cfg
        if m["arch"] == "conv":
            return ConvDecoder(in_dim, m["conv_channels"], m["batch_norm"])
        return MLPDecoder(in_dim, list(reversed(m["hidden_dims"])), m["dropout"])

    # ---- interface used by callbacks, scripts and notebooks ---------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The continuous code (the style, for variants that also infer a label)."""
        return self.encoder(x)

    def style(self, x: torch.Tensor) -> torch.Tensor:
        """The part of the code that decode(style, labels) combines with a label."""
        return self.encode(x)

    def decoder_input(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return z

    def decode(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Images in [0, 1], shape [B, 784]."""
        return torch.sigmoid(self.decoder(self.decoder_input(z, labels)))

    def reconstruct(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return torch.sigmoid(self.reconstruction_logits(x, labels))

    def sample_prior(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if generator is not None:
            return self.prior.sample(n, device="cpu", generator=generator).to(self.device)
        return self.prior.sample(n, device=self.device)

    def prior_std_per_dim(self) -> torch.Tensor:
        """The prior's standard deviation per dimension, from a fixed set of 20,000 draws (deterministic)."""
        return self.prior.sample(20000, device="cpu", generator=torch.Generator().manual_seed(0)).std(0)

    def sample(self, n: int, labels: Optional[torch.Tensor] = None,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Decoded draws from the prior (for `labels`, where the variant knows digits)."""
        if self.label_aware and labels is None:
            labels = torch.randint(0, self.n_categories, (n,), generator=generator).to(self.device)
        return self.decode(self.sample_prior(n, generator), labels)

    def forward_all(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """One encoder pass for all that evaluation reads: 'code' (what `encode` gives), 'logits'
        (the reconstruction's pixel logits) and, for variants with categories, 'probs' (q(y|x))."""
        z = self.encode(x)
        return {"code": z, "logits": self.decoder(self.decoder_input(z, labels))}

    # ---- training hooks ---------------------------------------------------------------------
    def reconstruction_logits(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.forward_all(x, labels)["logits"]

    def training_reconstruction_loss(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """x: the encoder's (possibly corrupted) input; target: the clean image to reconstruct."""
        return reconstruction_loss(self.reconstruction_logits(x, y), target, self.model_cfg["recon_loss"])

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's training input: x plus Gaussian noise of std model.input_noise (x itself at 0)."""
        std = self.model_cfg.get("input_noise", 0.0)
        return x + std * torch.randn_like(x) if std else x

    def adversary_inputs(self, x: torch.Tensor, y: torch.Tensor, labeled: Optional[Pair]) -> Dict[str, Pair]:
        """Name -> (codes with gradient to the encoder, samples of the target distribution)."""
        return {}

    def classification_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # ---- optimizers -------------------------------------------------------------------------
    def _phase_params(self) -> Dict[str, List[nn.Parameter]]:
        params = {"recon": [*self.encoder.parameters(), *self.decoder.parameters()]}
        if len(self.discriminators):
            params["disc"] = list(self.discriminators.parameters())
            params["gen"] = list(self.encoder.parameters())
        if self.has_classifier:
            params["classify"] = list(self.encoder.parameters())
        return params

    def _phase_setting(self, phase: str, key: str, default=None):
        value = (self.optim_cfg.get(phase) or {}).get(key)
        return self.optim_cfg.get(key, default) if value is None else value

    def _make_optimizer(self, phase: str, params: List[nn.Parameter]) -> torch.optim.Optimizer:
        lr, wd = self._phase_setting(phase, "lr"), self._phase_setting(phase, "weight_decay")
        if self.optim_cfg.get("optimizer", "adam") == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=self._phase_setting(phase, "momentum", 0.9),
                                   weight_decay=wd)
        return torch.optim.Adam(params, lr=lr, betas=tuple(self._phase_setting(phase, "betas")), weight_decay=wd,
                                fused=self._use_fused_adam(params))

    def _make_scheduler(self, phase: str, opt: torch.optim.Optimizer):
        cfg = self.optim_cfg
        if cfg["scheduler"] == "step":
            return torch.optim.lr_scheduler.StepLR(opt, cfg["step_size"], cfg["gamma"])
        if cfg["scheduler"] == "multistep":
            milestones = list(self._phase_setting(phase, "milestones") or [])
            return torch.optim.lr_scheduler.MultiStepLR(opt, milestones, cfg["gamma"])
        if cfg["scheduler"] == "exponential":
            return torch.optim.lr_scheduler.ExponentialLR(opt, cfg["gamma"])
        if cfg["scheduler"] == "cosine":
            t_max = max(1, int(self.trainer.max_epochs or 1)) if self._trainer is not None else 1
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, t_max)
        return None

    def configure_optimizers(self):
        opts, scheds = [], []
        for phase, params in self._phase_params().items():
            opts.append(self._make_optimizer(phase, params))
            sched = self._make_scheduler(phase, opts[-1])
            if sched is not None:
                scheds.append(sched)
        return (opts, scheds) if scheds else opts

    _FUSED_ADAM_DEVICES = ("cpu", "cuda")

    def _use_fused_adam(self, params: List[nn.Parameter]) -> Optional[bool]:
        """optim.fused, or where it is null, whether every parameter is a float tensor on a device
        with a fused Adam kernel. None leaves the choice to torch (its for-loop / foreach path)."""
        wanted = self.optim_cfg.get("fused")
        if wanted is not None:
            return bool(wanted) or None
        ok = all(p.is_floating_point() and p.device.type in self._FUSED_ADAM_DEVICES for p in params)
        return True if ok else None

    def _optimizers_by_phase(self) -> Dict[str, Any]:
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        return dict(zip(self._phase_params().keys(), opts))

    def _run_phase(self, phase: str, opt, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        clip = self._phase_setting(phase, "grad_clip")
        if clip:
            self.clip_gradients(opt, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        opt.step()

    # ---- the schedule -----------------------------------------------------------------------
    @staticmethod
    def split_batch(batch) -> Tuple[Pair, Optional[Pair]]:
        """(unlabeled x, y) and, where the DataModule has a labeled set, (labeled x, y).

        The unlabeled stream's y is -1 when the run has a labeled subset, the true digit otherwise.
        """
        if isinstance(batch, dict):
            return tuple(batch["unlabeled"]), tuple(batch["labeled"])
        return tuple(batch), None

    def training_step(self, batch, batch_idx):
        (clean, y), labeled = self.split_batch(batch)
        # every encoder pass of the step sees the corrupted input; the reconstruction target stays clean
        x = self.corrupt(clean)
        if labeled is not None:
            labeled = (self.corrupt(labeled[0]), labeled[1])
        opts = self._optimizers_by_phase()
        stats: Dict[str, torch.Tensor] = {}

        with self.toggled_optimizer(opts["recon"]):
            loss = self.training_reconstruction_loss(x, y, clean)
            self._run_phase("recon", opts["recon"], loss)
        stats["recon_loss"] = loss

        if len(self.discriminators):
            # One encoder pass serves both adversarial phases: the discriminator step does not
            # move the encoder, so recomputing the codes for the generator step would give the same.
            pairs = self.adversary_inputs(x, y, labeled)
            d_loss = g_loss = 0.0
            with self.toggled_optimizer(opts["disc"]):
                for name, (fake, real) in pairs.items():
                    disc = self.discriminators[name]
                    # codes are detached: the discriminator step must not move the encoder
                    real_logits, fake_logits = disc(real), disc(fake.detach())
                    d_loss = d_loss + discriminator_loss(real_logits, fake_logits)
                    stats[f"disc_acc_{name}"] = discriminator_accuracy(real_logits.detach(), fake_logits.detach())
                self._run_phase("disc", opts["disc"], d_loss)
            with self.toggled_optimizer(opts["gen"]):
                for name, (fake, _) in pairs.items():
                    g_loss = g_loss + generator_loss(self.discriminators[name](fake))
                self._run_phase("gen", opts["gen"], g_loss)
            stats["disc_loss"], stats["gen_loss"] = d_loss, g_loss

        if self.has_classifier and labeled is not None:
            with self.toggled_optimizer(opts["classify"]):
                c_loss = self.classification_loss(*labeled)
                self._run_phase("classify", opts["classify"], c_loss)
            stats["class_loss"] = c_loss

        self._accumulate(stats)

    # ---- cheap training statistics: summed on device, read every log_every_n_steps batches --
    def _accumulate(self, stats: Dict[str, torch.Tensor]) -> None:
        values = torch.stack([v.detach().float() for v in stats.values()])
        if self._interval_sums is None or self._stat_names != list(stats):
            self._stat_names = list(stats)
            self._interval_sums = torch.zeros_like(values)
            self._epoch_sums = torch.zeros_like(values)
        self._interval_sums += values
        self._epoch_sums += values
        self._interval_batches += 1
        self._epoch_batches += 1
        if self._interval_batches >= self.log_every_n_steps:
            self._flush_interval()

    _PHASE_OF_STAT = {"recon_loss": "recon", "disc_loss": "disc", "gen_loss": "gen", "class_loss": "classify"}

    def _check_finite(self, sums: torch.Tensor) -> None:
        bad = ~torch.isfinite(sums)
        if bool(bad.any()):
            names = [n for n, b in zip(self._stat_names, bad.tolist()) if b]
            phases = sorted({self._PHASE_OF_STAT.get(n, "disc") for n in names})
            raise DivergenceError(
                f"non-finite loss in phase {', '.join(phases)} ({', '.join(names)}) at epoch {self.current_epoch}, "
                f"batch {self._epoch_batches}, global step {self.global_step} (checked every "
                f"{self.log_every_n_steps} batches); lower the learning rate or set optim.grad_clip"
            )

    def _flush_interval(self) -> None:
        means = self._interval_sums / self._interval_batches
        self._check_finite(means)
        self.log_dict({f"train/{n}": v for n, v in zip(self._stat_names, means)}, on_step=True, on_epoch=False)
        self.log("train/recon_loss_step", means[0], on_step=True, on_epoch=False, prog_bar=True, logger=False)
        self._interval_sums.zero_()
        self._interval_batches = 0

    def on_train_epoch_start(self) -> None:
        self._interval_batches = self._epoch_batches = 0
        if self._interval_sums is not None:
            self._interval_sums.zero_()
            self._epoch_sums.zero_()

    def on_validation_epoch_start(self) -> None:
        # before validation, so a checkpoint is never written from diverged weights
        if self.trainer.training and self._epoch_batches:
            self._check_finite(self._epoch_sums)

    def on_train_epoch_end(self) -> None:
        if self._epoch_batches:
            means = self._epoch_sums / self._epoch_batches
            self._check_finite(means)
            self.log_dict({f"train/{n}_epoch": v for n, v in zip(self._stat_names, means)},
                          on_step=False, on_epoch=True, sync_dist=True)
        scheds = self.lr_schedulers()
        for s in scheds if isinstance(scheds, list) else [scheds] if scheds is not None else []:
            s.step()

    # ---- exact resume: the RNG streams travel with the checkpoint ---------------------------
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        if getattr(self, "run_config", None) is not None:
            checkpoint["run_config"] = self.run_config  # data splits etc., for evaluate/generate
        checkpoint["rng_states"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if states:
            torch.set_rng_state(states["torch"])
            if "cuda" in states and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(states["cuda"])

    # ---- evaluation -------------------------------------------------------------------------
    def make_eval_metrics(self) -> nn.ModuleDict:
        return nn.ModuleDict({"recon": MeanMetric(), "codes": CodeMoments(self.latent_dim)})

    def update_eval_metrics(self, metrics: nn.ModuleDict, x: torch.Tensor, y: torch.Tensor,
                            out: Dict[str, torch.Tensor]) -> None:
        """Feed one batch to the metrics; `out` is `forward_all` of that batch."""
        err = reconstruction_loss(out["logits"], x, self.model_cfg["recon_loss"])
        metrics["recon"].update(err, weight=x.shape[0])
        metrics["codes"].update(out["code"])

    def compute_eval_metrics(self, stage: str, metrics: nn.ModuleDict) -> Dict[str, torch.Tensor]:
        stats = metrics["codes"].compute()
        prior_std = self.prior_std_per_dim().to(stats["std"].device)
        out = {
            f"{stage}/recon_loss": metrics["recon"].compute(),
            f"{stage}/n_images": stats["count"].float(),
            f"{stage}/code_mean_abs_max": stats["mean"].abs().max(),
            # 0 when every dimension spreads like the prior; 0.25 = off by 25% somewhere
            f"{stage}/code_std_rel_err_max": (stats["std"] / prior_std - 1).abs().max(),
        }
        if self.latent_dim <= 8:
            for i, (m, s) in enumerate(zip(stats["mean"], stats["std"])):
                out[f"{stage}/code_mean_{i}"] = m
                out[f"{stage}/code_std_{i}"] = s
        return out

    def _log_eval(self, stage: str) -> None:
        metrics = self.eval_metrics[stage]
        values = self.compute_eval_metrics(stage, metrics)
        # torchmetrics have already synchronised these across processes
        main = f"{stage}/recon_loss"
        self.log(main, values[main], prog_bar=True)
        self.log_dict({k: v for k, v in values.items() if k != main})
        for m in metrics.values():
            m.reset()

    def _eval_step(self, stage: str, x: torch.Tensor, y: torch.Tensor) -> None:
        labels = y if self.label_aware and not self.has_classifier else None  # supervised: the true digit
        self.update_eval_metrics(self.eval_metrics[stage], x, y, self.forward_all(x, labels))

    def validation_step(self, batch, batch_idx):
        self._eval_step("val", *batch)

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def test_step(self, batch, batch_idx):
        self._eval_step("test", *batch)

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")


class Autoencoder(AAEBase):
    """Plain autoencoder: reconstruction only. Its latent space has holes the prior cannot fill."""

    variant = "autoencoder"


class AdversarialAutoencoder(AAEBase):
    """Unsupervised AAE: the codes are matched to the chosen prior by a discriminator.

    With `model.label_regularized`, the discriminator also sees the digit as a one-hot vector (an
    eleventh slot for unlabeled images) and the prior sample is drawn from that digit's part of the
    prior (the paper's Figure 4).
    """

    variant = "aae"

    def discriminator_dims(self):
        extra = N_PARTS + 1 if self.model_cfg["label_regularized"] else 0
        return {"prior": self.latent_dim + extra}

    def adversary_inputs(self, x, y, labeled):
        if not self.model_cfg["label_regularized"]:
            z = self.encode(x)
            return {"prior": (z, self.prior.sample(len(z), device=z.device))}
        if labeled is not None:
            x, y = torch.cat([x, labeled[0]]), torch.cat([y, labeled[1]])
        z = self.encode(x)
        slot = one_hot(torch.where(y < 0, torch.full_like(y, N_PARTS), y), N_PARTS + 1)
        real = self.prior.sample_given(y)
        return {"prior": (torch.cat([z, slot], 1), torch.cat([real, slot], 1))}


class SupervisedAAE(AAEBase):
    """Supervised AAE: the digit goes to the decoder as a one-hot vector, so z only has to hold style."""

    variant = "supervised"
    label_aware = True
    n_categories = N_DIGITS

    def decoder_in_dim(self):
        return self.latent_dim + N_DIGITS

    def discriminator_dims(self):
        return {"prior": self.latent_dim}

    def decoder_input(self, z, labels=None):
        if labels is None:
            raise ValueError("the supervised AAE decodes a style code together with digit labels")
        return torch.cat([z, one_hot(labels, N_DIGITS)], 1)

    def adversary_inputs(self, x, y, labeled):
        z = self.encode(x)
        return {"prior": (z, self.prior.sample(len(z), device=z.device))}


class SemiSupervisedAAE(AAEBase):
    """Semi-supervised AAE: q(y|x) (softmax over categories) and a Gaussian style z.

    Two discriminators: a categorical one on y and a Gaussian one on z. The decoder sees [y, z].
    With labels, a cross-entropy phase trains q(y|x) on a labeled batch each step.
    """

    variant = "semi_supervised"
    label_aware = True
    has_classifier = True

    @property
    def n_categories(self) -> int:
        return N_DIGITS

    def encoder_out_dim(self):
        return self.n_categories + self.latent_dim

    def decoder_in_dim(self):
        return self.n_categories + self.latent_dim

    def discriminator_dims(self):
        return {"category": self.n_categories, "style": self.latent_dim}

    def _heads(self, x) -> Tuple[torch.Tensor, torch.Tensor]:
        out = self.encoder(x)
        return out[:, : self.n_categories], out[:, self.n_categories:]

    def encode(self, x):
        return self._heads(x)[1]

    def style(self, x):
        return self._heads(x)[1]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """q(y|x): class (or cluster) probabilities, [B, n_categories]."""
        return torch.softmax(self._heads(x)[0], 1)

    def decoder_input(self, z, labels=None):
        if labels is None:
            raise ValueError("decoding needs labels (or category probabilities)")
        y = one_hot(labels, self.n_categories) if labels.dim() == 1 else labels
        return torch.cat([y, z], 1)

    def forward_all(self, x, labels=None):
        logits, z = self._heads(x)
        probs = torch.softmax(logits, 1)
        return {"code": z, "probs": probs, "logits": self.decoder(torch.cat([probs, z], 1))}

    def adversary_inputs(self, x, y, labeled):
        logits, z = self._heads(x)
        target = torch.randint(0, self.n_categories, (len(z),), device=z.device)
        fake, real = torch.softmax(logits, 1), one_hot(target, self.n_categories)
        noise = self.model_cfg.get("category_noise", 0.0)
        if noise:
            # Instance noise: exact one-hots let the discriminator win on "not quite one-hot"
            # alone; the encoder then sharpens q(y|x) onto whichever categories it already uses
            # and the clustering collapses. Noise on both sides hides that cue.
            fake = fake + noise * torch.randn_like(fake)
            real = real + noise * torch.randn_like(real)
        return {"category": (fake, real), "style": (z, self.prior.sample(len(z), device=z.device))}

    def classification_loss(self, x, y):
        return F.cross_entropy(self._heads(x)[0], y)

    def make_eval_metrics(self):
        metrics = super().make_eval_metrics()
        metrics["accuracy"] = MulticlassAccuracy(num_classes=N_DIGITS, average="micro")
        return metrics

    def update_eval_metrics(self, metrics, x, y, out):
        super().update_eval_metrics(metrics, x, y, out)
        metrics["accuracy"].update(out["probs"].argmax(1), y)

    def compute_eval_metrics(self, stage, metrics):
        out = super().compute_eval_metrics(stage, metrics)
        acc = metrics["accuracy"].compute()
        out[f"{stage}/accuracy"], out[f"{stage}/error"] = acc, 1 - acc
        return out


class ClusteringAAE(SemiSupervisedAAE):
    """Unsupervised clustering: the semi-supervised AAE with n_clusters categories and no labels.

    Scores: cluster error by the paper's rule (each cluster takes the digit of the validation
    image with the highest q(y = cluster | x)) and accuracy under the best one-to-one matching.
    """

    variant = "clustering"
    has_classifier = False

    @property
    def n_categories(self) -> int:
        return self.model_cfg["n_clusters"]

    @torch.no_grad()
    def assign_clusters(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 2000) -> torch.Tensor:
        probs = torch.cat([self.classify(x[i: i + chunk]) for i in range(0, len(x), chunk)])
        return assign_clusters_by_max_posterior(probs, y)

    def _refresh_assignment(self) -> None:
        val = self.trainer.datamodule.val
        self.cluster_labels = self.assign_clusters(val.x, val.y)

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._refresh_assignment()

    def on_test_epoch_start(self) -> None:
        self._refresh_assignment()

    def make_eval_metrics(self):
        metrics = AAEBase.make_eval_metrics(self)
        metrics["clusters"] = ClusterCounts(self.n_categories, N_DIGITS)
        return metrics

    def update_eval_metrics(self, metrics, x, y, out):
        AAEBase.update_eval_metrics(self, metrics, x, y, out)
        metrics["clusters"].update(out["probs"].argmax(1), y)

    def compute_eval_metrics(self, stage, metrics):
        out = AAEBase.compute_eval_metrics(self, stage, metrics)
        counts = metrics["clusters"].compute()
        out[f"{stage}/cluster_error"] = cluster_error(counts, self.cluster_labels).float()
        out[f"{stage}/hungarian_accuracy"] = torch.tensor(hungarian_accuracy(counts), device=counts.device)
        out[f"{stage}/clusters_used"] = (counts.sum(1) > 0).sum().float()
        return out


class DimensionalityReductionAAE(ClusteringAAE):
    """Dimensionality reduction (the paper's Section 7): representation = W_c y + z.

    q(y|x) picks a cluster head (a learned row of W_c, n_clusters x latent_dim), the style z adds
    a small Gaussian offset; the decoder sees only their sum, so the 2-D representation is what the
    figures plot. A hinge penalty keeps the heads at least `model.head_distance` apart.
    """

    variant = "dim_reduction"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cluster_heads = nn.Parameter(self._spread_heads())

    def _spread_heads(self, steps: int = 2000) -> torch.Tensor:
        """Seeded random heads pushed apart until no two are closer than head_distance.

        Starting from overlapping heads, the hinge penalty dominated the reconstruction phase for
        epochs while Adam moved the heads ~lr per step; spreading them first costs milliseconds.
        """
        g = torch.Generator().manual_seed(0)
        heads = torch.randn(self.n_categories, self.latent_dim, generator=g) * self.model_cfg["head_distance"]
        heads.requires_grad_(True)
        with torch.enable_grad():
            for _ in range(steps):
                penalty = F.relu(self.model_cfg["head_distance"] - torch.pdist(heads)).sum()
                if penalty.item() == 0:
                    break
                (grad,) = torch.autograd.grad(penalty, heads)
                heads = (heads - 0.05 * grad).detach().requires_grad_(True)
        return heads.detach()

    def decoder_in_dim(self):
        return self.latent_dim

    def _phase_params(self):
        params = super()._phase_params()
        params["recon"] = params["recon"] + [self.cluster_heads]
        return params

    def represent(self, probs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return probs @ self.cluster_heads + z

    def encode(self, x):
        logits, z = self._heads(x)
        return self.represent(torch.softmax(logits, 1), z)

    def decoder_input(self, z, labels=None):
        if labels is None:
            return z  # already a representation
        y = one_hot(labels, self.n_categories) if labels.dim() == 1 else labels
        return self.represent(y, z)

    def forward_all(self, x, labels=None):
        logits, z = self._heads(x)
        probs = torch.softmax(logits, 1)
        code = self.represent(probs, z)
        return {"code": code, "probs": probs, "logits": self.decoder(code)}

    def head_penalty(self) -> torch.Tensor:
        d = torch.pdist(self.cluster_heads)
        return F.relu(self.model_cfg["head_distance"] - d).sum()

    def training_reconstruction_loss(self, x, y, target):
        return super().training_reconstruction_loss(x, y, target) + self.model_cfg["head_penalty"] * self.head_penalty()

    def compute_eval_metrics(self, stage, metrics):
        out = super().compute_eval_metrics(stage, metrics)
        out.pop(f"{stage}/code_std_rel_err_max")  # the representation is not meant to match the style prior
        out[f"{stage}/min_head_distance"] = torch.pdist(self.cluster_heads.detach()).min()
        return out


class VAE(AAEBase):
    """Variational autoencoder over the same blocks: a KL term to N(0, I) instead of an adversary."""

    variant = "vae"

    def encoder_out_dim(self):
        return 2 * self.latent_dim

    def _moments(self, x):
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 12)

    def encode(self, x):
        return self._moments(x)[0]

    def training_reconstruction_loss(self, x, y, target):
        mu, logvar = self._moments(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = reconstruction_loss(self.decoder(z), target, self.model_cfg["recon_loss"])
        # per pixel, like the reconstruction term, so the two keep the ELBO's proportions
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean() / x[0].numel()
        return recon + self.model_cfg["kl_weight"] * kl


VARIANT_CLASSES = {cls.variant: cls for cls in
                   (Autoencoder, AdversarialAutoencoder, SupervisedAAE, SemiSupervisedAAE, ClusteringAAE,
                    DimensionalityReductionAAE, VAE)}


def build_module(cfg: DictConfig) -> AAEBase:
    cls = VARIANT_CLASSES[cfg.model.variant]
    return cls(model=cfg.model, optim=cfg.optim, log_every_n_steps=cfg.logger.log_every_n_steps)


def checkpoint_variant(ckpt_path: str) -> str:
    """The variant a checkpoint was trained as, read without building the model."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    return ckpt.get("hyper_parameters", {}).get("variant", "unknown")


def load_module(ckpt_path: str, map_location="cpu") -> AAEBase:
    """Rebuild whichever variant a checkpoint holds, ready for encode/decode/sample/classify."""
    variant = checkpoint_variant(ckpt_path)
    if variant not in VARIANT_CLASSES:
        raise ValueError(f"checkpoint {ckpt_path} holds unknown variant '{variant}'")
    module = VARIANT_CLASSES[variant].load_from_checkpoint(ckpt_path, map_location=map_location)
    return module.eval()
