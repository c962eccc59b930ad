"""Network building blocks, kept apart from the LightningModules that train them."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

IMAGE_DIM = 28 * 28


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """Linear-ReLU(-Dropout) stack ending in a plain Linear layer."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_dim = h
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """q(z|x): a flattened image [B, 784] to a deterministic code [B, latent_dim]."""

    def __init__(self, latent_dim: int, hidden: Sequence[int] = (1000, 1000), dropout: float = 0.0,
                 in_dim: int = IMAGE_DIM):
        super().__init__()
        self.net = mlp(in_dim, hidden, latent_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    """p(x|z): a code [B, in_dim] to pixel logits [B, 784]; sigmoid of them is the image."""

    def __init__(self, in_dim: int, hidden: Sequence[int] = (1000, 1000), dropout: float = 0.0,
                 out_dim: int = IMAGE_DIM):
        super().__init__()
        self.net = mlp(in_dim, hidden, out_dim, dropout)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """D(z): a code [B, in_dim] to one logit per row, high for samples of the prior."""

    def __init__(self, in_dim: int, hidden: Sequence[int] = (1000, 1000), dropout: float = 0.0):
        super().__init__()
        self.net = mlp(in_dim, hidden, 1, dropout)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)


class ConvEncoder(nn.Module):
    """All-convolutional q(z|x): two stride-2 convolutions (28 -> 14 -> 7), no pooling, then a linear head."""

    def __init__(self, latent_dim: int, channels: Sequence[int] = (32, 64), batch_norm: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in channels[:2]:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(0.2))
            c_in = c
        self.conv = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
                                  nn.Linear(c_in * 7 * 7, latent_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x.reshape(-1, 1, 28, 28)))


class ConvDecoder(nn.Module):
    """p(x|z): a linear layer to 7x7 feature maps, two stride-2 transposed convolutions to 28x28 logits."""

    def __init__(self, in_dim: int, channels: Sequence[int] = (32, 64), batch_norm: bool = False):
        super().__init__()
        c1, c2 = channels[:2]
        self.fc = nn.Sequential(nn.Linear(in_dim, c2 * 7 * 7), nn.ReLU())
        layers: list[nn.Module] = [nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(c1))
        layers += [nn.ReLU(), nn.ConvTranspose2d(c1, 1, 4, stride=2, padding=1)]
        self.deconv = nn.Sequential(*layers)
        self.c2 = c2

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z).view(-1, self.c2, 7, 7)).flatten(1)


# model.arch -> (encoder builder, decoder builder), each of (model config, code size); config
# validation reads the names from here
ARCHS = {
    "mlp": (lambda m, out: MLPEncoder(out, m["hidden_dims"], m["dropout"]),
            lambda m, inp: MLPDecoder(inp, list(reversed(m["hidden_dims"])), m["dropout"])),
    "conv": (lambda m, out: ConvEncoder(out, m["conv_channels"], m["batch_norm"], m["dropout"]),
             lambda m, inp: ConvDecoder(inp, m["conv_channels"], m["batch_norm"])),
}


def build_encoder(model_cfg, out_dim: int) -> nn.Module:
    return ARCHS[model_cfg["arch"]][0](model_cfg, out_dim)


def build_decoder(model_cfg, in_dim: int) -> nn.Module:
    return ARCHS[model_cfg["arch"]][1](model_cfg, in_dim)
