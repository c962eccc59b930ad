import math

import pytest
import torch

from lightning_aae.losses import (discriminator_accuracy, discriminator_loss, generator_loss, marginal_entropy_gap,
                                  mean_entropy, reconstruction_loss)


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


def test_marginal_entropy_gap_is_zero_for_a_balanced_batch_and_log_k_for_one_category():
    k = 5
    balanced = torch.eye(k).repeat(3, 1)
    assert marginal_entropy_gap(balanced).item() == pytest.approx(0.0, abs=1e-6)
    assert marginal_entropy_gap(torch.full((7, k), 1 / k)).item() == pytest.approx(0.0, abs=1e-6)
    one = torch.zeros(6, k)
    one[:, 2] = 1
    assert marginal_entropy_gap(one).item() == pytest.approx(math.log(k), rel=1e-5)
    half = torch.zeros(4, k)
    half[:2, 0], half[2:, 1] = 1, 1  # two of five categories, equally
    assert marginal_entropy_gap(half).item() == pytest.approx(math.log(k) - math.log(2), rel=1e-5)


def test_marginal_entropy_gap_pulls_the_batch_toward_its_empty_categories():
    logits = torch.tensor([[4.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 4.0, 0.0]], requires_grad=True)
    marginal_entropy_gap(torch.softmax(logits, 1)).backward()
    # descending the gradient raises the empty third category's logit in every row, lowers the crowded first
    assert (logits.grad[:, 2] < 0).all() and (logits.grad[:2, 0] > 0).all()


def test_mean_entropy_is_zero_for_one_hot_rows_and_log_k_for_uniform_ones():
    k = 4
    assert mean_entropy(torch.eye(k)).item() == pytest.approx(0.0, abs=1e-6)
    assert mean_entropy(torch.full((3, k), 1 / k)).item() == pytest.approx(math.log(k), rel=1e-5)
    mixed = torch.cat([torch.eye(k)[:1], torch.full((1, k), 1 / k)])  # one sure row, one uniform
    assert mean_entropy(mixed).item() == pytest.approx(math.log(k) / 2, rel=1e-5)
    # uniform rows have the same mean as balanced one-hots: the gap cannot tell them apart, this term can
    assert marginal_entropy_gap(torch.full((3, k), 1 / k)).item() == pytest.approx(0.0, abs=1e-6)
