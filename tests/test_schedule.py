"""The schedule's phase rules, each phase in isolation, for every variant that has it."""
import pytest
import torch

from conftest import SMALL
from lightning_aae.config import load_config
from lightning_aae.schedule import PHASES, EagerStepper, StepBatch
from lightning_aae.steppers import make_stepper
from lightning_aae.variants import VARIANTS, build_module

CONFIG = {"autoencoder": "autoencoder", "aae": "aae", "supervised": "supervised", "vae": "vae",
          "semi_supervised": "semi_supervised", "clustering": "clustering", "dim_reduction": "dim_reduction"}
# what each phase may move; everything else must stay as it was
MOVES = {"recon": {"encoder", "decoder", "cluster_heads"}, "disc": {"discriminators"}, "gen": {"encoder"},
         "classify": {"encoder"}}


def _batch(module):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 784, generator=g), torch.randint(0, 10, (32,), generator=g)
    labeled = (torch.rand(16, 784, generator=g), torch.randint(0, 10, (16,), generator=g))
    return StepBatch(x=x, target=x, y=y, labeled=labeled if module.categories == "digits" else None)


def _groups(module):
    return {name: [p.detach().clone() for p in part.parameters()] if hasattr(part, "parameters") else [part.detach().clone()]
            for name, part in [("encoder", module.encoder), ("decoder", module.decoder),
                               ("discriminators", module.discriminators),
                               ("cluster_heads", getattr(module, "cluster_heads", None))] if part is not None}


def _changed(before, module):
    after = _groups(module)
    return {name for name in before if any(not torch.equal(a, b) for a, b in zip(before[name], after[name]))}


CASES = [(v, phase) for v in sorted(VARIANTS) for phase in PHASES
         if phase in build_module(load_config(f"configs/{CONFIG[v]}.yaml", SMALL)).phase_params()]


@pytest.mark.parametrize("variant, phase", CASES)
def test_each_phase_moves_only_its_own_networks(variant, phase):
    torch.manual_seed(0)
    module = build_module(load_config(f"configs/{CONFIG[variant]}.yaml", SMALL)).train()
    params = module.phase_params()
    stepper = EagerStepper(params)
    optimizer = torch.optim.SGD(params[phase], lr=0.5)
    before = _groups(module)
    stats = stepper.run_phase(phase, module, _batch(module), optimizer)
    moved = _changed(before, module)
    expected = MOVES[phase] & set(before)
    assert moved == expected, f"{variant}/{phase} moved {sorted(moved)}, expected {sorted(expected)}"
    assert stats and all(torch.isfinite(v) for v in stats.values())
    assert all(p.requires_grad for p in module.parameters())  # the phase gave back every gradient it took


def test_every_variant_lists_phases_by_name_and_in_schedule_order():
    expected = {"autoencoder": ["recon"], "vae": ["recon"], "aae": ["recon", "disc", "gen"],
                "supervised": ["recon", "disc", "gen"], "clustering": ["recon", "disc", "gen"],
                "dim_reduction": ["recon", "disc", "gen"], "semi_supervised": ["recon", "disc", "gen", "classify"]}
    got = {v: list(build_module(load_config(f"configs/{CONFIG[v]}.yaml", SMALL)).phase_params()) for v in VARIANTS}
    assert got == expected


def test_statistics_are_mapped_to_the_phase_that_made_them():
    torch.manual_seed(0)
    module = build_module(load_config("configs/semi_supervised.yaml", SMALL)).train()
    params = module.phase_params()
    stepper = EagerStepper(params)
    opts = {name: torch.optim.SGD(p, lr=0.01) for name, p in params.items()}
    stats = stepper.step(module, _batch(module), opts)
    assert list(stats) == ["recon_loss", "disc_acc_category", "disc_acc_style", "disc_loss", "gen_loss", "class_loss"]
    assert stepper.stat_phase == {"recon_loss": "recon", "disc_acc_category": "disc", "disc_acc_style": "disc",
                                  "disc_loss": "disc", "gen_loss": "gen", "class_loss": "classify"}


def test_classification_phase_skips_without_a_labeled_batch():
    module = build_module(load_config("configs/semi_supervised.yaml", SMALL)).train()
    params = module.phase_params()
    before = _groups(module)
    batch = _batch(module)
    batch.labeled = None
    assert EagerStepper(params).run_phase("classify", module, batch, torch.optim.SGD(params["classify"], lr=1)) == {}
    assert _changed(before, module) == set()


def test_unknown_phase_or_stepper_is_named():
    with pytest.raises(ValueError, match="no phase named \\['warmup'\\]"):
        EagerStepper({"warmup": []})
    with pytest.raises(ValueError, match="unknown stepper 'fast'"):
        make_stepper("fast", params={})


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_penalty_added_in_the_base_hook_reaches_every_variant(variant, monkeypatch):
    from lightning_aae.module import AutoencoderModule
    from lightning_aae.schedule import reconstruction_phase

    module = build_module(load_config(f"configs/{CONFIG[variant]}.yaml", SMALL)).train()
    batch = _batch(module)
    torch.manual_seed(0)
    plain, _ = reconstruction_phase(module, batch)
    monkeypatch.setattr(AutoencoderModule, "code_penalties",
                        lambda self, batch, out: {"probe": out["code"].new_tensor(1.0)})
    torch.manual_seed(0)  # the VAE samples its code: the same draw both times
    probed, _ = reconstruction_phase(module, batch)
    assert probed.item() == pytest.approx(plain.item() + 1.0, abs=1e-5)
