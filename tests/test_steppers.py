"""optim.stepper=compiled and cuda_graph (lightning_aae/compiled.py): the compiled step trains exactly what
the eager stepper trains, inside Lightning too, and where it cannot run it says so and trains eagerly.

The compiled step is traced with torch.compile's "aot_eager" backend here: the same single graph (fullgraph,
tensors in and out) that inductor compiles, without a minute of C++ compilation per test on two cores.
"""
import copy
from pathlib import Path

import pytest
import torch

from conftest import SMALL
from lightning_aae.compiled import CompiledStepper, CudaGraphStepper
from lightning_aae.config import load_config
from lightning_aae.optim import build_optimizers
from lightning_aae.schedule import EagerStepper
from lightning_aae.training import train
from lightning_aae.variants import build_module


@pytest.fixture
def traced(monkeypatch):
    monkeypatch.setattr(CompiledStepper, "backend", "aot_eager")


def _batches(variant: str, n: int):
    g = torch.Generator().manual_seed(2)
    for _ in range(n):
        x, y = torch.rand(32, 784, generator=g), torch.randint(0, 10, (32,), generator=g)
        if variant == "semi_supervised":
            labeled = (torch.rand(16, 784, generator=g), torch.randint(0, 10, (16,), generator=g))
            yield {"unlabeled": (x, torch.full_like(y, -1)), "labeled": labeled}
        else:
            yield x, y


def _train(module, stepper_cls, variant: str, n: int = 3):
    params = module.phase_params()
    optimizers, _ = build_optimizers(module.optim_cfg, params, 1)
    stepper = stepper_cls(params=params, clip_norms={"recon": 1.0})  # a clipped phase too
    torch.manual_seed(1)  # the training stream: input noise, prior samples, category targets
    for batch in _batches(variant, n):
        stats = stepper.step(module, module.step_batch(batch), optimizers)
    return stepper, optimizers, stats


@pytest.mark.parametrize("variant", ["aae", "semi_supervised"])
def test_the_compiled_step_equals_the_eager_step(variant, traced, capsys):
    cfg = load_config(f"configs/{variant}.yaml", SMALL)  # semi_supervised: input noise, labeled shifts
    torch.manual_seed(0)
    eager_model = build_module(cfg)
    compiled_model = copy.deepcopy(eager_model)
    _, eager_opts, eager_stats = _train(eager_model, EagerStepper, variant)
    stepper, compiled_opts, stats = _train(compiled_model, CompiledStepper, variant)
    assert stepper.fallback is None and "eager stepper" not in capsys.readouterr().err
    assert set(stats) == set(eager_stats)
    for name, value in eager_stats.items():
        assert torch.allclose(stats[name].detach(), value.detach(), atol=1e-5), name
    for (name, a), b in zip(eager_model.named_parameters(), compiled_model.parameters()):
        assert torch.allclose(a, b, atol=1e-5), name
    for phase, opt in eager_opts.items():  # and the optimizers' moments, which carry on after a resume
        for p, q in zip(opt.param_groups[0]["params"], compiled_opts[phase].param_groups[0]["params"]):
            for key, value in opt.state[p].items():
                assert torch.allclose(compiled_opts[phase].state[q][key].float(), value.float(), atol=1e-5), (phase, key)


def test_compiled_in_a_fit_matches_eager_and_counts_the_same_steps(traced, small_overrides, tmp_path):
    runs = {}
    for stepper in ("eager", "compiled"):
        cfg = load_config("configs/aae.yaml", small_overrides + [
            f"optim.stepper={stepper}", f"output_dir={tmp_path / stepper}", "trainer.max_epochs=2",
            "trainer.limit_train_batches=3", "optim.scheduler=step", "optim.step_size=1"])
        metrics = train(cfg, verbose=False)
        (last,) = Path(cfg.output_dir).glob("*/*/checkpoints/last.ckpt")
        runs[stepper] = (metrics, torch.load(last, weights_only=True))
    (m_eager, c_eager), (m_comp, c_comp) = runs["eager"], runs["compiled"]
    assert c_comp["global_step"] == c_eager["global_step"] == 2 * 3 * 3  # epochs x batches x phases
    for key, value in c_eager["state_dict"].items():
        assert torch.allclose(c_comp["state_dict"][key].float(), value.float(), atol=1e-4), key
    assert abs(m_comp["test/recon_loss"] - m_eager["test/recon_loss"]) < 1e-4


def test_cuda_graph_without_cuda_says_so_and_trains_eagerly(capsys):
    cfg = load_config("configs/aae.yaml", SMALL)
    torch.manual_seed(0)
    eager_model = build_module(cfg)
    graph_model = copy.deepcopy(eager_model)
    _train(eager_model, EagerStepper, "aae", 2)
    stepper, _, _ = _train(graph_model, CudaGraphStepper, "aae", 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["optim.stepper=cuda_graph: CUDA graphs need a CUDA device; this run trains on cpu; "
                   "training with the eager stepper"]
    for a, b in zip(eager_model.parameters(), graph_model.parameters()):
        assert torch.equal(a, b)  # the eager step itself, not something like it


def test_what_the_compiled_step_cannot_run_falls_back_with_one_line(capsys):
    cfg = load_config("configs/nonnegative.yaml", SMALL)
    module = build_module(cfg)
    stepper, _, _ = _train(module, CompiledStepper, "autoencoder", 1)
    assert stepper.fallback == "model.nonnegative=project projects the weights between phases"
    assert capsys.readouterr().err.count("training with the eager stepper") == 1
    assert min(float(w.detach().min()) for w in module.constrained_weights()) >= 0  # the eager step projected them
