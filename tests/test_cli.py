"""The command line as a user types it, in a subprocess."""
import subprocess
import sys
from pathlib import Path

from conftest import child_env

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=ROOT, env_extra=None):
    env = child_env(**(env_extra or {}))
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_unknown_trainer_key_is_one_line_and_exit_2():
    proc = run_cli("--config", "configs/aae.yaml", "trainer.nope=1")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "trainer.nope" in lines[0]
    assert "Traceback" not in proc.stderr


def test_missing_config_file_is_named(tmp_path):
    proc = run_cli("--config", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2 and "nope.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_mnist_says_where_and_writes_nothing(tmp_path):
    proc = run_cli("--config", "configs/aae.yaml", f"data.root={tmp_path / 'empty'}", "data.download=false",
                   f"output_dir={tmp_path / 'runs'}", f"logger.save_dir={tmp_path}")
    assert proc.returncode == 2
    assert str(tmp_path / "empty" / "MNIST" / "raw") in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "wandb").exists()
