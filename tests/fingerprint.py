"""Weight fingerprints of every variant after a few dozen fixed-seed training steps through train().

    python tests/fingerprint.py --write     # record tests/data/fingerprints.json (names the commit)

tests/test_fingerprint.py re-runs the cases and compares: a refactor that keeps behaviour gives
the same weights to float tolerance. Each parameter is summarised by its sum, its sum of squares
and its dot product with a fixed random vector, so any change of any weight shows.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List

import torch
from lightning.pytorch.callbacks import Callback

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
FILE = Path(__file__).parent / "data" / "fingerprints.json"
SMALL = ["model.hidden_dims=[32,32]", "model.disc_hidden_dims=[32,32]", "data.batch_size=32",
         "data.labeled_batch_size=16", "trainer.max_epochs=2", "trainer.limit_train_batches=12",
         "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "callbacks.figures.enabled=false",
         "seed=7"]
CASES: Dict[str, List[str]] = {
    "autoencoder": ["model.variant=autoencoder"],
    "aae": ["model.variant=aae", "optim.grad_clip=1.0"],
    "aae_label_regularized": ["model.variant=aae", "model.prior=mixture", "model.label_regularized=true"],
    # float64: in float32 the convolution kernel's summation order (oneDNN or native, which depends on
    # the CPU) moved these weights by up to 12 % after 24 steps, so a float32 record held on one CPU only
    "aae_conv_bn": ["model.variant=aae", "model.arch=conv", "model.conv_channels=[4,8]", "model.batch_norm=true",
                    "trainer.precision=64-true"],
    "supervised": ["model.variant=supervised"],
    "semi_supervised": ["model.variant=semi_supervised", "model.latent_dim=4", "data.labels_per_class=5",
                        "model.input_noise=0.3", "optim.scheduler=multistep", "optim.milestones=[1]"],
    "semi_supervised_sgd": ["model.variant=semi_supervised", "model.latent_dim=4", "data.labels_per_class=5",
                            "optim.optimizer=sgd", "optim.lr=0.01", "optim.recon.momentum=0.5"],
    "clustering": ["model.variant=clustering", "model.n_clusters=6", "model.latent_dim=3", "model.category_noise=0.3",
                   "callbacks.checkpoint.monitor=val/cluster_error"],
    "dim_reduction": ["model.variant=dim_reduction", "model.n_clusters=5", "model.latent_dim=2",
                      "callbacks.checkpoint.monitor=val/cluster_error"],
    "vae": ["model.variant=vae", "model.latent_dim=3", "optim.scheduler=step", "optim.step_size=1"],
}


class _Capture(Callback):
    def on_train_end(self, trainer, module):
        self.state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


def summarise(state: Dict[str, torch.Tensor]) -> Dict[str, List[float]]:
    out = {}
    for name, t in sorted(state.items()):
        flat = t.double().flatten()
        probe = torch.randn(flat.numel(), generator=torch.Generator().manual_seed(flat.numel()), dtype=torch.float64)
        out[name] = [float(flat.sum()), float((flat * flat).sum()), float(flat @ probe)]
    return out


def run_case(name: str, base_overrides: List[str]) -> Dict[str, List[float]]:
    from lightning_aae.config import load_config
    from lightning_aae.training import train

    capture = _Capture()
    torch.use_deterministic_algorithms(True, warn_only=True)
    cfg = load_config(None, base_overrides + SMALL + CASES[name])
    # one thread: convolution kernels sum in an order that depends on the thread count, and the
    # record must not depend on how many cores the machine running the test has
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(cfg, verbose=False, extra_callbacks=[capture])
    finally:
        torch.set_num_threads(threads)
    return summarise(capture.state)


def main(argv=None) -> int:
    import subprocess
    import tempfile

    from conftest import mnist_root

    p = argparse.ArgumentParser()
    p.add_argument("--write", action="store_true")
    p.add_argument("--why", default="", help="with --write: why behaviour changed (kept in the file's history)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = [f"data.root={mnist_root()}", f"output_dir={tmp}/runs", "logger.enabled=false",
                "trainer.accelerator=cpu", "trainer.devices=1", "trainer.enable_progress_bar=false",
                "trainer.enable_model_summary=false"]
        prints = {name: run_case(name, base) for name in CASES}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    history = json.loads(FILE.read_text()).get("history", []) if FILE.is_file() else []
    history.append({"commit": commit, "why": args.why or "recorded"})
    record = {"commit": commit, "torch": torch.__version__, "history": history, "cases": prints}
    if args.write:
        FILE.parent.mkdir(exist_ok=True)
        FILE.write_text(json.dumps(record, indent=1))
        print(f"wrote {FILE} ({len(prints)} cases, commit {commit})")
    else:
        print(json.dumps(record)[:500])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
