"""Bad input gets one clear line and a non-zero exit; faults during training lose nothing."""
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import child_env, let_it_run, SMALL, wait_for_file
from lightning_aae.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_main(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def test_checkpoint_that_does_not_exist_is_named(capsys, quick_overrides, tmp_path):
    code, err = run_main(capsys, "--config", "configs/aae.yaml", *quick_overrides, f"ckpt_path={tmp_path}/gone.ckpt")
    assert code == 2 and "gone.ckpt" in err and len(err.splitlines()) == 1


@pytest.fixture(scope="module")
def autoencoder_run(tmp_path_factory, data_root):
    """One finished tiny autoencoder run; tests must leave its files as they are."""
    out = tmp_path_factory.mktemp("ae")
    code = main(["--config", "configs/autoencoder.yaml", f"data.root={data_root}", f"output_dir={out}",
                 "logger.enabled=false", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                 "trainer.enable_progress_bar=false", "logger.name=first", *SMALL])
    assert code == 0
    files = sorted(p for p in out.rglob("*") if p.is_file())
    return out, {p: p.read_bytes() for p in files}


def _unchanged(snapshot):
    out, files = snapshot
    now = sorted(p for p in out.rglob("*") if p.is_file())
    return now == sorted(files) and all(p.read_bytes() == b for p, b in files.items())


def test_checkpoint_of_another_variant_says_which(capsys, quick_overrides, autoencoder_run):
    (ckpt,) = autoencoder_run[0].glob("autoencoder/first/checkpoints/last.ckpt")
    code, err = run_main(capsys, "--config", "configs/aae.yaml", *quick_overrides,
                         f"output_dir={autoencoder_run[0]}", f"ckpt_path={ckpt}")
    assert code == 2 and "'autoencoder' checkpoint" in err and "model.variant is 'aae'" in err
    assert _unchanged(autoencoder_run)


@pytest.mark.parametrize("override, named", [
    ("data.labels_per_class=6000", "data.labels_per_class=6000"),
    ("data.val_size=60000", "data.val_size=60000"),
    ("data.batch_size=-1", "data.batch_size"),
    ("model.n_clusters=1", "model.n_clusters"),
])
def test_impossible_data_settings_fail_before_anything_is_written(capsys, quick_overrides, autoencoder_run,
                                                                   override, named):
    config = "configs/clustering.yaml" if "n_clusters" in override else "configs/autoencoder.yaml"
    code, err = run_main(capsys, "--config", config, *quick_overrides, f"output_dir={autoencoder_run[0]}",
                         "logger.name=first", override)
    assert code == 2 and named in err and len(err.splitlines()) == 1
    assert _unchanged(autoencoder_run)


def test_corrupted_mnist_is_named_through_the_cli(capsys, quick_overrides, data_root, tmp_path):
    import shutil

    raw = tmp_path / "data" / "MNIST" / "raw"
    shutil.copytree(data_root / "MNIST" / "raw", raw)
    labels = raw / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:1000])
    code, err = run_main(capsys, "--config", "configs/aae.yaml", *quick_overrides, f"data.root={tmp_path / 'data'}")
    assert code == 2 and "train-labels-idx1-ubyte is truncated" in err


def test_divergence_stops_with_the_phase_named_and_keeps_the_good_checkpoint(capsys, small_overrides, tmp_path):
    # epoch 0 trains normally; the scheduler then multiplies the learning rate by 1e30
    code, err = run_main(capsys, "--config", "configs/aae.yaml", *small_overrides, "logger.name=div",
                         "trainer.max_epochs=3", "trainer.limit_train_batches=20", "optim.scheduler=exponential",
                         "optim.gamma=1e30", "trainer.log_every_n_steps=5")
    assert code == 3
    assert "non-finite loss in phase" in err and "epoch 1" in err and "global step" in err
    assert len(err.splitlines()) == 1
    ckpt = torch.load(tmp_path / "runs" / "aae" / "div" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_killed_run_resumes_from_last_and_keeps_its_wandb_run(data_root, tmp_path):
    args = [sys.executable, "train.py", "--config", "configs/aae.yaml", f"data.root={data_root}",
            f"output_dir={tmp_path / 'runs'}", f"logger.save_dir={tmp_path}", "logger.mode=offline",
            "logger.name=killed", "trainer.enable_progress_bar=false", "trainer.max_epochs=3",
            "trainer.limit_train_batches=150", *SMALL]
    env = child_env(WANDB_MODE="offline", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "runs" / "aae" / "killed" / "checkpoints" / "last.ckpt"
    wait_for_file(last, proc, 240)
    let_it_run(proc.pid, 0.5)  # into the next epoch (CPU time: a loaded machine gives less per second)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(last, weights_only=False)["epoch"]
    assert killed_at < 2

    done = subprocess.run(args + ["ckpt_path=last"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    final = torch.load(last, weights_only=False)
    assert final["epoch"] == 2 and len(final["optimizer_states"]) == 3
    assert "test/recon_loss" in done.stdout
    # both W&B offline folders are there, under the same run id, each with its data file
    run_id = (tmp_path / "runs" / "aae" / "killed" / "wandb_id").read_text()
    folders = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and all(f.name.endswith(f"-{run_id}") for f in folders)
    assert all(list(f.glob(f"run-{run_id}.wandb")) for f in folders)


def test_ctrl_c_saves_a_checkpoint(data_root, tmp_path):
    args = [sys.executable, "train.py", "--config", "configs/aae.yaml", f"data.root={data_root}",
            f"output_dir={tmp_path / 'runs'}", "logger.enabled=false", "logger.name=int",
            "trainer.enable_progress_bar=false", "trainer.max_epochs=50", "trainer.limit_train_batches=100",
            *SMALL]
    env = child_env(OMP_NUM_THREADS="1")
    # a shell started in the background (as CI may be) passes SIGINT down as ignored; a terminal does not
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    last = tmp_path / "runs" / "aae" / "int" / "checkpoints" / "last.ckpt"
    wait_for_file(last, proc, 240)
    first = torch.load(last, weights_only=False)["global_step"]
    let_it_run(proc.pid, 0.5)  # into the next epoch (CPU time: a loaded machine gives less per second)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "stopped by SIGINT" in out and "resume with: python train.py" in out
    assert torch.load(last, weights_only=False)["global_step"] > first  # written at the interruption
