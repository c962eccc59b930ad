"""Test metrics of a checkpoint, on one device, over exactly the test images its run was tested on.

    python -m lightning_aae.evaluate runs/semi_supervised/<run>/checkpoints/last.ckpt
    python -m lightning_aae.evaluate CKPT --parzen        # adds the Parzen-window log-likelihood
    python -m lightning_aae.evaluate CKPT --figures out/  # and the test-set figures as PNG files
    python -m lightning_aae.evaluate CKPT --per-image errors.csv  # each test image's reconstruction
                                                          # error (anomaly score) + errors.png histogram
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path


from .data import DataError, ImageDataModule
from .errors import EXIT_INPUT, EXIT_STORAGE, fail


def run_config_of(ckpt: dict) -> dict:
    """The training run's config as the checkpoint carries it ({} for one without)."""
    return (ckpt.get("hyper_parameters") or {}).get("run_config") or ckpt.get("run_config") or {}


def figure_settings(ckpt: dict) -> dict:
    """The run's own figure settings (projection, t-SNE points, image and point counts, seed) as
    keyword arguments of build_figure_callbacks; defaults for what the run did not set."""
    run = run_config_of(ckpt)
    figures = (run.get("callbacks") or {}).get("figures") or {}
    settings = {k: figures[k] for k in ("n_images", "max_points", "projection", "tsne_points") if k in figures}
    return {**settings, **({"seed": run["seed"]} if "seed" in run else {})}


def datamodule_for(ckpt: dict, data_root: str | None) -> ImageDataModule:
    """The run's own data settings (splits, seed), with the data root overridable."""
    data = dict(run_config_of(ckpt).get("data") or {})
    if data_root:
        data["root"] = data_root
    elif os.environ.get("AAE_DATA_DIR"):
        data["root"] = os.environ["AAE_DATA_DIR"]
    data.setdefault("root", "data")
    return ImageDataModule(**data)


def per_image_errors(module, x, chunk: int = 1000):
    """The reconstruction loss of each image on its own (the run's loss), [N]."""
    import torch

    from .losses import per_image_reconstruction_error

    kind = module.model_cfg["recon_loss"]
    with torch.no_grad():
        return torch.cat([per_image_reconstruction_error(module(x[i: i + chunk])["logits"], x[i: i + chunk], kind)
                          for i in range(0, len(x), chunk)]).cpu()


def write_error_report(csv_path: str | Path, errors, labels, class_names, title: str) -> Path:
    """errors.csv (index, label, error; test-set order) and, beside it, a PNG histogram of the errors
    with the 99th percentile marked and the classes most often above it. Both written atomically.
    Returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from .storage import write_figure, write_text_atomic

    errors, labels = np.asarray(errors, dtype=np.float64), np.asarray(labels)
    rows = ["index,label,error"] + [f"{i},{int(lab)},{e:.6g}" for i, (lab, e) in enumerate(zip(labels, errors))]
    csv_path = Path(csv_path)
    write_text_atomic(csv_path, "\n".join(rows) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    bins = np.linspace(0, np.percentile(errors, 99.9), 60)
    ax.hist(errors, bins=bins, color="0.6", label="all")
    cut = np.percentile(errors, 99)
    ax.axvline(cut, color="C3", ls="--", label=f"99th percentile {cut:.4g}")
    worst = labels[errors >= cut]
    common = ", ".join(f"{class_names[c]} ({n})" for c, n in
                       sorted(zip(*np.unique(worst, return_counts=True)), key=lambda t: -t[1])[:3])
    ax.set(xlabel="per-image reconstruction error", ylabel="images",
           title=f"{title}\nabove the 99th percentile, most often: {common}")
    ax.legend()
    fig.tight_layout()
    png = csv_path.with_suffix(".png")
    write_figure(png, fig)
    return png


def evaluate(ckpt_path: str, data_root: str | None = None, parzen: bool = False, n_samples: int = 10000,
             figures: str | None = None, per_image: str | None = None) -> dict:
    import lightning as L

    from .storage import SafeCheckpointIO, load_checkpoint
    from .variants import load_module

    if not Path(ckpt_path).is_file():
        raise DataError(f"checkpoint not found: {ckpt_path}")
    ckpt = load_checkpoint(ckpt_path)  # weights only: a file holding anything else is refused, not run
    module = load_module(ckpt_path)
    dm = datamodule_for(ckpt, data_root)
    callbacks = []
    if figures:
        from callbacks import FIGURES, build_figure_callbacks

        callbacks = build_figure_callbacks(figures, list(FIGURES), **figure_settings(ckpt))
    trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                        plugins=[SafeCheckpointIO()])
    with warnings.catch_warnings():
        # testing needs only the weights, not the training run's checkpoint callbacks
        warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint.*")
        trainer.test(module, datamodule=dm, ckpt_path=ckpt_path, verbose=False)  # figures name the checkpoint
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    if per_image:
        module = module.cpu().eval()
        errors = per_image_errors(module, dm.test.x.cpu())
        write_error_report(per_image, errors, dm.test.y.cpu(), {-1: "unlabeled", **dict(enumerate(dm.class_names))},
                           f"{Path(ckpt_path).name}: {len(errors)} test images")
        metrics["test/per_image_error_p99"] = float(errors.quantile(0.99))
    if parzen:
        from .parzen import evaluate_parzen

        result = evaluate_parzen(module.cpu().eval(), dm.val.x.cpu(), dm.test.x.cpu(), n_samples=n_samples)
        parzen_metrics = {f"test/{k}": v for k, v in result.items() if k != "sigma_scores"}
        metrics.update(parzen_metrics)
        add_to_run_result(ckpt_path, parzen_metrics)
    return metrics


def add_to_run_result(ckpt_path: str, metrics: dict) -> None:
    """Where the checkpoint lies in a run folder (<run>/checkpoints/x.ckpt) with a result.json, add the
    metrics to it, so `results record <run> --experiment parzen` finds them. Written atomically."""
    from .storage import write_text_atomic

    result_path = Path(ckpt_path).resolve().parent.parent / "result.json"
    if result_path.is_file():
        result = json.loads(result_path.read_text())
        result["metrics"].update(metrics)
        result.setdefault("evaluated_checkpoints", {}).update({k: str(ckpt_path) for k in metrics})
        write_text_atomic(result_path, json.dumps(result, indent=2, sort_keys=True))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lightning_aae.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("ckpt")
    p.add_argument("--data-root", help="MNIST root (default: $AAE_DATA_DIR, else the run's data.root)")
    p.add_argument("--parzen", action="store_true", help="also the Parzen-window log-likelihood (10k samples)")
    p.add_argument("--samples", type=int, default=10000, help="generated samples for the Parzen window")
    p.add_argument("--figures", help="also draw the test-set figures as PNG files into this folder")
    p.add_argument("--per-image", metavar="CSV", help="write each test image's reconstruction error to this CSV "
                   "and its histogram beside it (.png)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    from .storage import StorageError

    try:
        metrics = evaluate(args.ckpt, args.data_root, args.parzen, args.samples, args.figures, args.per_image)
    except (DataError, ValueError) as exc:
        return fail(exc, EXIT_INPUT)
    except StorageError as exc:
        return fail(exc, EXIT_STORAGE)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for k in sorted(metrics):
            print(f"{k:<28s}{metrics[k]:.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
