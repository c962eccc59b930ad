"""Adversarial autoencoders (Makhzani et al., 2015) on MNIST with PyTorch Lightning and W&B."""
import warnings

__version__ = "0.1.0"

# Evaluation metrics are torchmetrics, synchronised before they are logged; Lightning cannot see that.
warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")
# Raised inside Lightning 2.6 by every CombinedLoader with torch 2.14; nothing to act on here.
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
# Lightning says so whenever a logger is attached (every run has the CSV one) and an epoch is shorter than
# log_every_n_steps; the epoch means are logged anyway.
warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
