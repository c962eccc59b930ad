"""The 30-cluster restart rule as one command: train several trunks, keep the best on validation, go on
with it and report its late-drop fork (docs/experiments/clustering.md; ours, not the paper's; exploratory:
it was written after the trunks' test errors were seen).

Cost per seed on one CPU thread, from the recorded runs: two (or three) 80-epoch trunks of 70-110 min
each, the kept one on to epoch 148 (about 70 min) and its fork to 170 (about 20 min): 4.2-8.6 h in all.

    python -m experiments.restart_rule --seed 3 num_threads=1                       # the pair rule, trunks 3 and 8
    python -m experiments.restart_rule --seed 2 --third 12 --threshold 25 --jobs 2   # the threshold rule
    python -m experiments.restart_rule --seed 3 --dry-run                            # where it stands, what runs next

For reported seed S (trunk seeds `--trunks`, default S and S + 5), with `--config` (default
configs/clustering30_long.yaml, whose category noise drops at `model.category_noise_from`, 148):
  1. each trunk trains to `--trunk-epochs` (default: the end of the first window, 80) in
     <output_dir>/<variant>/<name>-trunk-s<T>;
  2. the trunks' validation means over the first window (`--windows`, default 60-79) are compared: the
     lowest is kept; means within `--band` of it (0.5 points) all go on. With `--third T3`, when the lowest
     mean is `--threshold` or more, trunk T3 trains too and the choice is made among all of them;
  3. the kept trunk (or the close ones) goes on in its folder to the fork epoch (the noise drop); close ones
     are then decided over the second window (138-147);
  4. a copy of the kept trunk's last checkpoint forks into <name>-late-s<T>, trained to the config's
     `trainer.max_epochs` (170) with the noise dropped; the fork picks its best epoch among its own. Its
     test result is the seed's result.
Each stage that finished is not run again, and a stopped run goes on from its last.ckpt: after a stop, the
same command continues. Signals that stop a training run (SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2) are
passed on to the running trainings, which checkpoint and stop; then this command stops with their code.
With `--registry FILE` the fork's run and the choice are recorded there (`results record` and
`results select`, recipe `--recipe`). The test set plays no part in any choice.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from callbacks.preemption import STOP_SIGNALS, signal_numbers

from lightning_aae.config import ConfigError, load_config
from lightning_aae.data import DataError
from lightning_aae.errors import EXIT_INPUT, EXIT_STORAGE, fail
from lightning_aae.storage import StorageError, runs_named

from .curves import parse_windows, read_curve, window_span
from .selection import window_mean, within_band

ROOT = Path(__file__).resolve().parents[1]
OWNED = ("seed", "logger.name", "ckpt_path")  # keys this command sets for each run (trainer.max_epochs: the fork's end)
Runner = Callable[[List[List[str]], int], int]  # (argv lists for train.py, jobs) -> the first non-zero exit code


class RuleError(ValueError):
    """Input the rule cannot run with (one line)."""


class Rule:
    """The folders, the state of each run and the commands for one reported seed."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        bad = [o for o in args.overrides if o.split("=", 1)[0] in OWNED]
        if bad:
            raise RuleError(f"{', '.join(bad)}: this command sets {', '.join(OWNED)} for each run itself")
        self.cfg = load_config(args.config, list(args.overrides))
        self.base = Path(self.cfg.output_dir) / self.cfg.model.variant
        self.windows = _windows(args.windows)
        self.trunks = args.trunks if args.trunks else [args.seed, args.seed + 5]
        if len(set(self.trunks)) != len(self.trunks) or args.third in self.trunks:
            raise RuleError(f"--trunks {self.trunks} and --third {args.third}: each trunk needs its own seed")
        if args.third is not None and args.threshold is None:
            raise RuleError("--third needs --threshold: the first-window mean at or above which it is trained")
        self.trunk_epochs = args.trunk_epochs or self.windows[0][1] + 1
        fork = args.fork_epoch if args.fork_epoch is not None else self.cfg.model.get("category_noise_from")
        if fork is None:
            raise RuleError(f"{args.config} sets no model.category_noise_from: give --fork-epoch")
        self.fork_epoch, self.max_epochs = int(fork), int(self.cfg.trainer.max_epochs)
        if self.trunk_epochs <= self.windows[0][1]:
            raise RuleError(f"--trunk-epochs {self.trunk_epochs} ends before the first window "
                            f"({window_span(self.windows[0])}) does")
        if len(self.windows) > 1 and not self.trunk_epochs <= self.windows[1][0] <= self.windows[1][1] < self.fork_epoch:
            raise RuleError(f"the second window {window_span(self.windows[1])} must lie between --trunk-epochs "
                            f"{self.trunk_epochs} and the fork epoch {self.fork_epoch}")
        if not self.trunk_epochs <= self.fork_epoch < self.max_epochs:
            raise RuleError(f"the fork epoch {self.fork_epoch} must be at least --trunk-epochs {self.trunk_epochs} "
                            f"and under trainer.max_epochs {self.max_epochs}")
        self.scale = 100.0 if args.percent else 1.0

    # -- folders and their state
    def trunk_name(self, seed: int) -> str:
        return f"{self.args.name}-trunk-s{seed}"

    def fork_name(self, seed: int) -> str:
        return f"{self.args.name}-late-s{seed}"

    def folder(self, name: str) -> Optional[Path]:
        """The newest run folder of this name (name or name-K, as train.py numbers a taken name) that holds
        a checkpoint or a result; None before the run has finished an epoch."""
        found = [p for p in runs_named(self.base, name)
                 if (p / "checkpoints" / "last.ckpt").is_file() or (p / "result.json").is_file()]
        return max(found, key=lambda p: p.stat().st_mtime) if found else None

    def epochs_done(self, name: str) -> int:
        """How many epochs the run finished as a whole run (its result.json); 0 when it has none."""
        folder = self.folder(name)
        if folder is None or not (folder / "result.json").is_file():
            return 0
        return int(json.loads((folder / "result.json").read_text())["epochs"])

    def command(self, seed: int, name: str, epochs: int, ckpt: Optional[Path] = None) -> List[str]:
        """train.py's arguments for one run: a run of this name that stopped goes on from its last.ckpt."""
        folder = self.folder(name)
        if ckpt is None and folder is not None and (folder / "checkpoints" / "last.ckpt").is_file():
            ckpt = folder / "checkpoints" / "last.ckpt"
        kept = [o for o in self.args.overrides if not o.startswith("trainer.max_epochs=")]
        argv = ["--config", str(self.args.config), *kept, f"seed={seed}",
                f"trainer.max_epochs={epochs}", f"logger.name={name}"]
        if self.args.trunk_group and epochs <= self.fork_epoch:
            argv.append(f"logger.group={self.args.trunk_group}")
        return argv + ([f"ckpt_path={ckpt}"] if ckpt is not None else [])

    def means(self, seeds: Sequence[int], window: int) -> Dict[int, float]:
        out = {}
        for seed in seeds:
            curve = read_curve([self.folder(self.trunk_name(seed))], self.args.metric)
            out[seed] = window_mean(self.trunk_name(seed), curve, self.windows[window], self.scale)
        return out

    # -- the stages
    def train(self, runs: List[tuple], say: Callable[[str], None]) -> List[List[str]]:
        """The commands for the runs (seed, name, epochs) not yet finished to their epochs."""
        todo = [self.command(seed, name, epochs) for seed, name, epochs in runs
                if self.epochs_done(name) < epochs]
        for seed, name, epochs in runs:
            done = self.epochs_done(name)
            say(f"{name}: {'done' if done >= epochs else 'to train'} ({done} of {epochs} epochs)")
        return todo

    def step(self, say: Callable[[str], None]) -> tuple:
        """What runs next: (commands, None), or ([], the kept trunk's seed) when only the fork is left."""
        first = [(t, self.trunk_name(t), self.trunk_epochs) for t in self.trunks]
        todo = self.train(first, say)
        if todo:
            return todo, None
        means = self.means(self.trunks, 0)
        span = window_span(self.windows[0])
        if self.args.third is not None and min(means.values()) >= self.args.threshold:
            say(f"lowest mean over epochs {span} {min(means.values()):.2f} >= --threshold {self.args.threshold}: "
                f"trunk {self.args.third} trains too")
            todo = self.train([(self.args.third, self.trunk_name(self.args.third), self.trunk_epochs)], say)
            if todo:
                return todo, None
            means = self.means([*self.trunks, self.args.third], 0)
        say("means over epochs " + span + ": " + ", ".join(f"trunk {t} {m:.2f}" for t, m in means.items()))
        alive = within_band(means, self.args.band) if len(self.windows) > 1 else [min(means, key=means.get)]
        say(f"going on to epoch {self.fork_epoch}: trunk(s) {', '.join(map(str, alive))}")
        todo = self.train([(t, self.trunk_name(t), self.fork_epoch) for t in alive], say)
        if todo:
            return todo, None
        if len(alive) > 1:
            later = self.means(alive, 1)
            say(f"means over epochs {window_span(self.windows[1])}: " +
                ", ".join(f"trunk {t} {m:.2f}" for t, m in later.items()))
            alive = [min(later, key=later.get)]
        kept = alive[0]
        say(f"kept trunk {kept}")
        return [], kept

    def fork_command(self, kept: int) -> Optional[List[str]]:
        """The fork's command (from a copy of the kept trunk's last checkpoint), None when it has finished."""
        name = self.fork_name(kept)
        if self.epochs_done(name) >= self.max_epochs:
            return None
        if self.folder(name) is not None:  # a fork that stopped goes on in its own folder
            return self.command(kept, name, self.max_epochs)
        trunk = self.folder(self.trunk_name(kept))
        copy = trunk / f"at{self.fork_epoch}.ckpt"  # outside checkpoints/: train.py starts a new run from it
        if not copy.is_file():
            tmp = copy.with_suffix(".tmp")
            try:
                shutil.copyfile(trunk / "checkpoints" / "last.ckpt", tmp)
                tmp.replace(copy)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise StorageError(f"cannot copy the trunk's checkpoint to {copy}: {exc.strerror or exc}") from None
        return self.command(kept, name, self.max_epochs, ckpt=copy)


def _windows(text: str) -> List[tuple]:
    windows = parse_windows(text)
    if not 1 <= len(windows) <= 2 or any(last is None for _, last in windows):
        raise RuleError(f"--windows: one or two closed windows FIRST-LAST[,FIRST-LAST], got {text!r}")
    if len(windows) == 2 and windows[1][0] <= windows[0][1]:
        raise RuleError(f"--windows: the second window must start after the first ends, got {text!r}")
    return windows


def subprocess_runner(commands: List[List[str]], jobs: int, program: Path = ROOT / "train.py") -> int:
    """Run train.py for each argv, `jobs` at a time, each in its own session so that a terminal's Ctrl-C
    reaches it once (passed on from here), never twice (a second signal ends a run without its checkpoint)."""
    waiting, running, code = list(commands), [], 0
    stopping = []

    def pass_on(signum, frame):
        stopping.append(signum)
        for proc in running:
            if proc.poll() is None:
                proc.send_signal(signum)

    old = {sig: signal.signal(sig, pass_on) for sig in signal_numbers(STOP_SIGNALS).values()}
    try:
        while waiting or running:
            while waiting and len(running) < jobs and not stopping and not code:
                argv = [sys.executable, str(program), *waiting.pop(0)]
                print("running: " + " ".join(argv[1:]), flush=True)
                running.append(subprocess.Popen(argv, start_new_session=True))
            if not running:
                break
            try:
                running[0].wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
            for proc in [p for p in running if p.poll() is not None]:
                running.remove(proc)
                code = code or proc.returncode
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if stopping and not code:
        code = 128 + stopping[0]
    return code


def run(args: argparse.Namespace, runner: Runner = subprocess_runner, say: Callable[[str], None] = print) -> int:
    rule = Rule(args)
    previous = None
    while True:
        commands, kept = rule.step(say)
        if kept is not None:
            fork = rule.fork_command(kept)
            commands = [fork] if fork else []
            say(f"{rule.fork_name(kept)}: {'to train' if fork else 'done'}")
        if not commands:
            break
        if args.dry_run:
            for argv in commands:
                say("next: python train.py " + " ".join(argv))
            return 0
        if commands == previous:  # they ended well but short of their epochs (trainer.max_time, a limit)
            raise RuleError(f"the runs ended without reaching their epochs: {' '.join(commands[0])}; "
                            "look at their logs (trainer.max_time?)")
        previous = commands
        code = runner(commands, args.jobs)
        if code:
            say(f"stopped (exit code {code}); the same command goes on from where the runs stopped")
            return code
    fork = rule.folder(rule.fork_name(kept))
    result = json.loads((fork / "result.json").read_text())
    metric = "test/" + args.metric.split("/", 1)[-1]
    value = (result.get("metrics") or {}).get(metric)
    shown = f"{value * rule.scale:.2f}" if isinstance(value, (int, float)) else "not in its result.json"
    say(f"seed {args.seed}: trunk {kept}'s fork, {fork}: {metric} = {shown}")
    if args.registry and not args.dry_run:
        record(rule, kept, args)
    return 0


def record(rule: Rule, kept: int, args: argparse.Namespace) -> None:
    """The fork's lines, then the choice as seed args.seed of args.recipe (`results record` + `results select`)."""
    from . import results
    from .registry import holds_selection, read

    seeds = [t for t in [*rule.trunks, args.third] if t is not None and rule.folder(rule.trunk_name(t)) is not None
             and rule.epochs_done(rule.trunk_name(t)) >= rule.trunk_epochs]
    if holds_selection(read(Path(args.registry)), args.recipe, args.seed):
        print(f"{args.registry} already holds seed {args.seed} of {args.recipe}: nothing recorded")
        return
    fork = rule.folder(rule.fork_name(kept))
    if results.main(["record", str(fork), "--registry", args.registry]):
        raise RuleError(f"recording {fork} in {args.registry} failed (above); the runs are kept")
    argv = ["select", "--recipe", args.recipe, "--seed", str(args.seed), "--metric", args.metric,
            "--windows", args.windows, "--band", str(args.band), "--registry", args.registry,
            "--report", f"t{kept}={fork.name}"]
    argv += [a for t in seeds for a in ("--candidate", f"t{t}={rule.folder(rule.trunk_name(t))}")]
    code = results.main(argv + (["--percent"] if args.percent else []))
    if code:
        raise RuleError(f"recording the choice in {args.registry} failed (above); the runs are kept")


def _seeds(text: str) -> List[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 3,8, got {text!r}") from None


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.restart_rule", description=__doc__.splitlines()[0],
                                epilog="Overrides (key=value) go to every run, e.g. num_threads=1 output_dir=runs.")
    p.add_argument("--seed", type=int, required=True, help="the reported seed")
    p.add_argument("--config", default="configs/clustering30_long.yaml")
    p.add_argument("--trunks", type=_seeds, help="the trunks' seeds (default: SEED,SEED+5)")
    p.add_argument("--third", type=int, help="a further trunk's seed, trained when the lowest first-window mean "
                   "is --threshold or more (the threshold rule: SEED+10, 25)")
    p.add_argument("--threshold", type=float)
    p.add_argument("--windows", default="60-79,138-147", help="the first window decides at --trunk-epochs; "
                   "close means are decided over the second, before the fork epoch")
    p.add_argument("--band", type=float, default=0.5, help="means this close to the lowest go on (default 0.5)")
    p.add_argument("--metric", default="val/cluster_error")
    p.add_argument("--percent", action=argparse.BooleanOptionalAction, default=True,
                   help="compare means x 100 (band and threshold in percent points; default on)")
    p.add_argument("--trunk-epochs", type=int, help="default: the first window's last epoch + 1")
    p.add_argument("--fork-epoch", type=int, help="default: the config's model.category_noise_from")
    p.add_argument("--name", default="rule", help="run folders <name>-trunk-s<T> and <name>-late-s<T>")
    p.add_argument("--trunk-group", help="the trunks' W&B group (default: the config's)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained side by side (default 1)")
    p.add_argument("--dry-run", action="store_true", help="say where the rule stands and what would run next")
    p.add_argument("--registry", help="record the fork's run and the choice in this registry (docs/results.jsonl)")
    p.add_argument("--recipe", default="clustering30-restart-rule", help="the recipe the recorded choice makes")
    p.add_argument("overrides", nargs="*", help="key=value entries for every run")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (ValueError, ConfigError, DataError) as exc:  # RuleError, and a registry that cannot be read
        return fail(exc, EXIT_INPUT)
    except StorageError as exc:
        return fail(exc, EXIT_STORAGE)


if __name__ == "__main__":
    sys.exit(main())
