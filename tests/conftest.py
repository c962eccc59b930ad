import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# The weight fingerprints (tests/data/fingerprints.json) were recorded where MKL ran its AVX2 kernels; on a
# CPU with AVX-512 MKL picks other kernels, which sum in another order, and adversarial training amplifies
# that past the tolerance within a few dozen steps. Set before torch loads MKL; child processes inherit it.
os.environ.setdefault("MKL_ENABLE_INSTRUCTIONS", "AVX2")

# Tests never touch the network or the user's W&B account.
os.environ["WANDB_MODE"] = "offline"
os.environ.pop("WANDB_API_KEY", None)
os.environ.setdefault("WANDB_SILENT", "true")


def child_env(**extra: str) -> dict:
    """The environment for a process a test starts: this one's, less the address of a W&B service an
    earlier in-process test started (a child would otherwise log through the parent's service)."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(extra)
    return env


def wait_for_file(path: Path, proc, timeout: float) -> None:
    """Wait until path exists, the child process proc has ended, or timeout seconds have passed."""
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)


def let_it_run(pid: int, cpu_seconds: float, timeout: float = 60.0) -> None:
    """Wait until process pid has spent cpu_seconds more of CPU time (all its threads), or timeout seconds of wall
    time: a fixed sleep on a loaded machine may end before the child has done anything."""

    def used() -> float:  # inf once the process has ended
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return float("inf")
        if fields[0] in "ZX":
            return float("inf")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    start, deadline = used(), time.time() + timeout
    while used() - start < cpu_seconds and time.time() < deadline:
        time.sleep(0.02)


def mnist_root() -> Path:
    """AAE_DATA_DIR, else ../shared/data, else ./data: the first holding MNIST/raw."""
    candidates = [Path(os.environ["AAE_DATA_DIR"])] if os.environ.get("AAE_DATA_DIR") else []
    candidates += [SHARED_DATA, ROOT / "data"]
    for root in candidates:
        if (root / "MNIST" / "raw").is_dir():
            return root
    pytest.fail(f"the tests need MNIST under one of {[str(c) for c in candidates]} (set AAE_DATA_DIR)",
                pytrace=False)


@pytest.fixture(scope="session")
def data_root() -> Path:
    return mnist_root()


# The one set of small settings for tests about behaviour rather than quality: small networks,
# no figures, two evaluation batches. Tests that need more say so next to the override they add.
SMALL_NETS = ["model.hidden_dims=[128]", "model.disc_hidden_dims=[64]"]
SMALL = SMALL_NETS + ["callbacks.figures.enabled=false", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2"]


@pytest.fixture
def quick_overrides(data_root, tmp_path):
    """Overrides for a quick CPU run that writes only under tmp_path and needs no W&B."""
    return [
        f"data.root={data_root}", f"output_dir={tmp_path / 'runs'}", f"logger.save_dir={tmp_path}",
        "logger.enabled=false", "trainer.accelerator=cpu", "trainer.devices=1",
        "trainer.enable_model_summary=false", "trainer.enable_progress_bar=false",
    ]


@pytest.fixture
def small_overrides(quick_overrides):
    """quick_overrides with the small settings above."""
    return quick_overrides + SMALL


def write_svhn(root: Path, n_train: int, n_test: int):
    """Small SVHN-layout .mat files under <root>/SVHN (X: 32 x 32 x 3 x N uint8, y: N x 1 with 10 for
    the digit 0), images whose brightest row depends on the digit; returns {split: (images, labels)}."""
    import numpy as np
    from scipy.io import savemat

    rng, written = np.random.default_rng(0), {}
    (root / "SVHN").mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, size=(n, 32, 32, 3)).astype(np.int64)
        for k in range(10):
            images[labels == k, 3 * k, :, :] += 190
        images = np.clip(images, 0, 255).astype(np.uint8)
        savemat(root / "SVHN" / f"{name}_32x32.mat",
                {"X": images.transpose(1, 2, 3, 0), "y": np.where(labels == 0, 10, labels).reshape(-1, 1)})
        written[name] = (images, labels)
    return written
