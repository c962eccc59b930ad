"""Options of the semi-supervised recipe: input noise (training only, clean target), the labeled
batch's shifts, SGD, milestones."""
import pytest
import torch

from conftest import SMALL
from lightning_aae.config import ConfigError, load_config
from lightning_aae.losses import reconstruction_loss
from lightning_aae.schedule import reconstruction_phase
from lightning_aae.variants import build_module


NO_WARP = ["model.labeled_rotate=0", "model.labeled_elastic=0"]  # configs/semi_supervised.yaml rotates and warps


def _module(*overrides, config="semi_supervised"):
    return build_module(load_config(f"configs/{config}.yaml", SMALL + list(overrides)))


def _schedules(module):
    built = module.configure_optimizers()
    return built if isinstance(built, tuple) else (built, [])


@pytest.mark.parametrize("config", ["autoencoder", "aae", "semi_supervised", "vae"])
def test_input_noise_corrupts_the_encoder_input_in_training_and_keeps_the_target_clean(config):
    shift = ["model.labeled_shift=0", *NO_WARP] if config == "semi_supervised" else []  # the noise alone
    module = _module("model.input_noise=0.5", *shift, config=config).train()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(500, 784, generator=g), torch.randint(0, 10, (500,), generator=g)
    batch = module.step_batch({"unlabeled": (x, y), "labeled": (x[:50], y[:50])} if config == "semi_supervised"
                              else (x, y))
    assert torch.equal(batch.target, x)
    assert 0.48 < (batch.x - x).std() < 0.52
    if batch.labeled is not None:
        assert 0.45 < (batch.labeled[0] - x[:50]).std() < 0.55  # the labeled batch is corrupted the same way
    if config != "vae":  # the VAE samples its code; the others are deterministic given the input
        loss, _ = reconstruction_phase(module, batch)
        clean_target = reconstruction_loss(module.training_forward(batch.x, batch.y)["logits"], x)
        assert torch.allclose(loss, clean_target)


def test_input_noise_is_off_in_evaluation():
    noisy = _module("model.input_noise=5.0").eval()
    clean = _module().eval()
    clean.load_state_dict(noisy.state_dict())
    g = torch.Generator().manual_seed(0)
    batch = (torch.rand(64, 784, generator=g), torch.randint(0, 10, (64,), generator=g))
    for m in (noisy, clean):
        m.validation_step(batch, 0)
    values = [{k: v for b in m.eval_metrics["val"] for k, v in b.compute(m, "val").items()} for m in (noisy, clean)]
    assert values[0].keys() == values[1].keys()
    assert all(torch.equal(values[0][k], values[1][k]) for k in values[0])


def test_labeled_shift_moves_each_labeled_image_by_at_most_s_pixels_and_leaves_the_rest_alone():
    module = _module("model.labeled_shift=2", "model.input_noise=0", *NO_WARP).train()  # the shift alone
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(400, 28, 28)
    x[:, 10:18, 10:18] = torch.rand(400, 8, 8, generator=g) + 0.1  # ink well inside the frame: nothing falls off
    y = torch.randint(0, 10, (400,), generator=g)
    flat = x.reshape(400, -1)
    batch = module.step_batch({"unlabeled": (flat, y), "labeled": (flat, y)})
    assert torch.equal(batch.x, flat) and torch.equal(batch.target, flat)  # the unlabeled batch: untouched
    shifted = batch.labeled[0].view(400, 28, 28)
    seen = set()
    for i in range(400):  # each image is its original translated by (dy, dx), |dy|, |dx| <= 2
        rows, cols = torch.nonzero(shifted[i], as_tuple=True)
        dy, dx = int(rows.min()) - 10, int(cols.min()) - 10
        assert max(abs(dy), abs(dx)) <= 2
        assert torch.equal(shifted[i, 10 + dy: 18 + dy, 10 + dx: 18 + dx], x[i, 10:18, 10:18])
        assert shifted[i].sum() == pytest.approx(x[i].sum().item())
        seen.add((dy, dx))
    assert len(seen) == 25  # every shift in the 5 x 5 window is drawn
    assert torch.equal(batch.labeled[1], y)
    assert torch.equal(_module("model.labeled_shift=0", *NO_WARP).augment_labeled(flat), flat)  # 0: off


def test_labeled_rotation_and_elastic_distortion_move_ink_but_keep_each_digit_whole():
    """Rotations keep the centre of a centred digit where it is and its ink roughly the same; an elastic
    field moves ink locally; each image gets its own draw; the unlabeled batch and the labels are untouched."""
    from lightning_aae.module import warp_images

    g = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 28, 28)
    x[:, 13:15, 6:22] = 1.0  # a horizontal bar through the centre
    flat = x.reshape(64, -1)
    torch.manual_seed(1)
    rotated = warp_images(flat, 45.0, 0.0, 4.0).view(64, 28, 28)
    assert rotated.shape == x.shape and not torch.equal(rotated, x)
    assert torch.allclose(rotated.sum((1, 2)), x.sum((1, 2)), rtol=0.15)  # the ink stays in the frame
    assert rotated[:, 13:15, 13:15].min() > 0.5  # the centre stays inked
    assert len({round(float(r[13, 6:22].sum()), 3) for r in rotated}) > 10  # each image its own angle
    assert torch.allclose(warp_images(flat, 0.0, 0.0, 4.0), flat, atol=1e-5)  # no angle, no field: as it was
    torch.manual_seed(2)
    elastic = warp_images(flat, 0.0, 8.0, 4.0).view(64, 28, 28)
    assert (elastic - x).abs().sum((1, 2)).min() > 0  # every image moved
    module = _module("model.labeled_rotate=10", "model.labeled_elastic=8", "model.input_noise=0").train()
    y = torch.randint(0, 10, (64,), generator=g)
    batch = module.step_batch({"unlabeled": (flat, y), "labeled": (flat, y)})
    assert torch.equal(batch.x, flat) and torch.equal(batch.labeled[1], y)
    assert not torch.equal(batch.labeled[0], flat)
    assert torch.equal(_module("model.input_noise=0", "model.labeled_shift=0", *NO_WARP).augment_labeled(flat), flat)
    small = warp_images(torch.rand(4, 3 * 8 * 8), 10.0, 8.0, 4.0, (3, 8, 8))  # the blur's kernel outgrows 8x8
    assert small.shape == (4, 192) and torch.isfinite(small).all()


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # no training here
def test_multistep_schedule_multiplies_the_rates_at_the_milestones_per_phase():
    module = _module("optim.scheduler=multistep", "optim.milestones=[2,4]", "optim.gamma=0.1",
                     "optim.disc.milestones=[1]", "optim.lr=1e-3", "optim.recon.lr=1e-2", "optim.classify.lr=1e-2")
    opts, scheds = _schedules(module)
    rates = []
    for _ in range(5):
        rates.append([o.param_groups[0]["lr"] for o in opts])
        for s in scheds:
            s.step()
    recon, disc = [r[0] for r in rates], [r[1] for r in rates]
    assert recon == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3, 1e-4])
    assert disc == pytest.approx([1e-3, 1e-4, 1e-4, 1e-4, 1e-4])  # its own milestones


def test_the_papers_sgd_recipe_is_a_config():
    opts, scheds = _schedules(build_module(load_config("configs/semi_supervised_paper.yaml", SMALL)))
    assert [type(o).__name__ for o in opts] == ["SGD"] * 4
    assert [(o.defaults["lr"], o.defaults["momentum"]) for o in opts] == [(0.01, 0.9), (0.1, 0.1), (0.1, 0.1),
                                                                           (0.1, 0.1)]
    assert [s.milestones for s in scheds] == [{50: 1, 1000: 1}] * 4


@pytest.mark.parametrize("override, named", [
    ("optim.scheduler=multistep", "optim.milestones"), ("optim.milestones=[5,3]", "optim.milestones"),
    ("model.input_noise=-0.1", "model.input_noise"), ("optim.optimizer=rmsprop", "optim.optimizer"),
    ("num_threads=0", "num_threads"), ("model.labeled_shift=14", "model.labeled_shift"),
    ("model.labeled_shift=-1", "model.labeled_shift"), ("model.labeled_shift=2", "data.labels_per_class > 0"),
    ("model.labeled_rotate=10", "data.labels_per_class > 0"), ("model.labeled_elastic=-1", "model.labeled_elastic"),
])
def test_bad_recipe_settings_are_named(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", "\\.")):
        load_config("configs/aae.yaml", [override])
