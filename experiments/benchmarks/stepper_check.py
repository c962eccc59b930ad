"""Do the compiled and captured steppers train what the eager one trains, and how long does a step take?

    python -m experiments.benchmarks.stepper_check --device cuda --steps 100      # on a GPU
    python -m experiments.benchmarks.stepper_check --device cpu --steps 3 --small # a rehearsal

For each variant (aae, semi_supervised: their configs' networks, MNIST batches on the device), the same
initial weights and random stream are trained `--steps` steps by `optim.stepper` eager, compiled and (on
CUDA) cuda_graph; the table gives each stepper's largest weight difference from eager, whether that is
within --atol, and its milliseconds per step after the first (compile and capture are in first_s).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {"aae": "configs/aae.yaml", "semi_supervised": "configs/semi_supervised.yaml"}


def _batches(dm, steps: int):
    loader = iter(dm.train_dataloader())
    for _ in range(steps):
        batch = next(loader)
        yield batch[0] if isinstance(batch, tuple) and isinstance(batch[0], dict) else batch


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(variant: str, stepper: str, steps: int, device: str, small: bool, data_root: str):
    """(module after the steps, seconds of the first step, seconds per later step, why it fell back).
    Every stepper starts from the same weights (seed 0) and random stream (seed 1)."""
    import torch

    from lightning_aae.config import load_config
    from lightning_aae.data import ImageDataModule
    from lightning_aae.optim import build_optimizers
    from lightning_aae.steppers import make_stepper
    from lightning_aae.variants import build_module

    overrides = ["model.hidden_dims=[64]", "model.disc_hidden_dims=[32]"] if small else []
    cfg = load_config(ROOT / CONFIGS[variant], overrides + [f"data.root={data_root}"])
    dev = torch.device(device)
    torch.manual_seed(0)
    module = build_module(cfg).to(dev)
    dm = ImageDataModule.from_config(cfg.data, seed=0)
    dm.setup("fit")
    dm.labeled, dm.unlabeled = dm.labeled.to(dev), dm.unlabeled.to(dev)
    params = module.phase_params()
    optimizers, _ = build_optimizers(module.optim_cfg, params, 1)
    run = make_stepper(stepper, params=params)
    torch.manual_seed(1)
    times = []
    for batch in _batches(dm, steps):
        _sync(dev)
        t = time.perf_counter()
        run.step(module, module.step_batch(batch), optimizers)
        _sync(dev)
        times.append(time.perf_counter() - t)
    later = times[1:] or times
    return module, times[0], sum(later) / len(later), getattr(run, "fallback", None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.benchmarks.stepper_check", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--small", action="store_true", help="small networks (a rehearsal)")
    p.add_argument("--atol", type=float, default=1e-4)
    p.add_argument("--steppers", nargs="+", default=None, choices=["eager", "compiled", "cuda_graph"],
                   help="eager first (the reference); default: eager, compiled and, on CUDA, cuda_graph")
    p.add_argument("--data-root", default=__import__("os").environ.get("AAE_DATA_DIR", "data"))
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch

    steppers = args.steppers or ["eager", "compiled"] + (["cuda_graph"] if args.device == "cuda" else [])
    if steppers[0] != "eager":
        p.error("--steppers: eager comes first (the others are compared with it)")
    rows = []
    print(f"{'variant':<16}{'stepper':<12}{'max |w - eager|':>16}{'allclose':>9}{'first_s':>9}{'ms/step':>9}  fallback")
    for variant in CONFIGS:
        for stepper in steppers:
            module, first, per, fallback = measure(variant, stepper, args.steps, args.device, args.small, args.data_root)
            if stepper == "eager":
                eager, diff = module, 0.0
            else:
                diff = max((a.detach() - b.detach()).abs().max().item()
                           for a, b in zip(eager.parameters(), module.parameters()))
            row = {"variant": variant, "stepper": stepper, "steps": args.steps, "max_abs_diff": diff,
                   "allclose": diff <= args.atol, "first_s": first, "ms_per_step": 1000 * per, "fallback": fallback}
            rows.append(row)
            print(f"{variant:<16}{stepper:<12}{diff:>16.3g}{str(row['allclose']):>9}{first:>9.1f}{1000 * per:>9.2f}  "
                  f"{fallback or ''}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "torch": torch.__version__, "rows": rows}, indent=1))
    return 0 if all(r["allclose"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
