"""Every variant, registered once under its config name (`model.variant`).

    autoencoder, aae, supervised, vae          directly on AutoencoderModule
    semi_supervised, clustering, dim_reduction  siblings on CategoricalAAE (q(y|x) + Gaussian style)

A variant only sizes its networks and overrides the schedule's hooks (module.py); the loop is in
schedule.py. Adding one: a class here with @register("name"), and a YAML file under configs/.
"""
from __future__ import annotations

from typing import Dict, Type

import torch
import torch.nn.functional as F
from torch import nn

from .metrics import (AccuracyMetrics, ClusterCounts, ClusterMetrics, EvalBundle, ReconstructionMetrics,
                      assign_clusters_by_majority, assign_clusters_by_max_posterior)
from .losses import marginal_entropy_gap, mean_entropy
from .module import AutoencoderModule, one_hot
from .priors import N_PARTS

VARIANTS: Dict[str, Type[AutoencoderModule]] = {}


def register(name: str):
    def add(cls):
        cls.variant = name
        VARIANTS[name] = cls
        return cls
    return add


@register("autoencoder")
class Autoencoder(AutoencoderModule):
    """Plain autoencoder: reconstruction only. Its latent space has holes the prior cannot fill."""


def _prior_pair(model, z: torch.Tensor) -> Dict[str, tuple]:
    return {"prior": (z, model.prior.sample(len(z), device=z.device))}


@register("aae")
class AdversarialAutoencoder(AutoencoderModule):
    """Unsupervised AAE: the codes are matched to the chosen prior by a discriminator.

    With `model.label_regularized`, the discriminator also sees the digit as a one-hot vector (an
    eleventh slot for unlabeled images) and the prior sample is drawn from that digit's part of the
    prior (the paper's Figure 4).
    """

    def discriminator_dims(self):
        return {"prior": self.latent_dim + (N_PARTS + 1 if self.model_cfg["label_regularized"] else 0)}

    def adversary_pairs(self, batch):
        x, y = batch.x, batch.y
        if not self.model_cfg["label_regularized"]:
            return _prior_pair(self, self.encode(x))
        if batch.labeled is not None:
            x, y = torch.cat([x, batch.labeled[0]]), torch.cat([y, batch.labeled[1]])
        z = self.encode(x)
        slot = one_hot(torch.where(y < 0, torch.full_like(y, N_PARTS), y), N_PARTS + 1)
        return {"prior": (torch.cat([z, slot], 1), torch.cat([self.prior.sample_given(y), slot], 1))}


@register("supervised")
class SupervisedAAE(AutoencoderModule):
    """Supervised AAE: the digit goes to the decoder as a one-hot vector, so z only has to hold style."""

    label_aware = True

    def decoder_in_dim(self):
        return self.latent_dim + self.n_classes

    def discriminator_dims(self):
        return {"prior": self.latent_dim}

    def decoder_input(self, z, labels=None):
        if labels is None:
            raise ValueError("the supervised AAE decodes a style code together with digit labels")
        return torch.cat([z, one_hot(labels, self.n_classes)], 1)

    def adversary_pairs(self, batch):
        return _prior_pair(self, self.encode(batch.x))


class CategoricalAAE(AutoencoderModule):
    """q(y|x), a softmax over `n_categories`, and a Gaussian style z from one encoder; a categorical
    and a Gaussian discriminator. The decoder sees what `decoder_input(z, y)` makes of the two."""

    label_aware = True
    plain_code = False  # the encoder's output is [category logits, style]

    def encoder_out_dim(self):
        return self.n_categories + self.latent_dim

    def decoder_in_dim(self):
        return self.n_categories + self.latent_dim

    def discriminator_dims(self):
        return {"category": self.n_categories, "style": self.latent_dim}

    def heads(self, x):
        out = self.encoder(x)
        return out[:, : self.n_categories], out[:, self.n_categories:]

    def code_of(self, probs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """What `encode` gives: the style."""
        return z

    def encode(self, x):
        logits, z = self.heads(x)
        return self.code_of(torch.softmax(logits, 1), z)

    def style(self, x):
        return self.heads(x)[1]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """q(y|x): category probabilities, [B, n_categories]."""
        return torch.softmax(self.heads(x)[0], 1)

    def decoder_input(self, z, labels=None):
        if labels is None:
            raise ValueError("decoding needs labels (or category probabilities)")
        y = one_hot(labels, self.n_categories) if labels.dim() == 1 else labels
        return torch.cat([y, z], 1)

    def forward(self, x, labels=None):
        logits, z = self.heads(x)
        probs = torch.softmax(logits, 1)
        return {"code": self.code_of(probs, z), "probs": probs, "logits": self.decoder(self.decoder_input(z, probs))}

    def code_penalties(self, batch, out):
        """Adds model.category_balance x the batch's marginal-entropy gap (an empty category costs)
        and model.category_confidence x its mean entropy of q(y|x) (a soft one costs), both from
        epoch model.category_terms_from on."""
        terms = super().code_penalties(batch, out)
        if self.current_epoch < self.model_cfg.get("category_terms_from", 0):
            return terms
        for key, loss in (("category_balance", marginal_entropy_gap), ("category_confidence", mean_entropy)):
            if self.model_cfg.get(key, 0.0):
                terms[key] = self.model_cfg[key] * loss(out["probs"])
        return terms

    def category_noise_at(self, epoch: int) -> float:
        """The instance noise's std in this epoch: model.category_noise, and where scheduled, from
        epoch model.category_noise_from on a linear move to model.category_noise_final over
        model.category_noise_epochs epochs (0: a step), held there after."""
        start, end = self.model_cfg.get("category_noise", 0.0), self.model_cfg.get("category_noise_final")
        begin, span = self.model_cfg.get("category_noise_from", 0), self.model_cfg.get("category_noise_epochs", 0)
        if end is None or epoch < begin:
            return start
        if epoch >= begin + span:
            return end
        return start + (end - start) * (epoch - begin) / span

    def adversary_pairs(self, batch):
        logits, z = self.heads(batch.x)
        target = torch.randint(0, self.n_categories, (len(z),), device=z.device)
        fake, real = torch.softmax(logits, 1), one_hot(target, self.n_categories)
        noise = self.category_noise_at(self.current_epoch)
        if noise:
            # Instance noise: exact one-hots let the discriminator win on "not quite one-hot"
            # alone; the encoder then sharpens q(y|x) onto whichever categories it already uses
            # and the clustering collapses. Noise on both sides hides that cue.
            fake = fake + noise * torch.randn_like(fake)
            real = real + noise * torch.randn_like(real)
        return {"category": (fake, real), "style": (z, self.prior.sample(len(z), device=z.device))}


@register("semi_supervised")
class SemiSupervisedAAE(CategoricalAAE):
    """Semi-supervised AAE: q(y|x) over the data's classes (MNIST's ten digits), trained by the adversaries
    on every image and by cross-entropy on the labeled batch (the `classify` phase)."""

    categories = "digits"

    def classification_loss(self, x, y):
        return F.cross_entropy(self.heads(x)[0], y)

    def phase_params(self):
        return {**super().phase_params(), "classify": list(self.encoder.parameters())}

    def metric_bundles(self, stage):
        return super().metric_bundles(stage) + [AccuracyMetrics(self.n_classes)]


class _Clusters:
    """Shared by the two clustering variants: the validation-learned cluster -> digit assignments
    travel with checkpoints, so testing a checkpoint never needs another pass over validation."""

    categories = "clusters"
    cluster_assignment = None
    cluster_assignment_majority = None
    ASSIGNMENTS = ("cluster_assignment", "cluster_assignment_majority")

    def cluster_metrics(self, stage: str) -> list:
        """Scored against the labels; none where the data has no labels."""
        if not self.n_classes:
            return []
        return [ClusterMetrics(self.n_categories, learn_assignment=stage == "val", n_classes=self.n_classes)]

    @property
    def n_categories(self) -> int:
        return self.model_cfg["n_clusters"]

    def on_save_checkpoint(self, checkpoint):
        for key in self.ASSIGNMENTS:
            if getattr(self, key) is not None:
                checkpoint[key] = getattr(self, key).cpu()

    def on_load_checkpoint(self, checkpoint):
        for key in self.ASSIGNMENTS:
            if key in checkpoint:
                setattr(self, key, checkpoint[key].to(self.device))

    def on_test_epoch_start(self):
        if not self.n_classes:
            return  # no labels to name the clusters after
        if self.cluster_assignment is None or self.cluster_assignment_majority is None:
            # a checkpoint from before the assignments were saved: learn them from validation now
            val = self.trainer.datamodule.val
            with torch.no_grad():
                probs = torch.cat([self.classify(val.x[i: i + 2000]) for i in range(0, len(val.x), 2000)])
            if self.cluster_assignment is None:
                self.cluster_assignment = assign_clusters_by_max_posterior(probs, val.y)
            counts = ClusterCounts(self.n_categories, self.n_classes)
            counts.update(probs.argmax(1).cpu(), val.y.cpu())
            self.cluster_assignment_majority = assign_clusters_by_majority(counts.compute()).to(probs.device)


@register("clustering")
class ClusteringAAE(_Clusters, CategoricalAAE):
    """Unsupervised clustering: n_clusters categories and no labels. Scored by the paper's cluster
    error (each cluster takes the digit of its most confident validation image) and Hungarian accuracy."""

    def metric_bundles(self, stage):
        return super().metric_bundles(stage) + self.cluster_metrics(stage)


def _closeness(heads: torch.Tensor, distance: float) -> torch.Tensor:
    """The hinge penalty: how much closer than `distance` each pair of heads is, summed."""
    return F.relu(distance - torch.pdist(heads)).sum()


class HeadSpread(EvalBundle):
    def update(self, module, x, y, out):
        pass

    def compute(self, module, stage):
        return {f"{stage}/min_head_distance": torch.pdist(module.cluster_heads.detach()).min()}


@register("dim_reduction")
class DimensionalityReductionAAE(_Clusters, CategoricalAAE):
    """Dimensionality reduction (the paper's Section 7): representation = W_c y + z.

    q(y|x) picks a cluster head (a learned row of W_c, n_clusters x latent_dim), the style z adds
    a small Gaussian offset; the decoder sees only their sum, so the 2-D representation is what the
    figures plot. A hinge penalty keeps the heads at least `model.head_distance` apart.
    """

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
                penalty = _closeness(heads, self.model_cfg["head_distance"])
                if penalty.item() == 0:
                    break
                (grad,) = torch.autograd.grad(penalty, heads)
                heads = (heads - 0.05 * grad).detach().requires_grad_(True)
        return heads.detach()

    def decoder_in_dim(self):
        return self.latent_dim

    def code_of(self, probs, z):
        return probs @ self.cluster_heads + z

    def decoder_input(self, z, labels=None):
        if labels is None:
            return z  # already a representation
        y = one_hot(labels, self.n_categories) if labels.dim() == 1 else labels
        return self.code_of(y, z)

    def head_penalty(self) -> torch.Tensor:
        return _closeness(self.cluster_heads, self.model_cfg["head_distance"])

    def code_penalties(self, batch, out):
        return {**super().code_penalties(batch, out), "head_distance": self.model_cfg["head_penalty"] * self.head_penalty()}

    def phase_params(self):
        params = super().phase_params()
        return {**params, "recon": params["recon"] + [self.cluster_heads]}

    def metric_bundles(self, stage):
        # the representation is not meant to match the style prior: no code_std_rel_err_max
        return [ReconstructionMetrics(self.latent_dim, self.model_cfg["recon_loss"], match_prior=False),
                *self.cluster_metrics(stage), HeadSpread()]


@register("vae")
class VAE(AutoencoderModule):
    """Variational autoencoder over the same blocks: a KL term to N(0, I) instead of an adversary."""

    plain_code = False  # the encoder's output is [mean, log-variance]

    def encoder_out_dim(self):
        return 2 * self.latent_dim

    def moments(self, x):
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 12)

    def encode(self, x):
        return self.moments(x)[0]

    def training_forward(self, x, y):
        mu, logvar = self.moments(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return {"code": z, "mu": mu, "logvar": logvar, "logits": self.decoder(z)}

    def code_penalties(self, batch, out):
        mu, logvar = out["mu"], out["logvar"]
        # per pixel, like the reconstruction term, so the two keep the ELBO's proportions
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean() / batch.target[0].numel()
        return {**super().code_penalties(batch, out), "kl": self.model_cfg["kl_weight"] * kl}


def build_module(cfg) -> AutoencoderModule:
    from omegaconf import OmegaConf

    return VARIANTS[cfg.model.variant](model=cfg.model, optim=cfg.optim,
                                       run_config=OmegaConf.to_container(cfg, resolve=True))


def variant_of(checkpoint: dict) -> str:
    """The variant a loaded checkpoint was trained as ('unknown' when it names none)."""
    return checkpoint.get("hyper_parameters", {}).get("variant", "unknown")


def checkpoint_variant(ckpt_path: str) -> str:
    """The variant a checkpoint was trained as, read without building the model (and without
    running anything the file might hold: CheckpointError names a file that is unsafe or unreadable)."""
    from .storage import load_checkpoint

    return variant_of(load_checkpoint(ckpt_path))


def load_module(ckpt_path: str, map_location="cpu") -> AutoencoderModule:
    """Rebuild whichever variant a checkpoint holds, ready for encode/decode/sample/classify.
    The caller's random state is left as it was (the RNG state in checkpoints is for resuming)."""
    variant = checkpoint_variant(ckpt_path)
    if variant not in VARIANTS:
        raise ValueError(f"checkpoint {ckpt_path} holds unknown variant '{variant}'")
    # building the networks draws initial weights from the global generator before the saved
    # ones replace them; a forked generator keeps the caller's stream where it was
    with torch.random.fork_rng(devices=[]):
        return VARIANTS[variant].load_from_checkpoint(ckpt_path, map_location=map_location, weights_only=True).eval()
