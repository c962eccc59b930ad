"""trainer.devices=2 on CPU: Lightning's DDP over two gloo processes, for every label-aware variant and the AAE."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import child_env
from ddp_worker import CONFIGS

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("ddp")
    env = child_env(OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(HERE / "ddp_worker.py"), str(out), str(data_root)],
                          capture_output=True, text=True, timeout=900, env=env, cwd=HERE.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("variant", CONFIGS)
def test_both_processes_end_with_identical_parameters(ddp_run, variant):
    a = torch.load(ddp_run / f"{variant}_rank0.pt")
    b = torch.load(ddp_run / f"{variant}_rank1.pt")
    assert a.keys() == b.keys()
    # batch-norm statistics (configs/clustering.yaml) are each process's own on CPUs: torch's SyncBatchNorm
    # needs GPUs, where train() turns it on; the weights themselves must agree
    own = ("running_mean", "running_var", "num_batches_tracked")
    for k in (k for k in a if not k.endswith(own)):
        assert torch.equal(a[k], b[k]), f"{variant}: {k} differs between the processes"


@pytest.mark.parametrize("variant", CONFIGS)
def test_test_metrics_count_each_test_image_once(ddp_run, variant):
    metrics = json.loads((ddp_run / f"{variant}_metrics.json").read_text())
    assert metrics["test/n_images"] == 10000
    assert metrics["val/n_images"] == 2 * 2 * 500  # 2 batches of 500 on each of 2 processes


@pytest.mark.parametrize("variant", CONFIGS)
def test_processes_train_on_different_shards(ddp_run, variant):
    # with different data, identical parameters can only come from synchronised gradients
    a = torch.load(ddp_run / f"{variant}_rank0_batch.pt")
    b = torch.load(ddp_run / f"{variant}_rank1_batch.pt")
    assert a.shape == b.shape == (50, 784)
    assert not torch.equal(a, b)


def test_checkpoint_from_two_processes_loads_on_one_device(ddp_run):
    from lightning_aae.variants import SemiSupervisedAAE, load_module

    module = load_module(str(ddp_run / "runs" / "semi_supervised" / "semi_supervised" / "checkpoints" / "last.ckpt"))
    assert isinstance(module, SemiSupervisedAAE)
    saved = torch.load(ddp_run / "semi_supervised_rank0.pt")
    assert all(torch.equal(saved[k], v) for k, v in module.state_dict().items())
    with torch.no_grad():
        probs = module.classify(torch.rand(3, 784))
    assert probs.shape == (3, 10) and torch.allclose(probs.sum(1), torch.ones(3))


@pytest.mark.parametrize("variant", CONFIGS)
def test_both_processes_write_one_run_folder(ddp_run, variant):
    assert [p.name for p in (ddp_run / "runs" / variant).iterdir()] == [variant]
