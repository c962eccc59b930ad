"""Short real fits on MNIST: the behaviour a user checks first."""
import torch

from lightning_aae.config import load_config
from lightning_aae.variants import AdversarialAutoencoder, load_module
from lightning_aae.training import train

# learning to reconstruct in 120 batches needs more capacity than the shared small networks
WIDER = ["model.hidden_dims=[256,256]", "model.disc_hidden_dims=[128,128]",
         "trainer.limit_val_batches=5", "trainer.limit_test_batches=5", "data.batch_size=100"]


def test_aae_learns_to_reconstruct_and_checkpoints_load(small_overrides):
    cfg = load_config("configs/aae.yaml", small_overrides + WIDER + [
        "trainer.max_epochs=2", "trainer.limit_train_batches=60"])
    first = load_config("configs/aae.yaml", small_overrides + WIDER + [
        "trainer.max_epochs=1", "trainer.limit_train_batches=1", "output_dir=" + cfg.output_dir + "-one"])
    untrained = train(first, verbose=False)
    metrics = train(cfg, verbose=False)
    # 120 batches of the schedule cut the reconstruction error well below one batch's worth
    assert metrics["test/recon_loss"] < 0.8 * untrained["test/recon_loss"]
    assert 0.3 < metrics["train/disc_acc_prior_epoch"] < 1.0  # the adversary is neither blind nor a dictator
    (ckpt,) = (cfg.output_dir and __import__("pathlib").Path(cfg.output_dir)).glob("aae/*/checkpoints/last.ckpt")
    module = load_module(str(ckpt))
    assert isinstance(module, AdversarialAutoencoder)
    with torch.no_grad():
        x = torch.rand(4, 784)
        assert module.reconstruct(x).shape == (4, 784)
        assert module.sample(3).shape == (3, 784)
        assert module.encode(x).shape == (4, 2)


def test_loading_a_checkpoint_leaves_the_callers_random_state_alone(small_overrides):
    cfg = load_config("configs/autoencoder.yaml", small_overrides + ["trainer.max_epochs=1",
                                                                     "trainer.limit_train_batches=2"])
    train(cfg, verbose=False)
    (ckpt,) = __import__("pathlib").Path(cfg.output_dir).glob("autoencoder/*/checkpoints/last.ckpt")
    assert "RNGState" in str(torch.load(ckpt, weights_only=False)["callbacks"])  # it is saved, for resuming
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    load_module(str(ckpt))
    assert torch.equal(torch.get_rng_state(), before)
