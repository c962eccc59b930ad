import pytest

from lightning_aae.config import ConfigError, load_config


def test_yaml_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  latent_dim: 4\noptim:\n  lr: 0.01\n")
    cfg = load_config(f, ["model.latent_dim=8", "trainer.devices=2", "optim.lr=1e-4"])
    assert cfg.model.latent_dim == 8 and cfg.trainer.devices == 2 and cfg.optim.lr == 1e-4


def test_data_root_from_environment(monkeypatch):
    monkeypatch.setenv("AAE_DATA_DIR", "/somewhere/else")
    assert load_config(None).data.root == "/somewhere/else"
    monkeypatch.delenv("AAE_DATA_DIR")
    assert load_config(None).data.root == "data"


@pytest.mark.parametrize("override, named", [
    ("trainer.nope=1", "trainer.nope"),
    ("model.nope=1", "model.nope"),
    ("callbacks.figures.nope=1", "callbacks.figures.nope"),
    ("trainer.max_epochs=abc", "trainer.max_epochs"),
    ("data.batch_size=big", "data.batch_size"),
    ("model.variant=gan", "model.variant"),
    ("model.prior=cauchy", "model.prior"),
    ("model.arch=resnet", "model.arch"),
    ("data.batch_size=-5", "data.batch_size"),
    ("data.labels_per_class=-1", "data.labels_per_class"),
    ("optim.betas=[0.5]", "optim.betas"),
    ("trainer.max_epochs", "trainer.max_epochs"),
])
def test_bad_overrides_name_the_key(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")) as err:
        load_config(None, [override])
    assert "\n" not in str(err.value)


def test_unknown_variant_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="valid: autoencoder, aae, supervised, semi_supervised, clustering, dim_reduction, vae"):
        load_config(None, ["model.variant=gan"])


def test_trainer_keys_come_from_lightning():
    cfg = load_config(None, ["trainer.gradient_clip_val=0.5", "trainer.limit_train_batches=0.1",
                             "trainer.precision=bf16-mixed", "trainer.deterministic=true"])
    assert cfg.trainer.limit_train_batches == 0.1 and cfg.trainer.precision == "bf16-mixed"


@pytest.mark.parametrize("content, message", [
    (None, "config file not found"),
    ("", "is empty"),
    ("model: [unclosed\n", "is not valid YAML"),
    ("- just\n- a list\n", "must hold a mapping"),
    ("modle:\n  latent_dim: 2\n", "unknown config key 'modle'"),
    ("model:\n  latent_dim: two\n", "model.latent_dim"),
])
def test_bad_files_are_named(tmp_path, content, message):
    f = tmp_path / "bad.yaml"
    if content is not None:
        f.write_text(content)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(f)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("overrides, strategy", [
    ([], "auto"),
    (["trainer.devices=2"], "ddp"),
    (["trainer.devices=[0,1]"], "ddp"),
    (["trainer.num_nodes=2", "trainer.devices=1"], "ddp"),
    (["trainer.devices=2", "ddp_timeout_s=60"], "ddp"),
    (["trainer.devices=2", "trainer.strategy=ddp_spawn"], "ddp_spawn"),
])
def test_several_devices_pick_a_strategy_that_allows_unused_parameters(overrides, strategy):
    from lightning.pytorch.strategies import DDPStrategy

    from lightning_aae.training import trainer_kwargs

    chosen = trainer_kwargs(load_config(None, overrides))["strategy"]
    if strategy != "ddp":
        assert chosen == strategy
        return
    assert isinstance(chosen, DDPStrategy) and chosen._ddp_kwargs["find_unused_parameters"] is True
    assert chosen._timeout.total_seconds() == (60 if "ddp_timeout_s=60" in overrides else 300)
