"""The autoencoder family's options: corruption, sparsity, nonnegative weights, linear (PCA), SELU,
recurrent, batch norm placement, Fashion-MNIST, t-SNE figures, per-image errors."""
import gzip
import struct

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles

from conftest import SMALL
from lightning_aae.config import ConfigError, load_config
from lightning_aae.losses import kl_sparsity, l1_activity
from lightning_aae.schedule import EagerStepper, StepBatch
from lightning_aae.variants import build_module


def _module(config="autoencoder_wide", *overrides, small=True):
    return build_module(load_config(f"configs/{config}.yaml", (SMALL if small else []) + list(overrides)))


def _images(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 784, generator=g) < 0.3).float() * torch.rand(n, 784, generator=g)


@pytest.mark.parametrize("key,rate,scaled", [("input_mask", 0.5, False), ("input_dropout", 0.2, True)])
def test_pixel_corruption_is_in_training_only_and_the_target_stays_clean(key, rate, scaled):
    module = _module("autoencoder_wide", f"model.{key}={rate}").train()
    x = torch.rand(2000, 784) + 0.5  # no pixel is 0 before corruption
    batch = module.step_batch((x, torch.zeros(2000, dtype=torch.long)))
    assert torch.equal(batch.target, x)
    zeroed = (batch.x == 0).float().mean().item()
    assert abs(zeroed - rate) < 0.01
    kept = batch.x != 0
    expected = x / (1 - rate) if scaled else x
    assert torch.allclose(batch.x[kept], expected[kept])
    module.eval()  # evaluation encodes the clean image
    assert torch.equal(module(x[:8])["code"], module.encoder(x[:8]))


def test_a_seeded_corruption_for_figures_leaves_the_training_stream_alone():
    module = _module("denoising")
    x = torch.rand(16, 784)
    torch.manual_seed(3)
    expected = torch.rand(5)
    torch.manual_seed(3)
    a = module.corrupt(x, generator=torch.Generator().manual_seed(1))
    b = module.corrupt(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert torch.equal(torch.rand(5), expected)


def test_sparsity_penalties_are_what_their_formulas_say():
    code = torch.tensor([[0.0, 2.0, -1.0], [1.0, 0.0, 0.0]])
    assert l1_activity(code, "sum").item() == pytest.approx(2.0)  # (3 + 1) / 2 rows
    assert l1_activity(code, "mean").item() == pytest.approx(2.0 / 3)
    at_target = torch.full((10, 4), 0.05)
    assert kl_sparsity(at_target, 0.05).item() == pytest.approx(0.0, abs=1e-6)
    dense = torch.full((10, 4), 0.5)
    per_unit = 0.05 * np.log(0.05 / 0.5) + 0.95 * np.log(0.95 / 0.5)
    assert kl_sparsity(dense, 0.05, "sum").item() == pytest.approx(4 * per_unit, rel=1e-5)
    assert kl_sparsity(dense, 0.05, "mean").item() == pytest.approx(per_unit, rel=1e-5)


def _train_steps(module, x, steps=150, lr=3e-3):
    module.train()
    params = module.phase_params()
    opts = {name: torch.optim.Adam(p, lr=lr) for name, p in params.items()}
    stepper = EagerStepper(params)
    for i in range(steps):
        xb = x[(i * 50) % len(x):][:50]
        stepper.step(module, StepBatch.from_loader((xb, torch.zeros(len(xb), dtype=torch.long)), module.corrupt), opts)
    return module.eval()


def _trained_codes(config, *overrides, x):
    torch.manual_seed(0)
    module = _train_steps(_module(config, *overrides), x)
    with torch.no_grad():
        return module.encode(x)


def test_an_l1_penalty_makes_the_code_sparser_than_none():
    """Sparser by Hoyer's measure, which rescaling the code cannot fake (an L1 penalty could shrink
    every unit and let the decoder scale them back up)."""
    from lightning_aae.metrics import hoyer_sparsity

    x = _images(600)
    penalised = hoyer_sparsity(_trained_codes("sparse_l1", "model.sparsity_weight=1e-3", x=x)).mean().item()
    plain = hoyer_sparsity(_trained_codes("sparse_l1", "model.sparsity=none", x=x)).mean().item()
    assert penalised > plain + 0.05, (penalised, plain)


def test_a_kl_penalty_pulls_the_units_mean_activation_to_its_target():
    """The KL penalty's own notion of sparse: each sigmoid unit active 5 % of the time on average."""
    x = _images(600)
    penalised = _trained_codes("sparse_kl", "model.sparsity_weight=0.05", x=x).mean(0)
    plain = _trained_codes("sparse_kl", "model.sparsity=none", x=x).mean(0)
    assert (penalised - 0.05).abs().max() < 0.02
    assert penalised.mean() < plain.mean() - 0.1, (penalised.mean(), plain.mean())


def test_projected_weights_stay_nonnegative_after_every_step():
    torch.manual_seed(0)
    module = _module("nonnegative")
    weights = module.constrained_weights()
    assert len(weights) == 4 and all((w >= 0).all() for w in weights)  # projected at construction too
    module.train()
    params = module.phase_params()
    opts = {name: torch.optim.Adam(p, lr=1e-2) for name, p in params.items()}
    stepper = EagerStepper(params)
    x = _images(200)
    negative_grads = 0
    for i in range(20):
        batch = StepBatch.from_loader((x[i * 10:][:10], torch.zeros(10, dtype=torch.long)), module.corrupt)
        stepper.step(module, batch, opts)
        assert all((w >= 0).all() for w in weights), f"a negative weight after step {i}"
        negative_grads += sum(int((w == 0).sum()) for w in weights)
    assert negative_grads > 0  # the projection had something to do


def test_the_negative_weight_penalty_is_added_to_the_reconstruction_loss():
    module = _module("sparse_kl", "model.nonnegative=penalty", "model.nonnegative_weight=2.0")
    batch = module.step_batch((_images(8), torch.zeros(8, dtype=torch.long)))
    out = module.training_forward(batch.x, batch.y)
    expected = sum(0.5 * w.clamp(max=0).pow(2).sum() for w in module.constrained_weights()) * 2.0
    assert module.code_penalties(batch, out)["nonnegative"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_linear_autoencoder_code_spans_the_top_principal_subspace():
    """The codes of the data, as n-vectors, span the same space as the data's top-k principal
    component scores (principal angles near 0). Measured on the codes, not the encoder's weights:
    weight components outside the data's span get no gradient and keep their initial values."""
    g = torch.Generator().manual_seed(0)
    k, n = 3, 300
    basis, _ = torch.linalg.qr(torch.randn(784, 6, generator=g))
    x = (torch.randn(n, 6, generator=g) * torch.tensor([3.0, 2.0, 1.5, 0.2, 0.1, 0.1])) @ basis.T  # a gap after 3
    torch.manual_seed(0)
    module = _module("linear", f"model.latent_dim={k}", small=False).train()
    opt = torch.optim.LBFGS(module.parameters(), lr=1, max_iter=20, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ((module(x)["logits"] - x) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(25):
        opt.step(closure)
    with torch.no_grad():
        codes = module(x)["code"].double().numpy()
    scores = np.linalg.svd((x - x.mean(0)).double().numpy(), full_matrices=False)[0][:, :k]
    assert np.degrees(subspace_angles(codes - codes.mean(0), scores)).max() < 3


def test_linear_arch_has_no_activation_and_mse_linear_reads_the_raw_output():
    module = _module("linear", "model.hidden_dims=[64]", small=False)
    kinds = {type(m).__name__ for m in module.encoder.modules()} | {type(m).__name__ for m in module.decoder.modules()}
    assert kinds <= {"MLPEncoder", "MLPDecoder", "Sequential", "Linear", "Identity"}
    x = torch.rand(4, 784)
    z = torch.randn(4, 32) * 100
    assert torch.equal(module.decode(z), module.decoder(z).clamp(0, 1))


def test_selu_layers_start_lecun_normal():
    torch.manual_seed(0)
    module = _module("stacked", small=False)
    first = module.encoder.net[0]
    assert isinstance(module.encoder.net[1], torch.nn.SELU)
    assert first.weight.std().item() == pytest.approx(1 / np.sqrt(784), rel=0.05)
    assert torch.equal(first.bias, torch.zeros_like(first.bias))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_autoencoder_reads_rows_and_writes_rows(cell):
    module = _module("recurrent", f"model.rnn_cell={cell}", "model.hidden_dims=[16,8]", small=False)
    enc, dec = module.encoder, module.decoder
    assert [layer.input_size for layer in enc.rnn.layers] == [28, 16]
    assert [layer.hidden_size for layer in dec.rnn.layers] == [8, 16]  # mirrored
    x = torch.rand(5, 784)
    out = module(x)
    assert out["code"].shape == (5, 32) and out["logits"].shape == (5, 784)
    # row r of the output depends on the code only, through step r: no pixel of x leaks past the code
    loss = module.training_forward(x, None)["logits"].pow(2).mean()
    loss.backward()
    assert all(p.grad is not None for p in enc.rnn.parameters())


def test_batch_norm_is_in_every_encoder_layer_of_the_mlp_and_never_in_a_discriminator():
    module = _module("semi_supervised", "model.batch_norm=true", "model.hidden_dims=[32,16]")
    layers = list(module.encoder.net)
    linear_at = [i for i, m in enumerate(layers) if isinstance(m, torch.nn.Linear)]
    assert len(linear_at) == 3  # two hidden layers and the output heads
    assert all(isinstance(layers[i + 1], torch.nn.BatchNorm1d) for i in linear_at)
    assert layers[linear_at[-1] + 1].num_features == 10 + module.latent_dim  # q(y|x) logits and style
    for net in (module.decoder, *module.discriminators.values()):
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())


@pytest.mark.parametrize("overrides,named", [
    (["model.sparsity=kl"], "model.code_activation=sigmoid"),
    (["model.variant=vae", "model.code_activation=relu"], "model.code_activation"),
    (["model.arch=rnn", "model.batch_norm=true"], "model.batch_norm"),
    (["model.input_mask=1.0"], "model.input_mask"),
    (["model.activation=swish"], "model.activation"),
    (["data.dataset=cifar"], "data.dataset"),
    (["callbacks.figures.projection=umap"], "callbacks.figures.projection"),
])
def test_family_settings_that_cannot_work_are_named(overrides, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config("configs/autoencoder_wide.yaml", overrides)


def _write_idx(path, dims, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    with gzip.open(path.with_name(path.name + ".gz"), "wb", compresslevel=1) as f:
        f.write(header + data)


def test_fashion_mnist_loads_from_its_own_folder_and_names_itself_when_missing(tmp_path):
    from lightning_aae.data import DataError, MNISTDataModule

    raw = tmp_path / "FashionMNIST" / "raw"
    for name, n in (("train", 60000), ("t10k", 10000)):
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n) % 256
        _write_idx(raw / f"{name}-images-idx3-ubyte", (n, 28, 28), images.tobytes())
        _write_idx(raw / f"{name}-labels-idx1-ubyte", (n,), (np.arange(n) % 10).astype(np.uint8).tobytes())
    dm = MNISTDataModule(root=str(tmp_path), download=False, dataset="fashion_mnist", val_size=1000, on_device=False)
    dm.setup("test")
    assert dm.test.x.shape == (10000, 784) and dm.test.x[255, 0].item() == pytest.approx(1.0)
    assert dm.test.y[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert len(dm.val.x) == 1000 and len(dm.unlabeled.x) == 59000
    _write_idx(raw / "t10k-labels-idx1-ubyte", (10000,), bytes(9999))  # one label short
    with pytest.raises(DataError, match=r"^Fashion-MNIST file .*t10k-labels-idx1-ubyte is truncated"):
        MNISTDataModule(root=str(tmp_path), download=False, dataset="fashion_mnist", on_device=False).setup("test")
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"^Fashion-MNIST not found under .*FashionMNIST/raw and data\.download=false"):
        MNISTDataModule(root=str(tmp_path), download=False, dataset="fashion_mnist").prepare_data()


def test_tsne_scatter_of_a_ten_dimensional_code(tmp_path):
    from callbacks.figures import LatentScatterFigure, latent_scatter

    g = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 60)
    codes = g.normal(size=(180, 10)) + 6 * np.eye(10)[labels]
    fig = latent_scatter(codes, labels, g.normal(size=(180, 10)), "codes", projection="tsne")
    assert "t-SNE of 180 codes" in fig.axes[0].get_title() and "prior" not in fig.axes[0].get_title()
    points = fig.axes[0].collections[-1].get_offsets()
    centres = np.stack([points[labels == c].mean(0) for c in range(3)])
    spread = max(np.linalg.norm(points[labels == c] - centres[c], axis=1).mean() for c in range(3))
    assert np.linalg.norm(centres[0] - centres[1]) > 2 * spread  # well-separated groups stay apart

    module = _module("autoencoder_wide", "model.latent_dim=10").eval()
    callback = LatentScatterFigure(tmp_path, projection="tsne", tsne_points=150)

    class Trainer:
        current_epoch, global_step, loggers = 0, 0, []

    with torch.no_grad():  # as FigureCallback._run calls it
        callback.draw(Trainer(), module, torch.rand(500, 784), torch.randint(0, 10, (500,)), "val")
    assert (tmp_path / "val_latent_scatter.png").is_file()


def test_evaluate_writes_each_test_image_error_and_its_histogram(small_overrides, tmp_path):
    import csv

    from lightning_aae.evaluate import main
    from lightning_aae.training import train

    cfg = load_config("configs/autoencoder_wide.yaml", small_overrides + [
        "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_test_batches=null"])
    metrics = train(cfg, verbose=False)
    (ckpt,) = (tmp_path / "runs").glob("*/*/checkpoints/last.ckpt")
    out = tmp_path / "scores" / "errors.csv"
    assert main([str(ckpt), "--per-image", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 10000 and rows[0]["index"] == "0"
    errors = np.array([float(r["error"]) for r in rows])
    assert errors.mean() == pytest.approx(metrics["test/recon_loss"], rel=1e-3)  # the test loss, image by image
    assert (out.with_suffix(".png")).stat().st_size > 1000


def test_compare_draws_a_row_per_model_and_the_corrupted_inputs_of_a_denoiser(tmp_path):
    from experiments.compare import comparison_rows, main

    plain, denoising = _module("autoencoder_wide").eval(), _module("denoising_mask").eval()
    x = torch.rand(6, 784)
    rows = comparison_rows([("plain", plain), ("masked", denoising)], x)
    assert [label for label, _ in rows] == ["original", "plain", "masked: input", "masked"]
    assert all(images.shape == (6, 28, 28) for _, images in rows)
    assert abs((rows[2][1] == 0).mean() - 0.5) < 0.15  # half the pixels masked, as in training
    assert main(["plain=" + str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "x.png")]) == 2


def test_hoyer_sparsity_stays_between_zero_and_one():
    from lightning_aae.metrics import hoyer_sparsity

    rows = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0], [2.0, -2.0, 0.0, 0.0]])
    assert hoyer_sparsity(rows).tolist() == pytest.approx([0.0, 1.0, 1.0, (2 - 2 ** 0.5) / 1])
    assert torch.equal(hoyer_sparsity(rows * 7), hoyer_sparsity(rows))  # blind to the code's scale


@pytest.mark.parametrize("config, overrides, pixel_layers", [
    ("nonnegative", [], 2), ("linear", [], 2), ("autoencoder_wide", ["model.arch=conv"], 0),
    ("recurrent", ["model.hidden_dims=[8]"], 0)])
def test_the_filters_figure_shows_the_encoders_input_and_the_decoders_output_weights(
        config, overrides, pixel_layers, tmp_path):
    from types import SimpleNamespace

    from callbacks.figures import FiltersFigure
    from lightning_aae.components import pixel_filters

    module = _module(config, *overrides, small=False)
    into, out_of = pixel_filters(module.encoder), pixel_filters(module.decoder, "output")
    assert (into is not None) + (out_of is not None) == pixel_layers
    cb = FiltersFigure(tmp_path, n_filters=4)
    assert cb.applies(module) == bool(pixel_layers)
    if not pixel_layers:
        return
    assert into is next(module.encoder.parameters())
    assert torch.equal(out_of, list(module.decoder.parameters())[-2].t())  # the last Linear's weight, [units, 784]
    drawn = {}
    cb.publish = lambda trainer, key, image, caption="": drawn.update({key: image})
    cb.draw(SimpleNamespace(current_epoch=0), module, None, None, "val")
    image = drawn["val/filters"]  # 8 per row, 28x28 each, 2-pixel padding, 0-255; each set starts a row
    assert image.shape == (2 * 30 + 2, 8 * 30 + 2)
    for row, w in enumerate((into, out_of)):
        first = image[2 + 30 * row: 30 + 30 * row, 2:30].astype(float) / 255
        w = w[0].detach().reshape(28, 28).numpy()
        expected = (w - w.min()) / (w.max() - w.min())
        assert np.abs(first - expected).max() <= 1 / 255 + 1e-6


def test_evaluate_draws_its_figures_with_the_runs_own_figure_settings():
    from callbacks import FIGURES, build_figure_callbacks
    from lightning_aae.evaluate import figure_settings

    run = {"seed": 3, "callbacks": {"figures": {"projection": "tsne", "tsne_points": 300, "n_images": 4,
                                                "every_n_epochs": 5}}}
    settings = figure_settings({"hyper_parameters": {"run_config": run}})
    assert settings == {"projection": "tsne", "tsne_points": 300, "n_images": 4, "seed": 3}
    scatter = [cb for cb in build_figure_callbacks("figs", list(FIGURES), **settings) if hasattr(cb, "projection")]
    assert [(cb.projection, cb.tsne_points, cb.seed) for cb in scatter] == [("tsne", 300, 3)]
    assert figure_settings({}) == {}  # a checkpoint without a run config: the defaults
