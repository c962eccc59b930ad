"""The figures of the AAE papers and tutorials, drawn during training and after testing.

Every callback here works only through the module's public interface (`encode`, `decode`,
`reconstruct`, `sample`, `sample_prior`, `style`, `classify`, `prior`), under no_grad in eval mode, on rank 0
only, and sends what it draws through `publish_image` / `publish_wandb` (PNG in the run folder,
W&B when attached). Validation figures come every `every_n_epochs` epochs, test figures once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402

from lightning_aae.components import pixel_filters  # noqa: E402
from lightning_aae.metrics import assign_clusters_by_max_posterior  # noqa: E402

from .publish import figure_to_array, image_grid, publish_image, publish_wandb  # noqa: E402


def _images(t: torch.Tensor, module) -> np.ndarray:
    """Flat images [N, C*H*W] as [N, C, H, W] in the module's image shape."""
    return t.detach().float().cpu().reshape(-1, *module.image_shape).numpy()


def _pca(codes: np.ndarray, prior: Optional[np.ndarray]):
    mean = codes.mean(0)
    _, _, vt = np.linalg.svd(codes - mean, full_matrices=False)
    basis = vt[:2].T
    return (codes - mean) @ basis, (prior - mean) @ basis if prior is not None else None


def _tsne(codes: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(codes) - 1) // 3)))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(codes.astype(np.float32))


# callbacks.figures.projection: how codes wider than 2-D are drawn in two
PROJECTIONS = ("pca", "tsne")


def latent_scatter(codes: np.ndarray, labels: np.ndarray, prior: Optional[np.ndarray], title: str,
                   projection: str = "pca", seed: int = 0, n_classes: int = 10):
    """Codes coloured by label, prior samples faint grey behind. Beyond two dimensions: PCA (the
    prior projected on the codes' axes) or t-SNE of the codes alone (it has no map for new points)."""
    method = projection if codes.shape[1] > 2 else None
    if method == "pca":
        codes, prior = _pca(codes, prior)
    elif method == "tsne":
        codes, prior = _tsne(codes, seed), None
    elif codes.shape[1] == 1:
        codes = np.concatenate([codes, np.zeros_like(codes)], 1)
        prior = np.concatenate([prior, np.zeros_like(prior)], 1) if prior is not None else None
    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    if prior is not None:
        ax.scatter(prior[:, 0], prior[:, 1], s=2, c="0.85", rasterized=True)
    if n_classes:
        cmap = "tab10" if n_classes <= 10 else "tab20" if n_classes <= 20 else "viridis"
        sc = ax.scatter(codes[:, 0], codes[:, 1], s=2, c=labels, cmap=cmap, vmin=-0.5, vmax=n_classes - 0.5,
                        rasterized=True)
        fig.colorbar(sc, ax=ax, ticks=range(0, n_classes, max(1, n_classes // 10)), label="label")
    else:  # unlabeled data: one colour
        ax.scatter(codes[:, 0], codes[:, 1], s=2, c="C0", rasterized=True)
    named = {"pca": " (PCA projection)", "tsne": f" (t-SNE of {len(codes)} codes)", None: ""}[method]
    ax.set_title(title + named + ("; grey: prior samples" if prior is not None else ""), fontsize=10)
    axis = {"pca": "PC", "tsne": "t-SNE", None: "z["}[method]
    ax.set_xlabel(f"{axis} 1" if method else "z[0]")
    ax.set_ylabel(f"{axis} 2" if method else "z[1]")
    fig.tight_layout()
    return fig


def count_matrix_figure(counts: np.ndarray, title: str, ylabel: str, row_labels: Optional[List[str]] = None):
    """A counts heatmap with digits across: a confusion matrix, or clusters against digits."""
    fig, ax = plt.subplots(figsize=(6, max(4, 0.3 * len(counts) + 1.5)), dpi=100)
    ax.imshow(counts, cmap="Blues", aspect="auto")
    for (i, j), v in np.ndenumerate(counts):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                    color="white" if v > counts.max() / 2 else "black")
    ax.set_xticks(range(counts.shape[1]))
    ax.set_yticks(range(counts.shape[0]), row_labels or [str(i) for i in range(counts.shape[0])], fontsize=7)
    ax.set_xlabel("true class")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def history_figure(history: Dict[str, List[float]], ylabel: str, reference: Optional[float] = None,
                   title: str = ""):
    """One line per named series over epochs, on a 0-1 scale (accuracies)."""
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for name, values in history.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
    if reference is not None:
        ax.axhline(reference, color="0.6", ls="--", lw=1)
    lowest = min((v for values in history.values() for v in values), default=0.0)
    # high accuracies on a 0-1 axis are one flat line: zoom to what the curves span
    ax.set_ylim(max(0.0, lowest - 0.02) if lowest > 0.6 else 0.0, 1.005 if lowest > 0.6 else 1.02)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    return fig


class FigureCallback(Callback):
    """Schedule shared by the figure callbacks: which stage, how often, which rank, which mode."""

    stages = ("val", "test")

    def __init__(self, out_dir: Optional[str | Path] = None, every_n_epochs: int = 1, seed: int = 0):
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.every_n_epochs, self.seed = every_n_epochs, seed

    def applies(self, module) -> bool:
        return True

    def draw(self, trainer, module, x: torch.Tensor, y: torch.Tensor, stage: str) -> None:
        raise NotImplementedError

    @staticmethod
    def moment(trainer, stage: str) -> str:
        """Which weights a figure shows: the epoch in validation; at test, the checkpoint tested
        (train() tests the best one, whose epoch is not the trainer's current one)."""
        if stage != "test":
            return f"epoch {trainer.current_epoch}"
        ckpt = getattr(trainer, "ckpt_path", None)
        return f"checkpoint {Path(ckpt).stem}" if ckpt else "final weights"

    def publish(self, trainer, key: str, image: np.ndarray, caption: str = "") -> None:
        publish_image(trainer, key, image, self.out_dir, caption)

    def _run(self, trainer, module, stage: str) -> None:
        if stage not in self.stages or not trainer.is_global_zero or not self.applies(module):
            return
        if stage == "test" and getattr(module, "test_name", "test") != "test":
            return  # the final weights' test pass (train() tests them beside the chosen checkpoint): no figures
        data = getattr(trainer.datamodule, stage)
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                self.draw(trainer, module, data.x, data.y, stage)
        finally:
            module.train(was_training)

    def on_validation_epoch_end(self, trainer, module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0 or trainer.fast_dev_run \
                or trainer.current_epoch + 1 == trainer.max_epochs:
            self._run(trainer, module, "val")

    def on_test_epoch_end(self, trainer, module) -> None:
        self._run(trainer, module, "test")


class ReconstructionFigure(FigureCallback):
    """A fixed set of digits (the first of the set), originals above their reconstructions."""

    def __init__(self, *args, n_images: int = 10, **kwargs):
        super().__init__(*args, **kwargs)
        self.n = n_images

    def draw(self, trainer, module, x, y, stage):
        n = self.n
        originals, labels = x[: 2 * n], y[: 2 * n]
        if module.corrupts():  # a denoising run: originals, the corrupted inputs, what it made of them
            noisy, recon = module.corrupted_view(originals, self.seed, labels)
            rows = torch.cat([originals[:n], noisy[:n], recon[:n]])
            caption = "originals, corrupted inputs (as in training), reconstructions of those"
        else:
            recon = module.reconstruct(originals, labels)
            rows = torch.cat([originals[:n], recon[:n], originals[n:], recon[n:]])
            caption = "originals above reconstructions"
        self.publish(trainer, f"{stage}/reconstructions", image_grid(_images(rows, module), n),
                     f"{self.moment(trainer, stage)}: {caption}")


class PriorSamplesFigure(FigureCallback):
    """decoder(z) for z drawn from the prior; for label-aware variants one row per category."""

    def __init__(self, *args, n_images: int = 10, **kwargs):
        super().__init__(*args, **kwargs)
        self.n = n_images

    def draw(self, trainer, module, x, y, stage):
        g = torch.Generator().manual_seed(self.seed)
        if module.label_aware:
            k = module.n_categories
            labels = torch.arange(k).repeat_interleave(self.n).to(module.device)
            images = module.sample(len(labels), labels=labels, generator=g)
            caption = "one row per category"
        else:
            images = module.sample(self.n * self.n, generator=g)
            caption = "z ~ prior"
        self.publish(trainer, f"{stage}/prior_samples", image_grid(_images(images, module), self.n),
                     f"{self.moment(trainer, stage)}: decoder(z), {caption}")


class LatentScatterFigure(FigureCallback):
    """Codes of the set coloured by digit over the prior's samples; at test also a W&B table of (z, label)."""

    def __init__(self, *args, max_points: int = 5000, projection: str = "pca", tsne_points: int = 2000, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_points, self.projection, self.tsne_points = max_points, projection, tsne_points

    def draw(self, trainer, module, x, y, stage):
        g = torch.Generator().manual_seed(self.seed)
        n = self.tsne_points if self.projection == "tsne" and module.latent_dim > 2 else self.max_points
        idx = torch.randperm(len(x), generator=g)[:n].to(x.device)  # a seeded subsample
        codes = module.encode(x[idx]).float().cpu().numpy()
        labels = y[idx].cpu().numpy()
        prior = module.sample_prior(len(idx), generator=g).float().cpu().numpy()
        when = self.moment(trainer, stage)
        self.publish(trainer, f"{stage}/latent_scatter", figure_to_array(
            latent_scatter(codes, labels, prior, f"{stage} codes, {when}", self.projection, self.seed, module.n_classes)))
        if stage == "test":
            columns = [f"z{i}" for i in range(codes.shape[1])] + ["label"]
            rows = [[*map(float, c), int(lab)] for c, lab in zip(codes, labels)]
            publish_wandb(trainer, {f"{stage}/latent_table": lambda wandb: wandb.Table(columns=columns, data=rows)})


class ManifoldFigure(FigureCallback):
    """For 2-D codes: the decoder over a grid spanning +-2 standard deviations of the prior."""

    def __init__(self, *args, steps: int = 20, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps = steps

    def applies(self, module):
        return module.latent_dim == 2 and not module.label_aware

    def draw(self, trainer, module, x, y, stage):
        spread = 2 * module.prior.std_per_dim()
        a = torch.linspace(-1, 1, self.steps)
        grid = torch.stack(torch.meshgrid(a.flip(0), a, indexing="ij"), -1).reshape(-1, 2)
        z = torch.stack([grid[:, 1] * spread[0], grid[:, 0] * spread[1]], 1).to(module.device)
        self.publish(trainer, f"{stage}/latent_manifold", image_grid(_images(module.decode(z), module), self.steps, pad=0),
                     f"{self.moment(trainer, stage)}: decoder over -2..2 prior std")


class StyleGridFigure(FigureCallback):
    """Rows: the style of a real digit (shown first); columns: every category decoded with that style."""

    def __init__(self, *args, rows: int = 10, **kwargs):
        super().__init__(*args, **kwargs)
        self.rows = rows

    def applies(self, module):
        return module.label_aware

    def draw(self, trainer, module, x, y, stage):
        k = module.n_categories
        z = module.style(x[: self.rows])  # styles of real digits: what the grid should carry across a row
        originals = x[: self.rows]
        grid = module.decode(z.repeat_interleave(k, 0), torch.arange(k, device=module.device).repeat(self.rows))
        rows = torch.cat([originals.unsqueeze(1), grid.view(self.rows, k, -1)], 1).reshape(-1, x.shape[1])
        self.publish(trainer, f"{stage}/style_grid", image_grid(_images(rows, module), k + 1),
                     f"{self.moment(trainer, stage)}: left, a digit; right, its style with each category")


class FiltersFigure(FigureCallback):
    """Weights as images, each scaled to its own range, the first `n_filters` units: above, the encoder's
    first-layer input weights (what a unit looks for); below, the decoder's last-layer output weights
    (what a unit adds: the parts of a nonnegative model). MLP and linear networks only."""

    def __init__(self, *args, n_filters: int = 32, **kwargs):
        super().__init__(*args, **kwargs)
        self.n = n_filters

    @staticmethod
    def _weights(module):
        dim = int(np.prod(module.image_shape))
        sets = [("encoder input weights", pixel_filters(module.encoder, "input", dim)),
                ("decoder output weights", pixel_filters(module.decoder, "output", dim))]
        return [(name, w) for name, w in sets if w is not None]

    def applies(self, module):
        return bool(self._weights(module))

    def draw(self, trainer, module, x, y, stage):
        rows, names = [], []
        for name, w in self._weights(module):
            w = w[: self.n].detach().float()
            low, high = w.min(1, keepdim=True).values, w.max(1, keepdim=True).values
            rows += [(w - low) / (high - low).clamp_min(1e-12),
                     torch.ones(-len(w) % 8, w.shape[1], device=w.device)]  # each set starts a row
            names.append(name)
        self.publish(trainer, f"{stage}/filters", image_grid(_images(torch.cat(rows), module), 8),
                     f"{self.moment(trainer, stage)}: {' above, '.join(names)}{' below' if len(names) > 1 else ''}, "
                     f"first {self.n} units, each scaled to its own range (white = its largest)")


class ClassificationFigure(FigureCallback):
    """Confusion matrix (classifier variants) or clusters against classes (clustering); needs labels."""

    def applies(self, module):
        return module.categories is not None and module.n_classes > 0

    def draw(self, trainer, module, x, y, stage):
        probs = torch.cat([module.classify(x[i: i + 2000]) for i in range(0, len(x), 2000)])
        pred, k, c = probs.argmax(1), module.n_categories, module.n_classes
        counts = torch.bincount(pred * c + y, minlength=k * c).view(k, c).cpu().numpy()
        if module.categories == "digits":
            fig = count_matrix_figure(counts, f"{stage} confusion matrix, {self.moment(trainer, stage)}", "predicted")
            if stage == "test":
                yt, yp = y.cpu().tolist(), pred.cpu().tolist()
                publish_wandb(trainer, {f"{stage}/confusion_matrix_plot": lambda wandb: wandb.plot.confusion_matrix(
                    y_true=yt, preds=yp, class_names=[str(i) for i in range(c)])})
        else:
            # the paper's rule names clusters from validation images: from these on validation,
            # from the assignment learned on validation when testing
            assigned = assign_clusters_by_max_posterior(probs, y) if stage == "val" else module.cluster_assignment
            names = [f"{c} -> {int(assigned[c])}" if assigned is not None else str(c) for c in range(k)]
            fig = count_matrix_figure(counts, f"{stage} clusters against digits, {self.moment(trainer, stage)}",
                                      "cluster -> assigned digit", names)
        self.publish(trainer, f"{stage}/" + ("confusion_matrix" if module.categories == "digits" else "clusters"),
                     figure_to_array(fig))


class TrainingHealthFigure(FigureCallback):
    """Discriminator accuracy per discriminator and epoch: 0.5 is a fooled adversary, near 1 an overpowering one."""

    stages = ("val",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.history: Dict[str, List[float]] = {}

    def applies(self, module):
        return len(getattr(module, "discriminators", ())) > 0

    def _collect(self, trainer) -> None:
        for key, value in trainer.callback_metrics.items():
            if key.startswith("train/disc_acc_") and key.endswith("_epoch"):
                self.history.setdefault(key[len("train/disc_acc_"):-len("_epoch")], []).append(float(value))

    # the module logs its epoch means after the callbacks' epoch-end hooks: read them at the next start
    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch > 0:
            self._collect(trainer)

    def on_train_end(self, trainer, module):
        self._collect(trainer)
        if trainer.is_global_zero and self.applies(module):
            self.draw(trainer, module, None, None, "train")

    def draw(self, trainer, module, x, y, stage):
        if self.history:
            fig = history_figure(self.history, "discriminator accuracy", reference=0.5,
                                 title="0.5: the encoder fools it; near 1: it overpowers the encoder")
            self.publish(trainer, "train/discriminator_accuracy", figure_to_array(fig))


class AccuracyCurveFigure(FigureCallback):
    """Validation accuracy per epoch (classifier variants), or Hungarian accuracy and 1 - cluster error (clustering)."""

    stages = ("val",)
    KEYS = {"val/accuracy": "accuracy", "val/hungarian_accuracy": "Hungarian accuracy",
            "val/cluster_error": "1 - cluster error"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.history: Dict[str, List[float]] = {}

    def applies(self, module):
        return module.categories is not None

    def on_validation_epoch_end(self, trainer, module):
        pass  # the module logs its validation metrics after the callbacks' epoch-end hooks

    def on_validation_end(self, trainer, module):
        if trainer.sanity_checking or trainer.state.fn != "fit" or not self.applies(module):
            return
        for key, name in self.KEYS.items():
            if key in trainer.callback_metrics:
                value = float(trainer.callback_metrics[key])
                self.history.setdefault(name, []).append(1 - value if key.endswith("error") else value)
        if trainer.is_global_zero and self.history:
            self.draw(trainer, module, None, None, "val")

    def draw(self, trainer, module, x, y, stage):
        self.publish(trainer, "val/accuracy_curve", figure_to_array(history_figure(self.history, "validation")))


FIGURES = {
    "reconstructions": ReconstructionFigure,
    "prior_samples": PriorSamplesFigure,
    "latent_scatter": LatentScatterFigure,
    "manifold": ManifoldFigure,
    "style_grid": StyleGridFigure,
    "classification": ClassificationFigure,
    "filters": FiltersFigure,
    "accuracy_curve": AccuracyCurveFigure,
    "training_health": TrainingHealthFigure,
}


def build_figure_callbacks(out_dir, kinds, every_n_epochs: int = 1, n_images: int = 10, max_points: int = 5000,
                           seed: int = 0, projection: str = "pca", tsne_points: int = 2000) -> List[FigureCallback]:
    extra = {"reconstructions": {"n_images": n_images}, "prior_samples": {"n_images": n_images},
             "latent_scatter": {"max_points": max_points, "projection": projection, "tsne_points": tsne_points}}
    return [FIGURES[k](out_dir, every_n_epochs, seed, **extra.get(k, {})) for k in kinds]
