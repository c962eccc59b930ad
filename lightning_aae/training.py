"""train(cfg) -> final metrics: builds the DataModule, module, logger, callbacks and Trainer."""
from __future__ import annotations

import netrc
import os
import sys
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import DictConfig, OmegaConf

from callbacks.guards import WallClock
from callbacks.preemption import Preempted

from .schema import ConfigError
from .data import ImageDataModule
from .schedule import DivergenceError
from .storage import SafeCheckpointIO, check_writable, load_checkpoint, runs_named, write_text_atomic
from .variants import build_module, variant_of

RUN_DIR_ENV = "AAE_RUN_DIR"  # shared with the DDP worker processes Lightning starts


def wandb_mode(requested: str) -> str:
    """offline / online / disabled; `auto` is online only when the user is logged in to W&B."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE") in ("online", "offline", "disabled"):
        return os.environ["WANDB_MODE"]
    return "online" if logged_in_to_wandb() else "offline"


def logged_in_to_wandb() -> bool:
    """WANDB_API_KEY is set, or `wandb login` stored a key."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return bool(netrc.netrc().authenticators("api.wandb.ai"))
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _run_name(cfg: DictConfig) -> str:
    if cfg.logger.name:
        return cfg.logger.name
    m = cfg.model
    return f"{m.variant}-z{m.latent_dim}-{m.prior}-{time.strftime('%Y%m%d-%H%M%S')}"


def _new_run_dir(cfg: DictConfig) -> Path:
    base = Path(cfg.output_dir) / cfg.model.variant
    name = _run_name(cfg)
    run_dir, k = base / name, 1
    while run_dir.exists():  # never write into an earlier run
        run_dir, k = base / f"{name}-{k}", k + 1
    return run_dir


def _find_last(cfg: DictConfig) -> Optional[Path]:
    base = Path(cfg.output_dir) / cfg.model.variant
    runs = runs_named(base, cfg.logger.name) if cfg.logger.name else [p for p in base.glob("*") if p.is_dir()]
    found = sorted((p / "checkpoints" / "last.ckpt" for p in runs if (p / "checkpoints" / "last.ckpt").is_file()),
                   key=lambda p: p.stat().st_mtime)
    if not found and cfg.ckpt_path == "last":
        whose = f" for logger.name={cfg.logger.name}" if cfg.logger.name else ""
        raise ConfigError(f"ckpt_path=last but no last.ckpt under {base}{whose}")
    return found[-1] if found else None


def resolve_checkpoint(cfg: DictConfig) -> Optional[Path]:
    """The checkpoint to resume from, checked to exist, to be safe to load and to hold this config's variant."""
    return _resolve(cfg)[0]


def _resolve(cfg: DictConfig) -> Tuple[Optional[Path], Dict[str, Any]]:
    """resolve_checkpoint's path and the loaded checkpoint ({} when there is none), read once."""
    if not cfg.ckpt_path:
        return None, {}
    path = _find_last(cfg) if cfg.ckpt_path in ("last", "auto") else Path(cfg.ckpt_path)
    if path is None:
        return None, {}  # auto, and nothing to resume
    if not path.is_file():
        raise ConfigError(f"ckpt_path not found: {path}")
    checkpoint = load_checkpoint(path)  # CheckpointError (one line) when unreadable or unsafe
    variant = variant_of(checkpoint)
    if variant != cfg.model.variant:
        raise ConfigError(f"ckpt_path {path} is a '{variant}' checkpoint, but model.variant is '{cfg.model.variant}'")
    if cfg.ckpt_path != "auto":  # auto: a requeued job whose time is spent just finishes, as before
        _check_time_left(cfg.trainer.max_time, checkpoint, path)
    return path, checkpoint


def _max_time_seconds(max_time: Any) -> Optional[float]:
    """trainer.max_time in seconds ('DD:HH:MM:SS' or timedelta's keywords); None when unset or not
    readable (Lightning then names a bad value itself)."""
    try:
        if isinstance(max_time, str):
            days, hours, minutes, seconds = (int(part) for part in max_time.strip().split(":"))
            return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds).total_seconds()
        if isinstance(max_time, Mapping):
            return timedelta(**dict(max_time)).total_seconds()
    except (TypeError, ValueError):
        pass
    return None


def _dd_hh_mm_ss(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 86400:02d}:{s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _check_time_left(max_time: Any, checkpoint: Dict[str, Any], path: Path) -> None:
    """Lightning's Timer restores the training time stored in the checkpoint and counts max_time from
    the run's start, not the resume: a max_time at or under that time would stop the resumed run
    before its first step and test the old best checkpoint. Refuse that with the numbers to fix it."""
    limit = _max_time_seconds(max_time)
    timer = (checkpoint.get("callbacks") or {}).get("Timer") or {}
    trained = (timer.get("time_elapsed") or {}).get("train")
    if limit is None or not isinstance(trained, (int, float)) or trained < limit:
        return
    raise ConfigError(f"trainer.max_time={max_time} is already used up: {path} has trained for "
                      f"{_dd_hh_mm_ss(trained)} and max_time counts that time; set it to that plus the time "
                      f"to train on (30 more minutes: trainer.max_time={_dd_hh_mm_ss(trained + 1800)})")


def _run_dir_for(cfg: DictConfig, ckpt: Optional[Path]) -> Path:
    """Rank 0 picks the folder; the other DDP processes are told, never guess (they would race)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():  # a later run in an already-launched DDP job
        chosen = [str(_pick_run_dir(cfg, ckpt)) if dist.get_rank() == 0 else None]
        dist.broadcast_object_list(chosen, src=0)
        return Path(chosen[0])
    if os.environ.get(RUN_DIR_ENV):  # a DDP worker started by Lightning from rank 0's process
        return Path(os.environ[RUN_DIR_ENV])
    return _pick_run_dir(cfg, ckpt)


def _pick_run_dir(cfg: DictConfig, ckpt: Optional[Path]) -> Path:
    if ckpt is not None and ckpt.parent.name == "checkpoints" and (ckpt.parent.parent / "config.yaml").is_file():
        return ckpt.parent.parent  # resuming: keep writing into the same run
    run_dir = _new_run_dir(cfg)
    _note_fork(ckpt, run_dir)
    return run_dir


def _note(message: str) -> None:
    """One line on stderr from rank 0: something the user should know that does not stop the run."""
    if L.fabric.utilities.rank_zero.rank_zero_only.rank == 0:
        print(message, file=sys.stderr, flush=True)


def _note_fork(ckpt: Optional[Path], run_dir: Path) -> None:
    """A checkpoint outside a run folder starts a fork (a new folder); say what that means for the best."""
    if ckpt is not None:
        _note(f"ckpt_path {ckpt} is not in a run folder's checkpoints/: this is a fork, a new run in {run_dir} "
              "that picks its best checkpoint among its own epochs (its curve keeps the earlier ones); to go on "
              "with a run and its best, resume from <run folder>/checkpoints/last.ckpt")


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:160]


def _start_wandb(cfg: DictConfig, run_dir: Path, mode: str, run_id: Optional[str]):
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    save_dir = Path(cfg.logger.save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    logger = WandbLogger(
        project=cfg.logger.project, entity=cfg.logger.entity, name=run_dir.name,
        group=cfg.logger.group or cfg.model.variant, tags=list(cfg.logger.tags) or None,
        save_dir=str(save_dir), offline=(mode == "offline"), id=run_id, resume="allow" if run_id else None,
        config=OmegaConf.to_container(cfg, resolve=True), job_type="train",
        # the mode is named here too: Lightning switches to offline through WANDB_MODE at first use,
        # which a Settings object made before then would override
        settings=wandb.Settings(init_timeout=cfg.logger.init_timeout, mode=mode),
    )
    logger.experiment  # starts the run now, so a failure is caught here
    return logger


def build_logger(cfg: DictConfig, run_dir: Path):
    """A WandbLogger, offline unless logged in; online that cannot start (no login, no server within
    logger.init_timeout seconds) falls back to offline with one line. None when disabled, or when
    W&B cannot start at all (training goes on; figures are still written as PNG files)."""
    mode = wandb_mode(cfg.logger.mode)
    if not cfg.logger.enabled or mode == "disabled":
        return None
    id_file = run_dir / "wandb_id"
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    if mode == "online" and not logged_in_to_wandb():
        _note("W&B: logger.mode=online but no W&B login (WANDB_API_KEY or `wandb login`); logging offline, "
              f"upload later with `wandb sync {Path(cfg.logger.save_dir) / 'wandb'}/offline-run-*`")
        mode = "offline"
    try:
        logger = _start_wandb(cfg, run_dir, mode, run_id)
    except Exception as exc:  # W&B must never stop training
        if mode != "online":
            _note(f"W&B could not start ({type(exc).__name__}: {_first_line(exc)}); training goes on without it")
            return None
        _note(f"W&B: cannot reach the server ({type(exc).__name__}: {_first_line(exc)}); logging offline, "
              f"upload later with `wandb sync {Path(cfg.logger.save_dir) / 'wandb'}/offline-run-*`")
        return build_logger(OmegaConf.merge(cfg, {"logger": {"mode": "offline"}}), run_dir)
    if L.fabric.utilities.rank_zero.rank_zero_only.rank == 0 and getattr(logger.experiment, "id", None):
        write_text_atomic(id_file, logger.experiment.id)
    return logger


LAST_NAME = "last"  # checkpoints/last.ckpt: the latest epoch, what ckpt_path=last resumes from


def build_callbacks(cfg: DictConfig, run_dir: Path) -> list:
    from callbacks import DivergenceCheck, EpochSummary, Preemption, RNGState, build_figure_callbacks

    c = cfg.callbacks
    result = [
        ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="epoch{epoch:03d}", auto_insert_metric_name=False,
                        monitor=c.checkpoint.monitor, mode=c.checkpoint.mode, save_top_k=c.checkpoint.save_top_k),
        Preemption(run_dir / "checkpoints" / f"{LAST_NAME}.ckpt", list(c.preemption.signals),
                   c.preemption.requeue_signal),
        DivergenceCheck(),
        RNGState(),
    ]
    if c.checkpoint.save_last:
        # Lightning's own save_last only writes when the monitored checkpoint is written too
        # (2.6), so last.ckpt could be many epochs old; this one rewrites it every epoch.
        result.append(ModelCheckpoint(dirpath=run_dir / "checkpoints", filename=LAST_NAME, monitor=None, save_top_k=1,
                                      enable_version_counter=False))
    if cfg.trainer.enable_progress_bar is not False:
        result.append(TQDMProgressBar(refresh_rate=c.progress_bar_refresh_rate))
    else:
        result.append(EpochSummary())
    if c.figures.enabled:
        result += build_figure_callbacks(run_dir / "figures", list(c.figures.kinds), c.figures.every_n_epochs,
                                         c.figures.n_images, c.figures.max_points, seed=cfg.seed,
                                         projection=c.figures.projection, tsne_points=c.figures.tsne_points)
    return result


def _device_count(devices: Any, accelerator: str) -> int:
    """How many devices a Trainer with these arguments would use on this machine, as far as it matters here."""
    if isinstance(devices, list):
        return len(devices)
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int) and devices >= 0:
        return devices
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():  # "auto" or -1: every GPU
        return torch.cuda.device_count()
    return 1


def trainer_kwargs(cfg: DictConfig) -> Dict[str, Any]:
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    several = (kwargs.get("num_nodes") or 1) > 1 or _device_count(kwargs.get("devices"), kwargs.get("accelerator")) > 1
    if several and kwargs.get("strategy") in ("auto", "ddp", "ddp_find_unused_parameters_true"):
        # every AAE phase leaves some parameters without gradients, which plain ddp refuses; a dead or hung
        # process stops the others after ddp_timeout_s instead of torch's 30 minutes
        kwargs["strategy"] = DDPStrategy(find_unused_parameters=True, timeout=timedelta(seconds=cfg.ddp_timeout_s))
    on_gpus = kwargs.get("accelerator") in ("gpu", "cuda") or (kwargs.get("accelerator") == "auto" and
                                                              torch.cuda.is_available())
    if several and cfg.model.batch_norm and on_gpus:
        kwargs["sync_batchnorm"] = True  # one set of batch statistics across GPUs (torch's needs GPUs)
    return kwargs


def _scalars(metrics: Dict[str, Any]) -> Dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            out[k] = float(v)
        elif isinstance(v, (int, float)):
            out[k] = float(v)
    return out


def _checked_datamodule(cfg: DictConfig, ckpt: Optional[Path] = None, checkpoint: Optional[dict] = None) -> ImageDataModule:
    """The DataModule, after failing on missing data or impossible splits before anything is written;
    the model's image shape and class count are set from the data (fit_model_to_data)."""
    datamodule = ImageDataModule.from_config(cfg.data, seed=cfg.seed)
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:  # one download per node, never two writing one folder
        datamodule.prepare_data()
    datamodule.check_splits()
    held = (checkpoint or {}).get("hyper_parameters", {}).get("model") or None  # None: nothing to resume
    fit_model_to_data(cfg, datamodule.image_shape, datamodule.n_classes, datamodule.source.title, ckpt,
                      held)
    return datamodule


# variants (or options) that train on labels; clustering and dim_reduction only score with them
_NEEDS_LABELS = {"supervised": "trains on every label", "semi_supervised": "trains on the labeled images"}
_LABELED_MONITORS = ("val/error", "val/accuracy", "val/cluster_error", "val/hungarian_accuracy")


def fit_model_to_data(cfg: DictConfig, shape, n_classes: int, title: str, ckpt: Optional[Path] = None,
                      held: Optional[Dict[str, Any]] = None) -> None:
    """model.image_shape and model.n_classes from the data, after checking that a value given by hand
    (a saved config.yaml) or held by the checkpoint to resume (`held`: its model hyperparameters) agrees,
    and that the variant can train on it."""
    shape = [int(v) for v in shape]
    m = cfg.model
    for key, value in (("image_shape", shape), ("n_classes", n_classes)):
        given = list(m[key]) if key == "image_shape" and m[key] is not None else m[key]
        if given is not None and given != value:
            raise ConfigError(f"model.{key}={given}, but {title} gives {value}; leave model.{key} unset "
                              "(it is read from the data)")
        if held is not None:
            stored = held.get(key)
            stored = _MNIST_DEFAULTS[key] if stored is None else list(stored) if key == "image_shape" else stored
            if stored != value:
                raise ConfigError(f"ckpt_path {ckpt} was trained on {key} {stored}, but {title} gives {value}: "
                                  "resume on the data it was trained on")
    if not n_classes and (m.variant in _NEEDS_LABELS or m.label_regularized):
        why = _NEEDS_LABELS.get(m.variant, "(label_regularized) shows the discriminator each label")
        raise ConfigError(f"model.variant={m.variant} {why}, but {title} has no labels; train aae, autoencoder, vae, "
                          "clustering or dim_reduction on it, or give it labels")
    if m.label_regularized and n_classes != 10:
        raise ConfigError(f"model.label_regularized draws each label from one of the prior's 10 parts, but {title} "
                          f"has {n_classes} classes")
    if m.arch == "conv" and (shape[1] % 4 or shape[2] % 4):
        raise ConfigError(f"model.arch=conv halves the images twice: their height and width must be multiples of 4, "
                          f"but {title} has {shape[1]}x{shape[2]} (data.image_size can resize a folder)")
    if not n_classes and cfg.callbacks.checkpoint.monitor in _LABELED_MONITORS:
        _note(f"{title} has no labels: the checkpoint is chosen on val/recon_loss instead of "
              f"{cfg.callbacks.checkpoint.monitor}")
        cfg.callbacks.checkpoint.monitor, cfg.callbacks.checkpoint.mode = "val/recon_loss", "min"
    m.image_shape, m.n_classes = shape, n_classes


_MNIST_DEFAULTS = {"image_shape": [1, 28, 28], "n_classes": 10}


def train(cfg: DictConfig, verbose: bool = True, extra_callbacks: Optional[list] = None) -> Dict[str, float]:
    """Fit, test on the test images (the data's own or a seeded split), and return the final metrics as floats."""
    from .provenance import provenance

    start = provenance()  # the commit and command of the code that runs, taken now
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    check_writable(cfg.output_dir, "output_dir")  # before any work, not at the first checkpoint
    ckpt, checkpoint = _resolve(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = _checked_datamodule(cfg, ckpt, checkpoint)
    run_dir = _run_dir_for(cfg, ckpt)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    is_zero = int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0
    if is_zero:
        write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))

    module = build_module(cfg)  # the resolved run config travels in its hyperparameters
    logger = build_logger(cfg, run_dir)  # every rank: non-zero ranks get W&B's dummy run
    clock = WallClock(start, cfg.callbacks.checkpoint.monitor)  # resumed, it holds the earlier parts and curve
    callbacks = build_callbacks(cfg, run_dir) + [clock] + list(extra_callbacks or [])
    # metrics also go to <run>/csv/version_<part>/metrics.csv, a file per part (CSVLogger deletes one it finds)
    loggers = [CSVLogger(save_dir=str(run_dir), name="csv")] + ([logger] if logger is not None else [])
    trainer = L.Trainer(**trainer_kwargs(cfg), logger=loggers, callbacks=callbacks, default_root_dir=str(run_dir),
                        plugins=[SafeCheckpointIO()])
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt) if ckpt else None)
        metrics, best = _test(cfg, trainer, module, datamodule)
        if trainer.is_global_zero:
            _write_result(cfg, trainer, metrics, best, start, run_dir, clock.earlier, clock.curve(), logger)
    except DivergenceError:
        if logger is not None and trainer.is_global_zero:
            logger.experiment.finish(exit_code=1)  # the W&B run shows as failed
        raise
    except Preempted as stop:
        if logger is not None and trainer.is_global_zero:
            _finish_preempted(logger, stop.exit_code)
        raise
    except RuntimeError as exc:
        _raise_if_distributed(exc, trainer, run_dir)
        raise
    finally:
        os.environ.pop(RUN_DIR_ENV, None)
    if verbose and trainer.is_global_zero:
        _print_summary(run_dir, trainer, logger, metrics)
    if logger is not None and trainer.is_global_zero:
        logger.experiment.finish()  # one train() call is one W&B run, also when called again in-process
    return metrics


class DistributedFailure(RuntimeError):
    """A collective failed under several processes: a peer died, hung past ddp_timeout_s, or lost its
    connection. Carries what the one-line report needs; the framework's traceback goes to a file."""

    def __init__(self, cause: BaseException, run_dir: Path, rank: int):
        super().__init__(_first_line(cause))
        self.cause, self.run_dir, self.rank = cause, run_dir, rank


_COLLECTIVE = ("gloo", "nccl", "connection reset", "connection closed", "broken pipe", "timed out", "processgroup")


def _raise_if_distributed(exc: RuntimeError, trainer, run_dir: Path) -> None:
    import torch.distributed as dist

    failed = isinstance(exc, dist.DistError) or any(k in str(exc).lower() for k in _COLLECTIVE)
    if trainer.world_size > 1 and failed:
        raise DistributedFailure(exc, run_dir, trainer.global_rank) from exc


def _test(cfg: DictConfig, trainer, module, datamodule) -> Tuple[Dict[str, float], str]:
    """The last epoch's train/ and val/ metrics, then the test metrics of the final weights (test_last/) and
    of the checkpoint chosen on validation (test/), which is tested last; and that checkpoint's path."""
    metrics = _scalars(trainer.callback_metrics)
    checkpoint_cb = trainer.checkpoint_callback
    best = checkpoint_cb.best_model_path if checkpoint_cb is not None else ""
    metrics.update(_test_final_weights(cfg, trainer, module, datamodule))
    trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    metrics.update(_scalars(trainer.callback_metrics))
    if cfg.evaluate.parzen:
        metrics.update(_parzen(cfg, module, datamodule, "test"))
    return metrics, best


def _test_final_weights(cfg: DictConfig, trainer, module, datamodule) -> Dict[str, float]:
    """test_last/...: the test metrics of the weights the run ended with, no checkpoint chosen on the
    validation set (the reported test/... are those of the chosen checkpoint). No figures are drawn."""
    module.test_name = "test_last"
    try:
        trainer.test(module, datamodule=datamodule, verbose=False)  # a module and no ckpt_path: its current weights
    finally:
        module.test_name = "test"
    out = {k: v for k, v in _scalars(trainer.callback_metrics).items() if k.startswith("test_last/")}
    if cfg.evaluate.parzen:
        out.update(_parzen(cfg, module, datamodule, "test_last"))
    return out


def _parzen(cfg: DictConfig, module, datamodule, prefix: str) -> Dict[str, float]:
    """The Parzen-window log-likelihood of the tested (chosen) checkpoint, as `evaluate --parzen` gives it
    (the same sample seed): sigma chosen on validation images, the mean over the test images."""
    from .parzen import evaluate_parzen

    result = evaluate_parzen(module.eval(), datamodule.val.x, datamodule.test.x, n_samples=cfg.evaluate.parzen_samples)
    return {f"{prefix}/{k}": float(v) for k, v in result.items() if k != "sigma_scores"}


def _write_result(cfg: DictConfig, trainer, metrics: Dict[str, float], best: str, start: Dict[str, Any],
                  run_dir: Path, earlier: list, curve: Optional[Dict[str, Any]] = None, logger=None) -> None:
    """result.json: what the run trained, its metrics and its provenance (experiments/ records it in the
    registry); the test metrics also go to the W&B run's summary."""
    import json

    if logger is not None:
        logger.experiment.summary.update({k: v for k, v in metrics.items() if k.startswith(("test/", "test_last/"))})
    from .provenance import run_record

    stem = Path(best).stem if best else ""
    best_epoch = int(stem[5:]) if stem.startswith("epoch") and stem[5:].isdigit() else None
    record = run_record(OmegaConf.to_container(cfg, resolve=True), metrics, trainer.current_epoch, best_epoch,
                        start, run_dir, trainer.strategy.root_device.type, earlier, curve)
    write_text_atomic(run_dir / "result.json", json.dumps(record, indent=1, sort_keys=True))


def _finish_preempted(logger, exit_code: int) -> None:
    """The W&B run is marked preempted (resumable), not failed; resuming continues the same run."""
    try:
        logger.experiment.mark_preempting()
    except Exception:  # older W&B, offline quirks: the exit code still says it stopped early
        pass
    logger.experiment.finish(exit_code=exit_code)


def _print_summary(run_dir: Path, trainer, logger, metrics: Dict[str, float]) -> None:
    cb = trainer.checkpoint_callback
    lines = [f"run folder:   {run_dir}"]
    if cb is not None and cb.best_model_path:
        lines.append(f"best ckpt:    {cb.best_model_path}")
    last = [c.best_model_path for c in trainer.checkpoint_callbacks if c.filename == LAST_NAME and c.best_model_path]
    if last:
        lines.append(f"last ckpt:    {last[0]}")
    if (run_dir / "figures").is_dir():
        lines.append(f"figures:      {run_dir / 'figures'}")
    if logger is not None:
        exp = logger.experiment
        lines.append(f"W&B run:      {getattr(exp, 'dir', '')}")
        if getattr(exp, "offline", False) or getattr(getattr(exp, "settings", None), "mode", "") == "offline":
            lines.append(f"              upload later with: wandb sync {Path(exp.dir).parent}")
    for k in sorted(k for k in metrics if k.startswith("test/")):
        lines.append(f"{k:<28s}{metrics[k]:.5g}")
    print("\n".join(lines))
