import pytest
import torch

from lightning_aae.losses import discriminator_accuracy, discriminator_loss, generator_loss, reconstruction_loss


def test_reconstruction_losses_are_smallest_for_a_perfect_reconstruction():
    x = (torch.rand(4, 784) > 0.5).float()
    perfect = (x * 2 - 1) * 20  # logits whose sigmoid is ~x
    wrong = -perfect
    for kind in ("mse", "bce"):
        assert reconstruction_loss(perfect, x, kind) < 1e-6
        assert reconstruction_loss(wrong, x, kind) > 0.5


def test_bce_matches_the_bernoulli_likelihood():
    logits, x = torch.randn(3, 784), torch.rand(3, 784)
    p = torch.sigmoid(logits)
    manual = -(x * p.log() + (1 - x) * (1 - p).log()).mean()
    assert torch.allclose(reconstruction_loss(logits, x, "bce"), manual, atol=1e-5)


def test_unknown_reconstruction_loss_is_named():
    with pytest.raises(ValueError, match="l7"):
        reconstruction_loss(torch.zeros(1, 784), torch.zeros(1, 784), "l7")


def test_discriminator_and_generator_losses_pull_opposite_ways():
    confident_right = discriminator_loss(torch.full((8,), 5.0), torch.full((8,), -5.0))
    confident_wrong = discriminator_loss(torch.full((8,), -5.0), torch.full((8,), 5.0))
    assert confident_right < 0.02 < 9 < confident_wrong
    # the generator wins when D calls the codes real
    assert generator_loss(torch.full((8,), 5.0)) < generator_loss(torch.full((8,), -5.0))
    assert torch.isclose(discriminator_loss(torch.zeros(4), torch.zeros(4)), torch.tensor(2 * 0.6931), atol=1e-3)


def test_discriminator_accuracy():
    assert discriminator_accuracy(torch.tensor([1.0, 1.0]), torch.tensor([-1.0, -1.0])) == 1
    assert discriminator_accuracy(torch.tensor([1.0, -1.0]), torch.tensor([1.0, -1.0])) == 0.5
