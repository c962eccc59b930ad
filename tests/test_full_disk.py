"""A real full disk: the output folder on a small tmpfs, through the real command line. torch's zip writer
reports ENOSPC as a RuntimeError of its own; the run must still end in the one-line storage error."""
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import child_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a small file system here (needs root in a namespace that allows mounts)")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_full_disk_ends_in_one_line_with_nothing_partial_left(small_disk, data_root):
    proc = subprocess.run(
        [sys.executable, "train.py", "--config", "configs/aae.yaml", f"data.root={data_root}",
         f"output_dir={small_disk}/runs", "logger.enabled=false", "trainer.enable_progress_bar=false",
         "model.hidden_dims=[512,512]", "trainer.max_epochs=2", "trainer.limit_train_batches=2",
         "trainer.limit_val_batches=1", "callbacks.figures.enabled=false", "logger.name=full"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=child_env())
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert len(errors) == 1 and "No space left on device" in errors[0] and ".ckpt" in errors[0]
    assert "Traceback" not in proc.stderr
    checkpoints = small_disk / "runs" / "aae" / "full" / "checkpoints"
    assert not [p for p in checkpoints.iterdir() if p.name.startswith(".")]  # no temporary file left
    assert (small_disk / "runs" / "aae" / "full" / "config.yaml").is_file()  # what was written stays
