"""Adversarial autoencoders (Makhzani et al., 2015) on MNIST with PyTorch Lightning and W&B."""
__version__ = "0.1.0"
