import pytest
import torch
from torch import nn

from lightning_aae.components import MLPDecoder, MLPDiscriminator, MLPEncoder


@pytest.mark.parametrize("latent", [2, 8])
def test_blocks_have_the_documented_shapes(latent):
    x = torch.rand(5, 1, 28, 28)
    enc = MLPEncoder(latent, [64, 32])
    dec = MLPDecoder(latent, [32, 64])
    disc = MLPDiscriminator(latent, [16])
    z = enc(x)
    assert z.shape == (5, latent)
    assert dec(z).shape == (5, 784)
    assert disc(z).shape == (5,)


def test_paper_sizes_and_dropout():
    enc = MLPEncoder(2, [1000, 1000], dropout=0.2)
    linears = [m for m in enc.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 1000), (1000, 1000), (1000, 2)]
    assert sum(isinstance(m, nn.Dropout) for m in enc.modules()) == 2
    assert not any(isinstance(m, nn.Dropout) for m in MLPEncoder(2, [10]).modules())
