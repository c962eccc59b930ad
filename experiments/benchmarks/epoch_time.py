"""Seconds per epoch: the project as a user runs it vs. a framework-free PyTorch loop, in one run.

    python -m experiments.benchmarks.epoch_time                       # aae + semi_supervised, batch 100 and 1000
    python -m experiments.benchmarks.epoch_time --variant aae --batch-size 100 --epochs 3
    python -m experiments.benchmarks.epoch_time --variant aae --devices 1 2 --skip-reference   # DDP scaling
    python -m experiments.benchmarks.epoch_time --variant semi_supervised --batch-size 100 --device cuda --concurrent 8
    python -m experiments.benchmarks.epoch_time --variant semi_supervised --batch-size 100 --device cuda \
        --adam captured --override optim.stepper=cuda_graph      # both sides captured as CUDA graphs

Each measurement runs in its own process (so peak memory is its own). The reference is the same
networks and the same schedule (recon -> disc -> gen [-> classify], one encoder pass shared by the
adversarial phases, the discriminator frozen in the generator phase, the same Adam implementation:
fused unless --adam default) over an in-memory tensor. The
project runs `train(cfg)` with the variant's config and the project's defaults: DataModule,
W&B (offline), figures, checkpoints and progress bar on. An epoch is timed from the training
epoch's start to its end, which in Lightning includes the validation pass and the figures;
the report also gives the training part alone. Results are medians over the epochs after the first.
With --rounds N the reference and the project alternate N times (ref, project, ref, project, ...)
so that a slow spell of a shared machine hits both; the medians pool every round's epochs and the
`rounds` column gives the lowest and highest per-round ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"aae": "configs/aae.yaml", "semi_supervised": "configs/semi_supervised.yaml"}


def _peak_memory_mb(device) -> dict:
    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def reference(variant: str, batch_size: int, epochs: int, limit: int | None, data_root: str, device: str,
              adam: str = "fused") -> dict:
    """The framework-free loop: plain torch, no Lightning, no DataLoader."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from lightning_aae.config import load_config
    from lightning_aae.data import default_split_size, load_mnist, split_indices

    cfg = load_config(ROOT / CONFIG[variant])
    m, o = cfg.model, cfg.optim
    dev = torch.device(device)
    torch.manual_seed(0)
    x_all, y_all = load_mnist(data_root, "train")
    val_size = cfg.data.val_size or default_split_size(len(y_all))
    lab, unl, _ = split_indices(y_all, val_size, cfg.data.labels_per_class, cfg.data.split_seed)
    x, xl, yl = x_all[unl].to(dev), x_all[lab].to(dev), y_all[lab].to(dev)
    semi = variant == "semi_supervised"
    k, zd = (10 if semi else 0), m.latent_dim

    def mlp(i, out):
        return nn.Sequential(nn.Linear(i, 1000), nn.ReLU(), nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, out)).to(dev)

    enc, dec = mlp(784, k + zd), mlp(k + zd, 784)
    discs = [mlp(zd, 1)] + ([mlp(k, 1)] if semi else [])

    captured = adam == "captured"
    if captured and dev.type != "cuda":
        raise SystemExit("--adam captured records the step as a CUDA graph: it needs --device cuda")

    def adam_(params, phase):
        p = o.get(phase) or {}
        return torch.optim.Adam(params, lr=p.get("lr") or o.lr, betas=tuple(p.get("betas") or o.betas),
                                fused=True if adam in ("fused", "captured") else None, capturable=captured)

    opt_r = adam_([*enc.parameters(), *dec.parameters()], "recon")
    opt_d = adam_([p for d in discs for p in d.parameters()], "disc")
    opt_g = adam_(enc.parameters(), "gen")
    opt_c = adam_(enc.parameters(), "classify") if semi else None
    bce = F.binary_cross_entropy_with_logits

    def codes(xb):
        out = enc(xb)
        if not semi:
            return [out], out
        y = torch.softmax(out[:, :k], 1)
        return [out[:, k:], y], torch.cat([y, out[:, k:]], 1)

    def step(xb, j):
        loss = F.mse_loss(torch.sigmoid(dec(codes(xb)[1])), xb)
        opt_r.zero_grad(set_to_none=True); loss.backward(); opt_r.step()  # noqa: E702
        fakes, _ = codes(xb)
        reals = [torch.randn(len(xb), zd, device=dev) * m.prior_std]
        if semi:
            reals.append(F.one_hot(torch.randint(0, k, (len(xb),), device=dev), k).float())
        d_loss = 0
        for d, f, r in zip(discs, fakes, reals):
            rl, fl = d(r), d(f.detach())
            d_loss = d_loss + bce(rl, torch.ones_like(rl)) + bce(fl, torch.zeros_like(fl))
        opt_d.zero_grad(set_to_none=True); d_loss.backward(); opt_d.step()  # noqa: E702
        for d in discs:
            d.requires_grad_(False)
        g_loss = sum(bce(d(f), torch.ones(len(xb), 1, device=dev)) for d, f in zip(discs, fakes))
        opt_g.zero_grad(set_to_none=True); g_loss.backward(); opt_g.step()  # noqa: E702
        for d in discs:
            d.requires_grad_(True)
        if semi:
            c_loss = F.cross_entropy(enc(xl[j])[:, :k], yl[j])
            opt_c.zero_grad(set_to_none=True); c_loss.backward(); opt_c.step()  # noqa: E702

    run = step if not captured else _captured(step, batch_size, cfg.data.labeled_batch_size, dev)
    n = len(x) // batch_size
    steps = min(n, limit) if limit else n
    times = []
    for _ in range(epochs):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        perm = torch.randperm(len(x), device=dev)
        for i in range(steps):
            run(x[perm[i * batch_size:(i + 1) * batch_size]],
                torch.randint(0, len(xl), (cfg.data.labeled_batch_size,), device=dev) if semi else None)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {"epoch_s": times, "train_s": times, "steps": steps, **_peak_memory_mb(dev)}


def _captured(step, batch_size: int, labeled: int, dev):
    """`step` recorded once as a CUDA graph over static batch buffers (warm-up on a side stream, as
    torch's CUDA-graphs notes do for a whole training step), replayed for each batch copied in."""
    import torch

    sx = torch.zeros(batch_size, 784, device=dev)
    sj = torch.zeros(labeled, dtype=torch.long, device=dev)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step(sx, sj)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step(sx, sj)

    def replay(xb, j):
        sx.copy_(xb)
        if j is not None:
            sj.copy_(j)
        graph.replay()
    return replay


def project(variant: str, batch_size: int, epochs: int, limit: int | None, data_root: str, device: str,
            devices: int, extra: list[str] | None = None) -> dict:
    """The project's own path: train(cfg) with the variant's config and the defaults a user gets."""
    import lightning as L
    import torch

    from lightning_aae.config import load_config
    from lightning_aae.training import train

    class EpochTimer(L.Callback):
        def __init__(self):
            self.epoch, self.train = [], []

        def _sync(self, module):
            if module.device.type == "cuda":
                torch.cuda.synchronize()

        def on_train_epoch_start(self, trainer, module):
            self._sync(module)
            self.t0 = time.perf_counter()
            self.t_val = None

        def on_validation_epoch_start(self, trainer, module):
            if not trainer.sanity_checking:
                self._sync(module)
                self.t_val = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            self._sync(module)
            t = time.perf_counter()
            self.epoch.append(t - self.t0)
            self.train.append((self.t_val or t) - self.t0)

    out = tempfile.mkdtemp(prefix="aae-bench-")
    overrides = [f"data.root={data_root}", f"data.batch_size={batch_size}", f"trainer.max_epochs={epochs}",
                 f"output_dir={out}/runs", f"logger.save_dir={out}", f"trainer.devices={devices}",
                 f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}", "logger.mode=offline"]
    if limit:
        overrides += [f"trainer.limit_train_batches={limit}", f"trainer.limit_val_batches={max(1, limit // 10)}",
                      "trainer.limit_test_batches=1"]
    overrides += list(extra or [])
    timer = EpochTimer()
    try:
        train(load_config(ROOT / CONFIG[variant], overrides), verbose=False, extra_callbacks=[timer])
    finally:
        shutil.rmtree(out, ignore_errors=True)  # this process's throwaway checkpoints and W&B files
    if int(os.environ.get("LOCAL_RANK", 0)) != 0:
        return {}
    steps = limit or (50000 // batch_size // devices)
    return {"epoch_s": timer.epoch, "train_s": timer.train, "steps": steps, **_peak_memory_mb(torch.device(device))}


def _counted(xs):
    return xs[1:] if len(xs) > 1 else xs  # the first epoch of a process pays one-off costs


def _median(runs, key):
    """Median over the counted epochs of every run (a run is one measurement process)."""
    return statistics.median([t for run in runs for t in _counted(run[key])])


def _worker(args) -> None:
    sys.path.insert(0, str(ROOT))
    if args.worker == "reference":
        res = reference(args.variant[0], args.batch_size[0], args.epochs, args.limit_batches, args.data_root, args.device,
                        args.adam)
    else:
        res = project(args.variant[0], args.batch_size[0], args.epochs, args.limit_batches, args.data_root,
                      args.device, args.devices[0], args.override)
    if res:
        print("RESULT " + json.dumps(res), flush=True)


def _command(kind: str, variant: str, batch: int, devices: int, args) -> list:
    cmd = [sys.executable, "-m", "experiments.benchmarks.epoch_time", "--worker", kind, "--variant", variant,
           "--batch-size", str(batch), "--epochs", str(args.epochs), "--data-root", args.data_root,
           "--device", args.device, "--devices", str(devices), "--adam", args.adam]
    if args.limit_batches:
        cmd += ["--limit-batches", str(args.limit_batches)]
    for o in args.override:
        cmd += ["--override", o]
    return cmd


def _result(proc, out: str, err: str, what: str) -> dict:
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"benchmark worker failed ({what}):\n{err[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _run(kind: str, variant: str, batch: int, devices: int, args, copies: int = 1) -> list | dict:
    """One measurement process, or `copies` of them started together (their results, in order)."""
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    procs = [subprocess.Popen(_command(kind, variant, batch, devices, args), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(copies)]
    results = [_result(p, *p.communicate(), f"{kind} {variant} batch {batch}") for p in procs]
    return results if copies > 1 else results[0]


@contextmanager
def _mps(device: str):
    """CUDA's Multi-Process Service for the concurrent runs where the machine has it (one GPU context shared
    by the processes, so their small kernels overlap); without it the processes time-slice the GPU."""
    control = shutil.which("nvidia-cuda-mps-control") if device == "cuda" else None
    started = control is not None and subprocess.run([control, "-d"], capture_output=True).returncode == 0
    print(f"# MPS: {'on' if started else 'not used'}", flush=True)
    try:
        yield started
    finally:
        if started:
            subprocess.run([control], input="quit\n", text=True, capture_output=True)


def concurrent(args) -> list:
    """Aggregate epochs per second of N training processes started together on one device, against one
    process alone: how many seeds one GPU (or CPU) trains at once for the price of one."""
    rows = []
    with _mps(args.device):
        for variant in args.variant:
            for batch in args.batch_size:
                alone = 1 / _median([_run("project", variant, batch, 1, args)], "epoch_s")
                together = _run("project", variant, batch, 1, args, copies=args.concurrent)
                aggregate = sum(1 / _median([r], "epoch_s") for r in together)
                rows.append({"variant": variant, "batch_size": batch, "concurrent": args.concurrent,
                             "alone_epochs_per_s": alone, "aggregate_epochs_per_s": aggregate,
                             "speedup": aggregate / alone})
                print(f"{variant:<16}{batch:>6}{args.concurrent:>5}{alone:>12.4f}{aggregate:>14.4f}"
                      f"{aggregate / alone:>9.2f}", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", nargs="+", default=["aae", "semi_supervised"], choices=sorted(CONFIG))
    p.add_argument("--batch-size", nargs="+", type=int, default=[100, 1000])
    p.add_argument("--epochs", type=int, default=4, help="epochs per measurement; the first is not counted")
    p.add_argument("--limit-batches", type=int, default=None, help="batches per epoch (for a quick check)")
    p.add_argument("--devices", nargs="+", type=int, default=[1], help="device counts for the project's runs")
    p.add_argument("--rounds", type=int, default=1,
                   help="alternate reference and project measurements this many times and pool their epochs")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--adam", default="fused", choices=["fused", "default", "captured"],
                   help="Adam implementation on both sides: fused (the project's default) or torch's default; "
                        "captured: the reference's whole step recorded as one CUDA graph (fused, capturable Adam)")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--data-root", default=os.environ.get("AAE_DATA_DIR", "data"))
    p.add_argument("--override", action="append", default=[],
                   help="extra config override for the project's runs (repeatable), e.g. callbacks.figures.enabled=false")
    p.add_argument("--concurrent", type=int, default=0, metavar="N",
                   help="instead: N project runs started together on one device (with MPS where present), their "
                        "aggregate epochs per second against one run alone")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--worker", choices=["reference", "project"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if args.worker:
        _worker(args)  # gets the parent's overrides, optim.fused=false included
        return 0
    if args.adam == "default":
        args.override = ["optim.fused=false"] + args.override

    import torch

    print(f"# {time.strftime('%Y-%m-%d %H:%M')} | {platform.node()} | {platform.processor() or platform.machine()} | "
          f"{os.cpu_count()} CPUs | torch {torch.__version__} | threads {torch.get_num_threads()} | device {args.device} | "
          f"adam {args.adam}"
          + (f" | overrides {' '.join(args.override)}" if args.override else ""))
    if args.concurrent:
        print(f"{'variant':<16}{'batch':>6}{'runs':>5}{'alone ep/s':>12}{'together ep/s':>14}{'speedup':>9}")
        results = concurrent(args)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        return 0
    header = (f"{'variant':<16}{'batch':>6}{'dev':>4}{'steps':>6}{'ref s/ep':>10}{'proj s/ep':>10}"
              f"{'ratio':>7}{'rounds':>12}{'proj train s':>13}{'train ratio':>12}{'samples/s':>11}{'ref MB':>8}"
              f"{'proj MB':>9}")
    print(header)
    results = []
    for variant in args.variant:
        for batch in args.batch_size:
            refs, projs = [], {d: [] for d in args.devices}
            for _ in range(args.rounds):
                if not args.skip_reference:
                    refs.append(_run("reference", variant, batch, 1, args))
                for devices in args.devices:
                    projs[devices].append(_run("project", variant, batch, devices, args))
            for devices in args.devices:
                row = _row(variant, batch, devices, refs, projs[devices])
                results.append(row)
                _print_row(row)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def _row(variant: str, batch: int, devices: int, refs: list, projs: list) -> dict:
    steps = projs[0]["steps"]
    row = {"variant": variant, "batch_size": batch, "devices": devices, "steps": steps, "rounds": len(projs),
           "project_epoch_s": _median(projs, "epoch_s"), "project_train_s": _median(projs, "train_s"),
           "project_peak_mb": max(p.get("peak_gpu_mb", p["peak_rss_mb"]) for p in projs)}
    row["samples_per_s"] = steps * batch * devices / row["project_train_s"]
    if refs:
        scale = steps / refs[0]["steps"]  # DDP: each process runs 1/devices of the reference's steps
        row["reference_epoch_s"] = _median(refs, "epoch_s") * scale
        row["reference_peak_mb"] = max(r.get("peak_gpu_mb", r["peak_rss_mb"]) for r in refs)
        row["ratio"] = row["project_epoch_s"] / row["reference_epoch_s"]
        row["train_ratio"] = row["project_train_s"] / row["reference_epoch_s"]
        row["ratio_by_round"] = [_median([p], "epoch_s") / (_median([r], "epoch_s") * scale)
                                 for r, p in zip(refs, projs)]
    return row


def _print_row(row: dict) -> None:
    f = lambda k, w, fmt: f"{row[k]:{w}{fmt}}" if k in row else f"{'-':>{w}}"  # noqa: E731
    by_round = row.get("ratio_by_round", [])
    spread = f"{min(by_round):.3f}-{max(by_round):.3f}" if len(by_round) > 1 else "-"
    print(f"{row['variant']:<16}{row['batch_size']:>6}{row['devices']:>4}{row['steps']:>6}"
          f"{f('reference_epoch_s', 10, '.2f')}{row['project_epoch_s']:>10.2f}{f('ratio', 7, '.3f')}{spread:>12}"
          f"{row['project_train_s']:>13.2f}{f('train_ratio', 12, '.3f')}{row['samples_per_s']:>11.0f}"
          f"{f('reference_peak_mb', 8, '.0f')}{row['project_peak_mb']:>9.0f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
