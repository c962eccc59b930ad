"""Behaviour of each variant that could fail: decoders, classifiers, cluster scores, priors."""
import math

import pytest
import torch

from conftest import SMALL
from lightning_aae.config import load_config
from lightning_aae.losses import marginal_entropy_gap, mean_entropy
from lightning_aae.metrics import (assign_clusters_by_majority, assign_clusters_by_max_posterior, cluster_error,
                                   cluster_error_by_class, hungarian_accuracy)
from lightning_aae.priors import make_prior
from lightning_aae.schedule import StepBatch, reconstruction_phase
from lightning_aae.training import train
from lightning_aae.variants import VARIANTS, build_module


def module_for(config, *overrides):
    return build_module(load_config(f"configs/{config}.yaml", SMALL + list(overrides))).eval()


def optimizers_of(module):
    built = module.configure_optimizers()
    return built[0] if isinstance(built, tuple) else built  # (optimizers, schedulers) where there are schedules


def test_supervised_decoder_output_changes_with_the_label_and_only_with_it():
    torch.manual_seed(0)
    m = module_for("supervised")
    z = torch.randn(4, m.latent_dim)
    threes, sevens = torch.full((4,), 3), torch.full((4,), 7)
    with torch.no_grad():
        a, again, b = m.decode(z, threes), m.decode(z, threes), m.decode(z, sevens)
    assert torch.equal(a, again)
    assert (a - b).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="labels"):
        m.decode(z)


def test_semi_supervised_encoder_splits_label_and_style():
    m = module_for("semi_supervised")
    x = torch.rand(5, 784)
    with torch.no_grad():
        probs, z = m.classify(x), m.encode(x)
    assert probs.shape == (5, 10) and torch.allclose(probs.sum(1), torch.ones(5))
    assert z.shape == (5, 10)
    assert [type(o).__name__ for o in optimizers_of(m)] == ["Adam"] * 4  # recon, disc, gen, classify
    assert set(m.discriminators) == {"category", "style"}


def test_semi_supervised_classifier_beats_chance_after_a_few_hundred_steps(small_overrides):
    cfg = load_config("configs/semi_supervised.yaml", small_overrides + [
        "trainer.max_epochs=1", "trainer.limit_train_batches=300", "trainer.limit_val_batches=4",
        "trainer.limit_test_batches=1.0", "data.labels_per_class=10"])
    metrics = train(cfg, verbose=False)
    assert metrics["test/n_images"] == 10000
    assert metrics["test/accuracy"] > 0.5  # chance is 0.1; 100 labels
    assert math.isclose(metrics["test/error"], 1 - metrics["test/accuracy"], abs_tol=1e-6)


def test_cluster_error_rule():
    # 3 clusters x 10 digits; cluster 0 holds only 1s, cluster 1 only 2s, cluster 2 splits 3s and 4s
    counts = torch.zeros(3, 10, dtype=torch.long)
    counts[0, 1], counts[1, 2], counts[2, 3], counts[2, 4] = 50, 30, 15, 5
    perfect = torch.tensor([1, 2, 3])
    assert cluster_error(counts[:2], perfect[:2]) == 0
    assert cluster_error(counts, perfect).item() == pytest.approx(5 / 100)
    assert cluster_error(counts, torch.tensor([1, 2, 4])).item() == pytest.approx(15 / 100)
    assert hungarian_accuracy(counts) == pytest.approx(95 / 100)
    # by class: all 4s are in a cluster named 3; no 0 at all; weighted by class sizes: the cluster error
    by_class = cluster_error_by_class(counts, perfect)
    assert by_class[[1, 2, 3, 4]].tolist() == [0, 0, 0, 1] and by_class[0].isnan()
    sizes = counts.sum(0)
    assert (by_class.nan_to_num() * sizes).sum() / sizes.sum() == pytest.approx(cluster_error(counts, perfect).item())
    # two clusters holding 7s: matching is one-to-one, so the second one counts as wrong
    assert hungarian_accuracy(torch.tensor([[0] * 7 + [10, 0, 0], [0] * 7 + [10, 0, 0]])) == 0.5


def test_majority_naming_takes_each_clusters_most_common_digit_and_is_never_worse_on_its_own_counts():
    counts = torch.zeros(3, 10, dtype=torch.long)
    counts[0, 1], counts[1, 2], counts[2, 3], counts[2, 4] = 50, 30, 15, 5
    assert assign_clusters_by_majority(counts).tolist() == [1, 2, 3]
    g = torch.Generator().manual_seed(0)
    for _ in range(20):  # on the counts it was learned from, no naming beats the majority
        counts = torch.randint(0, 50, (16, 10), generator=g)
        other = torch.randint(0, 10, (16,), generator=g)
        assert cluster_error(counts, assign_clusters_by_majority(counts)) <= cluster_error(counts, other)


def test_each_cluster_takes_the_digit_of_its_most_confident_image():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])
    labels = torch.tensor([5, 3, 7, 1])
    assert assign_clusters_by_max_posterior(probs, labels).tolist() == [5, 1]


@pytest.mark.parametrize("name", ["mixture", "swiss_roll"])
def test_ten_part_priors_draw_each_label_from_its_own_part(name):
    prior = make_prior(name, 2, 1.0)
    torch.manual_seed(0)
    centres = torch.stack([prior.sample_given(torch.full((2000,), k)).mean(0) for k in range(10)])
    gaps = torch.cdist(centres, centres) + torch.eye(10) * 100
    assert gaps.min() > 0.3  # the ten parts are apart
    unlabeled = prior.sample_given(torch.full((5000,), -1))
    assert unlabeled.shape == (5000, 2) and torch.isfinite(unlabeled).all()


def test_uniform_and_gaussian_priors_have_the_configured_spread():
    torch.manual_seed(0)
    for name in ("gaussian", "uniform"):
        s = make_prior(name, 3, 2.0).sample(50000)
        assert torch.allclose(s.std(0), torch.full((3,), 2.0), rtol=0.03)


def test_label_regularized_discriminator_sees_the_label_slot():
    m = module_for("aae_label_regularized")
    x, y = torch.rand(6, 784), torch.tensor([0, 1, 2, -1, -1, 9])
    (fake, real), = m.adversary_pairs(StepBatch(x=x, target=x, y=y)).values()
    assert fake.shape == real.shape == (6, 2 + 11)
    assert torch.equal(fake[:, 2:], real[:, 2:]) and fake[3, 2 + 10] == 1  # unlabeled -> 11th slot


def test_vae_training_loss_includes_the_kl_term():
    m = module_for("vae")
    x = torch.rand(8, 784)
    torch.manual_seed(0)
    with_kl = reconstruction_phase(m, StepBatch(x=x, target=x, y=None))[0]
    m.model_cfg["kl_weight"] = 0.0
    torch.manual_seed(0)
    without = reconstruction_phase(m, StepBatch(x=x, target=x, y=None))[0]
    assert with_kl > without


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_conv_blocks_work_for_every_variant(variant):
    config = {"aae": "aae", "autoencoder": "autoencoder", "supervised": "supervised", "vae": "vae",
              "semi_supervised": "semi_supervised", "clustering": "clustering", "dim_reduction": "dim_reduction"}[variant]
    m = module_for(config, "model.arch=conv", "model.batch_norm=true")
    x = torch.rand(3, 784)
    y = torch.tensor([1, 2, 3])
    with torch.no_grad():
        assert m.reconstruct(x, y).shape == (3, 784)
        assert m.encode(x).shape == (3, m.latent_dim)
    assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in m.discriminators.modules())


def test_dim_reduction_represents_head_plus_style_and_spreads_the_heads():
    m = module_for("dim_reduction")
    x = torch.rand(4, 784)
    with torch.no_grad():
        probs, style = m.classify(x), m.heads(x)[1]
        assert torch.allclose(m.encode(x), probs @ m.cluster_heads + style, atol=1e-6)
        assert torch.pdist(m.cluster_heads).min() >= 2.0 and m.head_penalty() == 0  # spread at construction
        m.cluster_heads.zero_()
        assert m.head_penalty() == pytest.approx(2.0 * 20 * 19 / 2)  # every pair closer than 2
        m.cluster_heads.copy_(torch.arange(20.0).unsqueeze(1).repeat(1, 2) * 10)
        assert m.head_penalty() == 0
    assert any(p is m.cluster_heads for p in m.phase_params()["recon"])


def test_category_noise_blurs_both_inputs_of_the_categorical_discriminator():
    torch.manual_seed(0)
    x = torch.rand(256, 784)
    exact = module_for("clustering", "model.category_noise=0")
    torch.manual_seed(1)
    fake, real = exact.adversary_pairs(StepBatch(x=x, target=x, y=None))["category"]
    assert torch.equal(real.sum(1), torch.ones(256)) and set(real.unique().tolist()) == {0.0, 1.0}
    assert torch.allclose(fake.sum(1), torch.ones(256))
    noisy = module_for("clustering", "model.category_noise=0.3")
    noisy.load_state_dict(exact.state_dict())
    torch.manual_seed(1)  # the same category draw, so both differences are the noise alone
    n_fake, n_real = noisy.adversary_pairs(StepBatch(x=x, target=x, y=None))["category"]
    assert 0.25 < (n_fake - fake).std() < 0.35 and 0.25 < (n_real - real).std() < 0.35
    assert n_fake.requires_grad  # the generator still gets a gradient through the noisy codes


def test_category_noise_schedule_steps_or_moves_linearly_then_holds(monkeypatch):
    steady = module_for("clustering", "model.category_noise=0.3")
    assert [steady.category_noise_at(e) for e in (0, 7, 500)] == [0.3, 0.3, 0.3]
    annealed = module_for("clustering", "model.category_noise=0.3", "model.category_noise_final=0.1",
                          "model.category_noise_epochs=4")
    assert [round(annealed.category_noise_at(e), 6) for e in (0, 1, 2, 4, 9)] == [0.3, 0.25, 0.2, 0.1, 0.1]
    step = module_for("clustering", "model.category_noise=0.3", "model.category_noise_final=0",
                      "model.category_noise_from=148")
    assert [step.category_noise_at(e) for e in (0, 147, 148, 300)] == [0.3, 0.3, 0.0, 0.0]
    late = module_for("clustering", "model.category_noise=0.3", "model.category_noise_final=0.1",
                      "model.category_noise_from=10", "model.category_noise_epochs=4")
    assert [round(late.category_noise_at(e), 6) for e in (9, 10, 12, 14, 20)] == [0.3, 0.3, 0.2, 0.1, 0.1]
    # the training step reads the trainer's epoch: at epoch 4 the pairs carry the final noise
    torch.manual_seed(0)
    x = torch.rand(512, 784)
    exact = module_for("clustering", "model.category_noise=0")
    annealed.load_state_dict(exact.state_dict())
    torch.manual_seed(1)
    fake, real = exact.adversary_pairs(StepBatch(x=x, target=x, y=None))["category"]
    monkeypatch.setattr(type(annealed), "current_epoch", property(lambda self: 4))
    torch.manual_seed(1)
    n_fake, n_real = annealed.adversary_pairs(StepBatch(x=x, target=x, y=None))["category"]
    assert 0.08 < (n_fake - fake).std() < 0.12 and 0.08 < (n_real - real).std() < 0.12


def test_category_balance_and_confidence_join_the_reconstruction_loss_and_balance_fills_empty_categories():
    torch.manual_seed(0)
    x = torch.rand(300, 784)
    batch = StepBatch(x=x, target=x, y=None)
    plain = module_for("clustering")
    assert "category_balance" not in plain.code_penalties(batch, plain(x))
    # without batch norm (configs/clustering.yaml has it): it would normalise the collapse below away
    module = module_for("clustering", "model.n_clusters=6", "model.category_balance=2.0", "model.batch_norm=false").train()
    with torch.no_grad():  # start collapsed: every image in category 0
        [m for m in module.encoder.modules() if isinstance(m, torch.nn.Linear)][-1].bias[0] += 20.0
    opt = torch.optim.Adam(module.encoder.parameters(), lr=1e-3)
    used = []
    for step in range(150):
        out = module.training_forward(x, None)
        term = module.code_penalties(batch, out)["category_balance"]
        if step == 0:
            assert term.item() == pytest.approx(2.0 * marginal_entropy_gap(out["probs"]).item())
            used.append(len(out["probs"].argmax(1).unique()))
        opt.zero_grad()
        term.backward()
        opt.step()
    used.append(len(module.classify(x).argmax(1).unique()))
    assert used == [1, 6]
    sure = module_for("clustering", "model.n_clusters=6", "model.category_confidence=0.5")
    out = sure(x)
    terms = sure.code_penalties(batch, out)
    assert "category_balance" not in terms
    assert terms["category_confidence"].item() == pytest.approx(0.5 * mean_entropy(out["probs"]).item())


def test_category_terms_begin_at_category_terms_from(monkeypatch):
    torch.manual_seed(0)
    x = torch.rand(64, 784)
    batch = StepBatch(x=x, target=x, y=None)
    late = module_for("clustering", "model.n_clusters=6", "model.category_balance=0.01",
                      "model.category_confidence=0.02", "model.category_terms_from=80")
    out = late(x)
    for epoch, present in ((0, False), (79, False), (80, True), (130, True)):
        monkeypatch.setattr(type(late), "current_epoch", property(lambda self, e=epoch: e))
        terms = late.code_penalties(batch, out)
        assert ("category_balance" in terms, "category_confidence" in terms) == (present, present), epoch
    assert terms["category_balance"].item() == pytest.approx(0.01 * marginal_entropy_gap(out["probs"]).item())
    with pytest.raises(Exception, match="category_terms_from says when model.category_balance"):
        load_config("configs/clustering.yaml", ["model.category_terms_from=80"])
    with pytest.raises(Exception, match="category_terms_from must not be negative"):
        load_config("configs/clustering.yaml", ["model.category_terms_from=-1", "model.category_balance=0.01"])


def test_category_balance_is_for_the_categorical_variants_only():
    for key in ("category_balance", "category_confidence"):
        with pytest.raises(Exception, match="model.category_balance / category_confidence apply to the categories of"):
            load_config("configs/aae.yaml", [f"model.{key}=0.1"])
    with pytest.raises(Exception, match="model.category_balance must not be negative"):
        load_config("configs/clustering.yaml", ["model.category_balance=-1"])


def test_category_noise_schedule_needs_its_end_and_its_start():
    with pytest.raises(Exception, match="category_noise_final from epoch 0 on is model.category_noise"):
        load_config("configs/clustering.yaml", ["model.category_noise_final=0.1"])
    for key in ("category_noise_epochs=10", "category_noise_from=5"):
        with pytest.raises(Exception, match="toward model.category_noise_final: set it too"):
            load_config("configs/clustering.yaml", [f"model.{key}"])
    for key in ("category_noise_epochs", "category_noise_from"):
        with pytest.raises(Exception, match=f"{key} must not be negative"):
            load_config("configs/clustering.yaml", [f"model.{key}=-2", "model.category_noise_final=0"])
    with pytest.raises(Exception, match="category_noise_final must not be negative"):
        load_config("configs/clustering.yaml", ["model.category_noise_final=-0.1", "model.category_noise_epochs=3"])
    with pytest.raises(Exception, match="category_noise.*variant=aae"):
        load_config("configs/aae.yaml", ["model.category_noise_final=0.1", "model.category_noise_epochs=3"])


def test_category_noise_is_refused_where_there_is_no_categorical_discriminator():
    with pytest.raises(Exception, match="category_noise.*variant=aae"):
        load_config("configs/aae.yaml", ["model.category_noise=0.2"])
    with pytest.raises(Exception, match="category_noise must not be negative"):
        load_config("configs/clustering.yaml", ["model.category_noise=-1"])


def test_adam_is_fused_on_cpu_unless_turned_off():
    opts = optimizers_of(module_for("semi_supervised"))
    assert [o.defaults["fused"] for o in opts] == [True] * 4
    plain = optimizers_of(module_for("semi_supervised", "optim.fused=false"))
    assert [o.defaults["fused"] for o in plain] == [None] * 4  # torch's own choice (for-loop / foreach)


def test_streaming_cluster_rule_equals_the_rule_over_the_whole_set():
    from lightning_aae.metrics import MaxPosteriorRule

    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(1000, 7, generator=g) * 3, 1)
    labels = torch.randint(0, 10, (1000,), generator=g)
    rule = MaxPosteriorRule(7)
    for i in range(0, 1000, 128):  # batches, as validation feeds it
        rule.update(probs[i: i + 128], labels[i: i + 128])
    assert torch.equal(rule.compute(), assign_clusters_by_max_posterior(probs, labels))
