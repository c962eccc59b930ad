"""Network building blocks, kept apart from the LightningModules that train them.

`ARCHS` maps `model.arch` to (encoder builder, decoder builder); each builder takes the model
config and the code size. `ACTIVATIONS` is the list `model.activation` / `model.code_activation`
choose from, `RNN_CELLS` the one `model.rnn_cell` chooses from.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

MNIST_SHAPE = (1, 28, 28)
IMAGE_DIM = 28 * 28  # MNIST's, the default of the blocks below


def image_shape_of(model_cfg) -> Tuple[int, int, int]:
    """[C, H, W] of the images (model.image_shape, set from the data); MNIST's where unset."""
    shape = model_cfg.get("image_shape") if hasattr(model_cfg, "get") else None
    return tuple(int(v) for v in shape) if shape else MNIST_SHAPE

ACTIVATIONS = {"relu": nn.ReLU, "selu": nn.SELU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "identity": nn.Identity}
RNN_CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


def _selu_init(layers: Sequence[nn.Module]) -> None:
    """LeCun-normal weights and zero biases: what keeps SELU activations self-normalising."""
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, 1.0 / math.sqrt(layer.in_features))
            nn.init.zeros_(layer.bias)


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, dropout: float = 0.0, activation: str = "relu",
        batch_norm: bool = False, out_activation: str = "identity") -> nn.Sequential:
    """Linear(-BatchNorm)-activation(-Dropout) per hidden layer, then a Linear output layer (with
    BatchNorm too when `batch_norm`: the paper's clustering encoder normalises its output heads),
    then `out_activation` (identity: none)."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers.append(nn.Linear(in_dim, h))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_dim = h
    layers.append(nn.Linear(in_dim, out_dim))
    if batch_norm:
        layers.append(nn.BatchNorm1d(out_dim))
    if out_activation != "identity":
        layers.append(ACTIVATIONS[out_activation]())
    if activation == "selu":
        _selu_init(layers)
    return nn.Sequential(*layers)


def pixel_filters(net: nn.Module, side: str = "input", image_dim: int = IMAGE_DIM) -> Optional[torch.Tensor]:
    """Weights as images, [units, image_dim]: side "input", the first layer's, when it is a Linear reading the
    flat image (what each unit looks for; an encoder); side "output", the last layer's, transposed, when
    it is a Linear writing the flat image (what each unit adds to the image; a decoder's parts). Arch
    mlp or linear; None where the layer is anything else (conv, rnn, batch norm after it)."""
    layers = [m for m in net.modules() if next(m.parameters(recurse=False), None) is not None]
    if not layers:
        return None
    layer = layers[0] if side == "input" else layers[-1]
    if not isinstance(layer, nn.Linear):
        return None
    if side == "input":
        return layer.weight if layer.in_features == image_dim else None
    return layer.weight.t() if layer.out_features == image_dim else None


class MLPEncoder(nn.Module):
    """q(z|x): a flattened image [B, C*H*W] to a deterministic code [B, latent_dim]."""

    def __init__(self, latent_dim: int, hidden: Sequence[int] = (1000, 1000), dropout: float = 0.0,
                 in_dim: int = IMAGE_DIM, activation: str = "relu", batch_norm: bool = False,
                 code_activation: str = "identity"):
        super().__init__()
        self.net = mlp(in_dim, hidden, latent_dim, dropout, activation, batch_norm, code_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    """p(x|z): a code [B, in_dim] to pixel logits [B, C*H*W]; the reconstruction loss says how they
    become an image (losses.IMAGE_MAPS: sigmoid, or as they are for mse_linear)."""

    def __init__(self, in_dim: int, hidden: Sequence[int] = (1000, 1000), dropout: float = 0.0,
                 out_dim: int = IMAGE_DIM, activation: str = "relu"):
        super().__init__()
        self.net = mlp(in_dim, hidden, out_dim, dropout, activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """D(z): a code [B, in_dim] to one logit per row, high for samples of the prior. Always ReLU and
    never batch norm (normalising over a batch of all-real or all-fake rows hands D a shortcut)."""

    def __init__(self, in_dim: int, hidden: Sequence[int] = (1000, 1000), dropout: float = 0.0):
        super().__init__()
        self.net = mlp(in_dim, hidden, 1, dropout)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)


class _StackedRNN(nn.Module):
    """One recurrent layer per entry of `hidden` (sizes may differ), batch first."""

    def __init__(self, in_dim: int, hidden: Sequence[int], cell: str):
        super().__init__()
        sizes = [in_dim, *hidden]
        self.layers = nn.ModuleList(RNN_CELLS[cell](a, b, batch_first=True) for a, b in zip(sizes, sizes[1:]))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            seq, _ = layer(seq)
        return seq


class RNNEncoder(nn.Module):
    """Reads the image row by row (H steps of the row's C*W pixels); the last step's state, through a
    linear layer, is the code."""

    def __init__(self, latent_dim: int, hidden: Sequence[int] = (256,), cell: str = "gru",
                 code_activation: str = "identity", shape: Tuple[int, int, int] = MNIST_SHAPE):
        super().__init__()
        self.shape = tuple(shape)
        self.rnn = _StackedRNN(self.shape[0] * self.shape[2], hidden, cell)
        self.head = nn.Sequential(nn.Linear(hidden[-1], latent_dim), ACTIVATIONS[code_activation]())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = self.shape
        rows = x.reshape(-1, c, h, w).permute(0, 2, 1, 3).reshape(-1, h, c * w)
        return self.head(self.rnn(rows)[:, -1])


class RNNDecoder(nn.Module):
    """The code repeated at each of H steps into a recurrent stack; each step's output, through a
    linear layer, is one row of C*W pixel logits."""

    def __init__(self, in_dim: int, hidden: Sequence[int] = (256,), cell: str = "gru",
                 shape: Tuple[int, int, int] = MNIST_SHAPE):
        super().__init__()
        self.shape = tuple(shape)
        self.rnn = _StackedRNN(in_dim, hidden, cell)
        self.row = nn.Linear(hidden[-1], self.shape[0] * self.shape[2])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        c, h, w = self.shape
        rows = self.row(self.rnn(z.unsqueeze(1).expand(-1, h, -1)))  # [B, H, C*W]
        return rows.reshape(-1, h, c, w).permute(0, 2, 1, 3).flatten(1)


class ConvEncoder(nn.Module):
    """All-convolutional q(z|x): two stride-2 convolutions (H -> H/2 -> H/4: 28 -> 14 -> 7), no pooling,
    then a linear head. H and W must be multiples of 4."""

    def __init__(self, latent_dim: int, channels: Sequence[int] = (32, 64), batch_norm: bool = False,
                 dropout: float = 0.0, shape: Tuple[int, int, int] = MNIST_SHAPE):
        super().__init__()
        self.shape = tuple(shape)
        layers: list[nn.Module] = []
        c_in = self.shape[0]
        for c in channels[:2]:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(0.2))
            c_in = c
        self.conv = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
                                  nn.Linear(c_in * (self.shape[1] // 4) * (self.shape[2] // 4), latent_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x.reshape(-1, *self.shape)))


class ConvDecoder(nn.Module):
    """p(x|z): a linear layer to H/4 x W/4 feature maps, two stride-2 transposed convolutions to C x H x W logits."""

    def __init__(self, in_dim: int, channels: Sequence[int] = (32, 64), batch_norm: bool = False,
                 shape: Tuple[int, int, int] = MNIST_SHAPE):
        super().__init__()
        c1, c2 = channels[:2]
        self.shape = tuple(shape)
        self.fc = nn.Sequential(nn.Linear(in_dim, c2 * (self.shape[1] // 4) * (self.shape[2] // 4)), nn.ReLU())
        layers: list[nn.Module] = [nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(c1))
        layers += [nn.ReLU(), nn.ConvTranspose2d(c1, self.shape[0], 4, stride=2, padding=1)]
        self.deconv = nn.Sequential(*layers)
        self.c2 = c2

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z).view(-1, self.c2, self.shape[1] // 4, self.shape[2] // 4)).flatten(1)


# model.arch -> (encoder builder, decoder builder), each of (model config, code size); config
# validation reads the names from here
def _mlp_encoder(m, out: int, activation: Optional[str] = None) -> MLPEncoder:
    return MLPEncoder(out, m["hidden_dims"], m["dropout"], in_dim=math.prod(image_shape_of(m)),
                      activation=activation or m["activation"], batch_norm=m["batch_norm"],
                      code_activation=m["code_activation"])


def _mlp_decoder(m, inp: int, activation: Optional[str] = None) -> MLPDecoder:
    return MLPDecoder(inp, list(reversed(m["hidden_dims"])), m["dropout"], out_dim=math.prod(image_shape_of(m)),
                      activation=activation or m["activation"])


ARCHS = {
    "mlp": (_mlp_encoder, _mlp_decoder),
    # no activation anywhere: with recon_loss=mse_linear its optimum spans the top principal components
    "linear": (partial(_mlp_encoder, activation="identity"), partial(_mlp_decoder, activation="identity")),
    "conv": (lambda m, out: ConvEncoder(out, m["conv_channels"], m["batch_norm"], m["dropout"], image_shape_of(m)),
             lambda m, inp: ConvDecoder(inp, m["conv_channels"], m["batch_norm"], image_shape_of(m))),
    "rnn": (lambda m, out: RNNEncoder(out, m["hidden_dims"], m["rnn_cell"], m["code_activation"], image_shape_of(m)),
            lambda m, inp: RNNDecoder(inp, list(reversed(m["hidden_dims"])), m["rnn_cell"], image_shape_of(m))),
}


def build_encoder(model_cfg, out_dim: int) -> nn.Module:
    return ARCHS[model_cfg["arch"]][0](model_cfg, out_dim)


def build_decoder(model_cfg, in_dim: int) -> nn.Module:
    return ARCHS[model_cfg["arch"]][1](model_cfg, in_dim)
