"""Reconstructions, prior samples, the latent scatterplot and the latent manifold, every N epochs."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402

from .publish import figure_to_array, image_grid, publish_image  # noqa: E402


def _images(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().reshape(-1, 28, 28).numpy()


def latent_scatter(codes: np.ndarray, labels: np.ndarray, prior: Optional[np.ndarray], title: str):
    """Codes coloured by digit, prior samples faint grey behind; PCA to 2-D beyond two dimensions."""
    projected = codes.shape[1] > 2
    if projected:
        mean = codes.mean(0)
        _, _, vt = np.linalg.svd(codes - mean, full_matrices=False)
        basis = vt[:2].T
        codes = (codes - mean) @ basis
        prior = (prior - mean) @ basis if prior is not None else None
    elif codes.shape[1] == 1:
        codes = np.concatenate([codes, np.zeros_like(codes)], 1)
        prior = np.concatenate([prior, np.zeros_like(prior)], 1) if prior is not None else None
    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    if prior is not None:
        ax.scatter(prior[:, 0], prior[:, 1], s=2, c="0.85", label="prior", rasterized=True)
    sc = ax.scatter(codes[:, 0], codes[:, 1], s=2, c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, rasterized=True)
    fig.colorbar(sc, ax=ax, ticks=range(10), label="digit")
    ax.set_title(title + (" (PCA projection)" if projected else ""))
    ax.set_xlabel("PC 1" if projected else "z[0]")
    ax.set_ylabel("PC 2" if projected else "z[1]")
    fig.tight_layout()
    return fig


class FiguresCallback(Callback):
    """Figures of the validation set each `every_n_epochs` and of the test set after testing.

    Works only through the module's public interface (`encode`, `decode`, `reconstruct`,
    `sample_prior`, `prior`), under no_grad in eval mode, on rank 0 only.
    """

    def __init__(self, out_dir: Optional[str | Path] = None, every_n_epochs: int = 1, n_images: int = 10,
                 max_points: int = 5000, seed: int = 0):
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.every_n_epochs, self.n_images, self.max_points, self.seed = every_n_epochs, n_images, max_points, seed
        self.saved: dict[str, Path] = {}

    def _publish(self, trainer, key, image, caption=""):
        path = publish_image(trainer, key, image, self.out_dir, caption)
        if path is not None:
            self.saved[key] = path

    @torch.no_grad()
    def make_figures(self, trainer, module, x: torch.Tensor, y: torch.Tensor, stage: str) -> None:
        was_training = module.training
        module.eval()
        try:
            g = torch.Generator().manual_seed(self.seed)
            n = self.n_images
            epoch = f"epoch {trainer.current_epoch}"
            originals, labels = x[: n * 2], y[: n * 2]
            recon = module.reconstruct(originals, labels)
            pairs = torch.cat([originals[:n], recon[:n], originals[n:], recon[n:]])
            self._publish(trainer, f"{stage}/reconstructions", image_grid(_images(pairs), n),
                          f"{epoch}: originals above reconstructions")
            if module.label_aware:
                self._publish(trainer, f"{stage}/style_grid", self.style_grid(module, g),
                              f"{epoch}: rows share a style z, columns are the categories")
            else:
                self._publish(trainer, f"{stage}/prior_samples",
                              image_grid(_images(module.sample(n * n, generator=g)), n),
                              f"{epoch}: decoder(z), z ~ prior")
            idx = torch.randperm(len(x), generator=g)[: self.max_points].to(x.device)
            codes = module.encode(x[idx]).float().cpu().numpy()
            prior = module.sample_prior(len(idx), generator=g).float().cpu().numpy()
            fig = latent_scatter(codes, y[idx].cpu().numpy(), prior, f"{stage} codes, {epoch}")
            self._publish(trainer, f"{stage}/latent_scatter", figure_to_array(fig))
            if codes.shape[1] == 2 and not module.label_aware:
                self._publish(trainer, f"{stage}/latent_manifold", self.manifold(module),
                              f"{epoch}: decoder over -2..2 prior std")
        finally:
            module.train(was_training)

    @torch.no_grad()
    def manifold(self, module, steps: int = 20) -> np.ndarray:
        """Decode a steps x steps grid spanning +-2 standard deviations of a 2-D prior."""
        spread = 2 * module.prior.sample(20000, device="cpu").std(0)
        a = torch.linspace(-1, 1, steps)
        grid = torch.stack(torch.meshgrid(a.flip(0), a, indexing="ij"), -1).reshape(-1, 2)
        z = torch.stack([grid[:, 1] * spread[0], grid[:, 0] * spread[1]], 1).to(module.device)
        return image_grid(_images(module.decode(z)), steps, pad=0)

    @torch.no_grad()
    def style_grid(self, module, generator: torch.Generator, rows: int = 10) -> np.ndarray:
        """Rows: one style z drawn from the prior each; columns: every category decoded with it."""
        k = module.n_categories
        z = module.sample_prior(rows, generator=generator).repeat_interleave(k, 0)
        labels = torch.arange(k, device=module.device).repeat(rows)
        return image_grid(_images(module.decode(z, labels)), k)

    def on_validation_epoch_end(self, trainer, module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs and not trainer.fast_dev_run:
            return
        data = trainer.datamodule.val
        self.make_figures(trainer, module, data.x, data.y, "val")

    def on_test_epoch_end(self, trainer, module) -> None:
        if trainer.is_global_zero:
            data = trainer.datamodule.test
            self.make_figures(trainer, module, data.x, data.y, "test")
