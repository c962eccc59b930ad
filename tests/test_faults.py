"""Faults a cluster user meets: preemption signals, full disks, untrusted checkpoints, bad data
files, W&B that cannot start. Each ends in one line and a documented exit code, and loses nothing
already saved."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from callbacks.preemption import Preempted
from conftest import child_env, let_it_run, SMALL_NETS, wait_for_file
from lightning_aae import storage
from lightning_aae.cli import main
from lightning_aae.config import load_config
from lightning_aae.data import DataError, load_mnist
from lightning_aae.training import train

ROOT = Path(__file__).resolve().parents[1]


class SignalAt(Callback):
    """Sends this process a signal after a given training batch, as a scheduler would."""

    def __init__(self, signum, batch):
        self.signum, self.batch = signum, batch

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.current_epoch == 0 and batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)


def _final_weights(out: Path) -> dict:
    (ckpt,) = out.glob("*/*/checkpoints/last.ckpt")
    return torch.load(ckpt, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("config, extra", [
    ("aae", []),
    # the labeled stream cycles (50 images, batches of 16: 4 per pass): the replay must land mid-pass
    ("semi_supervised", ["data.labels_per_class=5", "data.labeled_batch_size=16", "model.latent_dim=4"]),
])
def test_preempted_mid_epoch_and_resumed_equals_uninterrupted(small_overrides, tmp_path, capfd, config, extra):
    base = small_overrides + extra + ["trainer.max_epochs=2", "trainer.limit_train_batches=10", "seed=3",
                                      "logger.name=run", "trainer.enable_progress_bar=false"]
    train(load_config(f"configs/{config}.yaml", base + [f"output_dir={tmp_path}/straight"]), verbose=False)
    cut = base + [f"output_dir={tmp_path}/cut"]
    with pytest.raises(Preempted) as stop:
        train(load_config(f"configs/{config}.yaml", cut), verbose=False, extra_callbacks=[SignalAt(signal.SIGTERM, 6)])
    assert stop.value.exit_code == 143 and stop.value.step > 0
    saved = torch.load(stop.value.checkpoint, weights_only=True)
    # sent after batch 6's checks, so the step running then (batch 7) finishes and the run stops: 8 done of 10
    assert saved["epoch"] == 0 and saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"] == 8
    capfd.readouterr()
    train(load_config(f"configs/{config}.yaml", cut + ["ckpt_path=auto"]), verbose=False)
    assert capfd.readouterr().out.count("epoch 0 ") == 1  # the resumed epoch's line, as the epochs after it
    a, b = _final_weights(tmp_path / "straight"), _final_weights(tmp_path / "cut")
    assert a["global_step"] == b["global_step"]
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k  # the same batches, the same noise


class SignalInValidation(Callback):
    """Sends this process a signal once, during epoch 0's validation."""

    def __init__(self, signum):
        self.signum, self.sent = signum, False

    def on_validation_batch_end(self, trainer, *args, **kwargs):
        if trainer.current_epoch == 0 and not trainer.sanity_checking and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("when", ["last step", "validation"])
def test_a_signal_in_an_epochs_last_step_or_validation_stops_after_that_epoch_is_scored(
        small_overrides, tmp_path, capfd, when):
    """Stopped inside validation, the resumed run would start past it: the epoch would have no score, no
    curve point and no chance to be the best checkpoint. The run stops once the epoch is whole instead."""
    base = small_overrides + ["trainer.max_epochs=3", "trainer.limit_train_batches=10", "seed=3", "logger.name=run",
                              "trainer.enable_progress_bar=false"]
    train(load_config("configs/aae.yaml", base + [f"output_dir={tmp_path}/straight"]), verbose=False)
    cut = base + [f"output_dir={tmp_path}/cut"]
    # SignalAt(8): Preemption's check after batch 8 has run, so the next is after batch 9, the last
    signaller = SignalAt(signal.SIGTERM, 8) if when == "last step" else SignalInValidation(signal.SIGTERM)
    capfd.readouterr()
    with pytest.raises(Preempted) as stop:
        train(load_config("configs/aae.yaml", cut), verbose=False, extra_callbacks=[signaller])
    assert stop.value.step == 30  # at the end of epoch 0, all of it done
    assert capfd.readouterr().out.count("epoch 0 ") == 1  # epoch 0's line, printed before the stop
    train(load_config("configs/aae.yaml", cut + ["ckpt_path=auto"]), verbose=False)
    assert "epoch 0 " not in capfd.readouterr().out  # not printed twice
    straight, resumed = (json.loads(next((tmp_path / d).glob("aae/*/result.json")).read_text()) for d in ("straight", "cut"))
    assert None not in resumed["curve"]["values"] and resumed["curve"] == straight["curve"]
    assert resumed["best_epoch"] == straight["best_epoch"]
    a, b = _final_weights(tmp_path / "straight"), _final_weights(tmp_path / "cut")
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k


def test_sigterm_to_train_py_saves_says_how_to_resume_and_exits_143(data_root, tmp_path):
    from conftest import SMALL

    args = ["train.py", "--config", "configs/aae.yaml", f"data.root={data_root}", f"output_dir={tmp_path}",
            "logger.enabled=false", "logger.name=term", "trainer.enable_progress_bar=false", "trainer.max_epochs=2",
            "trainer.limit_train_batches=150", "num_threads=1", *SMALL]
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=child_env())
    ckpt = tmp_path / "aae" / "term" / "checkpoints" / "last.ckpt"
    wait_for_file(ckpt, proc, 120)  # the end of epoch 0: training is under way, epoch 1 has started
    let_it_run(proc.pid, 0.3)  # CPU time, so a loaded machine does not signal it too early
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    (line,) = [l for l in err.splitlines() if "stopped by SIGTERM" in l]
    assert "resume with: python train.py" in line and "ckpt_path=" in line
    saved = torch.load(ckpt, weights_only=True)
    assert saved["epoch"] == 1 and 3 * 150 < saved["global_step"] < 3 * 300  # mid-epoch, not an epoch's end
    assert not list(ckpt.parent.glob(".*tmp*"))
    resume = line.split("resume with: ", 1)[1].split()[1:]  # as printed, without "python"
    done = subprocess.run([sys.executable, *[a.strip("'") for a in resume]], cwd=ROOT, capture_output=True, env=child_env(),
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # the rest of the epoch, not the epoch again: every batch once, 3 optimizer steps each
    assert torch.load(ckpt, weights_only=True)["global_step"] == 3 * 300


def test_requeue_signal_under_slurm_saves_and_requeues_the_job(small_overrides, tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/scontrol.args\n")
    (fake / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    cfg = load_config("configs/autoencoder.yaml", small_overrides + ["trainer.limit_train_batches=10"])
    with pytest.raises(Preempted) as stop:
        train(cfg, verbose=False, extra_callbacks=[SignalAt(signal.SIGUSR1, 3)])
    assert stop.value.exit_code == 128 + signal.SIGUSR1 and "requeued SLURM job 4242" in str(stop.value)
    assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "4242"]
    assert stop.value.checkpoint.is_file()


def test_unknown_signal_name_is_refused():
    with pytest.raises(Exception, match="callbacks.preemption: unknown or uncatchable signal 'SIGKILL'"):
        load_config("configs/aae.yaml", ["callbacks.preemption.signals=[SIGTERM,SIGKILL]"])


# ---- storage ------------------------------------------------------------------------------------
def test_disk_full_during_a_checkpoint_keeps_the_earlier_ones(capsys, small_overrides, tmp_path, monkeypatch):
    real_save, calls = torch.save, []

    def filling_disk(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) >= 3:  # epoch 0's best and last are written; then the disk is full
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", filling_disk)
    code = main(["--config", "configs/aae.yaml", *small_overrides, "logger.name=full", "trainer.max_epochs=3",
                 "trainer.limit_train_batches=4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 4 and len(err) == 1
    assert "No space left on device" in err[0] and "epoch001.ckpt" in err[0]
    folder = tmp_path / "runs" / "aae" / "full" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch000.ckpt", "last.ckpt"]  # no partial, no temporary
    assert torch.load(folder / "last.ckpt", weights_only=True)["epoch"] == 0  # whole, and loadable


def test_unwritable_output_folder_is_named_before_anything_runs(capsys, small_overrides, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = main(["--config", "configs/aae.yaml", *small_overrides, f"output_dir={blocker}/runs"])
    err = capsys.readouterr().err.strip()
    assert code == 4 and len(err.splitlines()) == 1 and f"output_dir {blocker}/runs is not writable" in err


def test_failed_registry_write_keeps_the_earlier_lines(tmp_path, monkeypatch):
    registry = tmp_path / "results.jsonl"
    registry.write_text('{"a": 1}\n')

    def no_rename(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(storage.StorageError, match=f"cannot write {registry}: Permission denied"):
        storage.append_line_atomic(registry, '{"b": 2}')
    assert registry.read_text() == '{"a": 1}\n' and sorted(p.name for p in tmp_path.iterdir()) == ["results.jsonl"]


# ---- untrusted checkpoints ----------------------------------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def evil_checkpoint(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "runs" / "aae" / "evil" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "hyper_parameters": {"variant": "aae"}, "payload": _Payload(marker)}, path)
    return path, marker


def test_untrusted_checkpoint_is_refused_everywhere_and_nothing_runs(capsys, small_overrides, evil_checkpoint):
    from lightning_aae import evaluate, generate
    from lightning_aae.variants import load_module

    path, marker = evil_checkpoint
    assert main(["--config", "configs/aae.yaml", *small_overrides, f"ckpt_path={path}"]) == 2
    assert evaluate.main([str(path)]) == 2
    assert generate.main([str(path), "--out", str(path.parent / "x.png")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all("refusing checkpoint" in e and "posix.system" in e for e in errors), errors
    with pytest.raises(storage.CheckpointError, match="refusing checkpoint"):
        load_module(str(path))
    assert not marker.exists()


def test_a_file_that_is_not_a_checkpoint_is_named(capsys, small_overrides, tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00not a checkpoint")
    assert main(["--config", "configs/aae.yaml", *small_overrides, f"ckpt_path={junk}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"checkpoint {junk} is not readable" in err


# ---- data files ---------------------------------------------------------------------------------
def _spoil(raw: Path, how: str) -> str:
    target = raw / "train-images-idx3-ubyte"
    data = target.read_bytes()
    if how == "missing":
        target.unlink()
    elif how == "empty":
        target.write_bytes(b"")
    elif how == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif how == "wrong magic":
        target.write_bytes(b"\x12\x34" + data[2:])
    elif how == "wrong size":
        target.write_bytes(data[:4] + (59999).to_bytes(4, "big") + data[8:])
    elif how == "a folder":
        target.unlink()
        target.mkdir()
    elif how == "bad gzip":
        target.unlink()
        (raw / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    return target.name


@pytest.mark.parametrize("how", ["missing", "empty", "truncated", "wrong magic", "wrong size", "a folder", "bad gzip"])
def test_spoiled_mnist_files_are_named_in_one_line(capsys, small_overrides, data_root, tmp_path, how):
    import shutil

    raw = tmp_path / "data" / "MNIST" / "raw"
    shutil.copytree(data_root / "MNIST" / "raw", raw)
    name = _spoil(raw, how)
    code = main(["--config", "configs/aae.yaml", *small_overrides, f"data.root={tmp_path / 'data'}",
                 "data.download=false"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and (name in err or "MNIST not found" in err), err
    with pytest.raises(DataError):
        load_mnist(tmp_path / "data", "train")


# ---- W&B ----------------------------------------------------------------------------------------
def test_online_without_login_logs_offline_and_says_so(capsys, small_overrides, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc: not logged in
    cfg = load_config("configs/autoencoder.yaml", small_overrides + [
        "logger.enabled=true", "logger.mode=online", "trainer.max_epochs=1", "trainer.limit_train_batches=2"])
    train(cfg, verbose=False)
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("W&B")]
    assert len(err) == 1 and "no W&B login" in err[0] and "logging offline" in err[0]
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))


def test_unreachable_server_falls_back_to_offline_within_the_timeout(capsys, small_overrides, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    cfg = load_config("configs/autoencoder.yaml", small_overrides + [
        "logger.enabled=true", "logger.mode=online", "logger.init_timeout=5", "trainer.max_epochs=1",
        "trainer.limit_train_batches=2"])
    started = time.time()
    train(cfg, verbose=False)
    assert time.time() - started < 60
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("W&B")]
    assert len(err) == 1 and "cannot reach the server" in err[0] and "logging offline" in err[0]
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))


def test_figures_do_not_import_wandb_when_the_logger_is_off(data_root, tmp_path):
    code = ("import sys; from lightning_aae.cli import main; "
            f"rc = main(['--config', 'configs/semi_supervised.yaml', 'data.root={data_root}', "
            f"'output_dir={tmp_path}', 'logger.enabled=false', 'trainer.max_epochs=1', "
            "'trainer.limit_train_batches=2', 'trainer.limit_val_batches=1', 'trainer.limit_test_batches=1', "
            f"{', '.join(map(repr, SMALL_NETS))}, 'trainer.enable_progress_bar=false']); "
            "print('WANDB' if 'wandb' in sys.modules else 'NO-WANDB', rc)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=child_env())
    assert done.stdout.split()[-2:] == ["NO-WANDB", "0"], done.stderr[-2000:]


def test_ckpt_path_auto_starts_fresh_then_resumes_the_same_run(small_overrides, tmp_path):
    base = small_overrides + ["logger.name=job", "trainer.limit_train_batches=3", "ckpt_path=auto"]
    train(load_config("configs/autoencoder.yaml", base + ["trainer.max_epochs=1"]), verbose=False)  # nothing to resume
    train(load_config("configs/autoencoder.yaml", base + ["trainer.max_epochs=2"]), verbose=False)  # resumes it
    assert [p.name for p in (tmp_path / "runs" / "autoencoder").iterdir()] == ["job"]
    assert _final_weights(tmp_path / "runs")["epoch"] == 1


def test_sge_warning_signal_stops_and_an_ignored_signal_stays_ignored(small_overrides, tmp_path, monkeypatch):
    cfg = load_config("configs/autoencoder.yaml", small_overrides + ["trainer.limit_train_batches=6", "logger.name=s"])
    with pytest.raises(Preempted) as stop:
        train(cfg, verbose=False, extra_callbacks=[SignalAt(signal.SIGUSR2, 2)])
    assert stop.value.exit_code == 140
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        train(load_config("configs/autoencoder.yaml", small_overrides + ["trainer.limit_train_batches=6"]),
              verbose=False, extra_callbacks=[SignalAt(signal.SIGHUP, 2)])  # finishes: nothing raised
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_full_disk_while_drawing_a_figure_is_one_line(capsys, small_overrides, tmp_path, monkeypatch):
    from PIL import Image

    def full(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    code = main(["--config", "configs/autoencoder.yaml", *small_overrides, "callbacks.figures.enabled=true",
                 "trainer.max_epochs=1", "trainer.limit_train_batches=2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 4 and len(err) == 1 and ".png: No space left on device" in err[0]
    assert not list((tmp_path / "runs").rglob(".*tmp*"))
