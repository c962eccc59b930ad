"""A process of a two-process CPU DDP run killed mid-training: the other stops within seconds with one
line (the failure, the last checkpoint, the resume command), exit 5, the traceback in a file; the printed
command resumes from the checkpoint that survived."""
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import child_env, wait_for_file

ROOT = Path(__file__).resolve().parents[1]


def _rank_one(parent: int) -> int:
    """The pid of the process Lightning started as LOCAL_RANK=1 under `parent`."""
    deadline = time.time() + 60
    while time.time() < deadline:
        for pid in subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split():
            try:  # a short-lived child (a helper Lightning or torch starts) may exit between pgrep and here
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except (ProcessLookupError, FileNotFoundError):
                continue
            if b"LOCAL_RANK=1" in env:
                return int(pid)
        time.sleep(0.2)
    raise AssertionError("no LOCAL_RANK=1 process appeared")


def test_a_killed_worker_stops_the_run_in_one_line_and_the_run_resumes(tmp_path, data_root):
    args = ["--config", "configs/aae.yaml", "trainer.devices=2", "trainer.accelerator=cpu", f"data.root={data_root}",
            f"output_dir={tmp_path}/runs", "logger.enabled=false", "trainer.enable_progress_bar=false",
            "model.hidden_dims=[64,64]", "model.disc_hidden_dims=[64,64]", "trainer.max_epochs=3",
            "trainer.limit_train_batches=60", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
            "callbacks.figures.enabled=false", "logger.name=k", "num_threads=1"]
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env(OMP_NUM_THREADS="1"))
    run = tmp_path / "runs" / "aae" / "k"
    worker = _rank_one(proc.pid)
    wait_for_file(run / "checkpoints" / "last.ckpt", proc, timeout=240)
    os.kill(worker, signal.SIGKILL)
    killed = time.time()
    _, err = proc.communicate(timeout=120)
    assert time.time() - killed < 60  # not the 5-minute timeout: the dead peer's connection is gone
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert proc.returncode == 5, err[-3000:]
    assert len(errors) == 1 and "Traceback" not in err
    assert "another process of this multi-process run failed" in errors[0]
    assert (run / "error-rank0.log").read_text().startswith("Traceback")
    assert f"the last checkpoint is {run / 'checkpoints' / 'last.ckpt'}" in errors[0]
    resume = shlex.split(errors[0].split("resume with: ", 1)[1])
    assert resume[:2] == ["python", "train.py"] and resume[-1] == f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"
    done = subprocess.run([sys.executable, *resume[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=child_env(OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run / "result.json").is_file()
