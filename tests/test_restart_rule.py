"""The restart rule as one command (experiments.restart_rule): which runs it trains, in what order, from
which checkpoint, how it decides, that it goes on after a stop, and once end to end with train.py."""
import json
from pathlib import Path

import pytest

from experiments import restart_rule
from lightning_aae.cli import main as train_main
from experiments.registry import read


def _args(tmp_path, *extra):
    """The rule's arguments over tiny windows: trunks to epoch 4 (window 2-3), the fork at 8 (window 6-7), 10 epochs."""
    return ["--config", "configs/clustering30_long.yaml", "--windows", "2-3,6-7", "--fork-epoch", "8",
            *extra, f"output_dir={tmp_path / 'runs'}", "trainer.max_epochs=10"]


class FakeTrain:
    """Stands in for train.py: writes the run folder as train() does (config.yaml, checkpoints/last.ckpt,
    result.json with the curve over every part), each trunk seed's validation error given by `level`."""

    def __init__(self, base: Path, level, stop_after=None):
        self.base, self.level, self.calls, self.stop_after = base, level, [], stop_after

    def __call__(self, commands, jobs):
        for argv in commands:
            if self.stop_after is not None and len(self.calls) >= self.stop_after:
                return 143  # as a run stopped by SIGTERM
            self.calls.append(argv)
            opts = dict(a.split("=", 1) for a in argv if "=" in a and not a.startswith("--"))
            seed, epochs, name = int(opts["seed"]), int(opts["trainer.max_epochs"]), opts["logger.name"]
            ckpt = Path(opts["ckpt_path"]) if "ckpt_path" in opts else None
            if ckpt is not None and ckpt.parent.name == "checkpoints":
                folder = ckpt.parent.parent  # resumed in place
            else:
                folder, k = self.base / name, 1
                while folder.exists():
                    folder, k = self.base / f"{name}-{k}", k + 1
            earlier = json.loads(ckpt.read_text())["curve"] if ckpt is not None else []
            curve = earlier + [self.level(seed, e, fork=ckpt is not None and folder.name.startswith("rule-late"))
                               for e in range(len(earlier), epochs)]
            (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
            (folder / "config.yaml").write_text("x: 1\n")
            (folder / "checkpoints" / "last.ckpt").write_text(json.dumps({"curve": curve}))
            (folder / "result.json").write_text(json.dumps({
                "epochs": epochs, "metrics": {"test/cluster_error": curve[-1]},
                "curve": {"metric": "val/cluster_error", "first_epoch": 0, "values": curve}}))
        return 0


def _run(tmp_path, fake, *extra):
    said = []
    code = restart_rule.run(restart_rule.parse_args(_args(tmp_path, *extra)), runner=fake, say=said.append)
    return code, said


def _opts(argv):
    return dict(a.split("=", 1) for a in argv if "=" in a and not a.startswith("--"))


def test_pair_keeps_the_lower_first_window_mean_goes_on_in_place_and_forks_a_copy(tmp_path):
    base = tmp_path / "runs" / "clustering"
    fake = FakeTrain(base, lambda seed, e, fork: 0.10 if fork else {3: 0.30, 8: 0.25}[seed])
    code, said = _run(tmp_path, fake, "--seed", "3")
    assert code == 0
    runs = [(_opts(a)["seed"], _opts(a)["trainer.max_epochs"], _opts(a).get("ckpt_path")) for a in fake.calls]
    assert runs[:2] == [("3", "4", None), ("8", "4", None)]  # both trunks to the end of the first window
    assert runs[2] == ("8", "8", str(base / "rule-trunk-s8" / "checkpoints" / "last.ckpt"))  # kept one, in place
    assert runs[3] == ("8", "10", str(base / "rule-trunk-s8" / "at8.ckpt"))  # the fork, from a copy
    assert len(runs) == 4 and not (base / "rule-trunk-s3" / "at8.ckpt").exists()
    assert json.loads((base / "rule-late-s8" / "result.json").read_text())["epochs"] == 10
    assert "kept trunk 8" in said and said[-1].endswith("test/cluster_error = 10.00")


def test_close_means_both_go_on_and_the_second_window_decides(tmp_path):
    levels = {3: lambda e: 0.250 if e < 4 else 0.20, 8: lambda e: 0.252 if e < 4 else 0.22}
    fake = FakeTrain(tmp_path / "runs" / "clustering", lambda seed, e, fork: 0.1 if fork else levels[seed](e))
    assert _run(tmp_path, fake, "--seed", "3")[0] == 0
    to_fork = [(_opts(a)["seed"], _opts(a)["trainer.max_epochs"]) for a in fake.calls]
    assert to_fork == [("3", "4"), ("8", "4"), ("3", "8"), ("8", "8"), ("3", "10")]  # 0.2 points apart: both on


def test_means_are_compared_as_results_select_compares_them(tmp_path):
    """Means to 4 decimals: 24.99996 and 25.50004 are 25.0 and 25.5, within the 0.5 band, as select finds."""
    from experiments.curves import parse_windows
    from experiments.selection import choose

    levels = {3: 0.2499996, 8: 0.2550004}
    base = tmp_path / "runs" / "clustering"
    fake = FakeTrain(base, lambda seed, e, fork: 0.1 if fork else levels[seed] - (e >= 4) * (seed == 8) * 0.01)
    assert _run(tmp_path, fake, "--seed", "3")[0] == 0
    runs = [(_opts(a)["seed"], _opts(a)["trainer.max_epochs"]) for a in fake.calls]
    assert runs == [("3", "4"), ("8", "4"), ("3", "8"), ("8", "8"), ("8", "10")]  # both on; 8 is lower at 6-7
    chosen, decided, means, _ = choose({f"t{t}": [base / f"rule-trunk-s{t}"] for t in (3, 8)}, "val/cluster_error",
                                       parse_windows("2-3,6-7"), 0.5, 100.0)
    assert (chosen, decided, means["t3"]["2-3"], means["t8"]["2-3"]) == ("t8", "6-7", 25.0, 25.5)
    fake = FakeTrain(tmp_path / "b" / "runs" / "clustering", lambda seed, e, fork: 0.1 if fork else
                     {2: 0.2499996, 7: 0.26, 12: 0.2}[seed])
    assert _run(tmp_path / "b", fake, "--seed", "2", "--third", "12", "--threshold", "25")[0] == 0
    assert [_opts(a)["seed"] for a in fake.calls][:3] == ["2", "7", "12"]  # 25.0 (24.99996) >= 25: the third trains


def test_threshold_trains_the_third_trunk_only_when_the_lowest_mean_is_at_or_over_it(tmp_path):
    levels = {2: 0.268, 7: 0.258, 12: 0.249}
    fake = FakeTrain(tmp_path / "a" / "runs" / "clustering", lambda seed, e, fork: 0.1 if fork else levels[seed])
    assert _run(tmp_path / "a", fake, "--seed", "2", "--third", "12", "--threshold", "25")[0] == 0
    assert [_opts(a)["seed"] for a in fake.calls] == ["2", "7", "12", "12", "12"]  # 25.8 >= 25: trunk 12, kept
    levels[7] = 0.245
    fake = FakeTrain(tmp_path / "b" / "runs" / "clustering", lambda seed, e, fork: 0.1 if fork else levels[seed])
    assert _run(tmp_path / "b", fake, "--seed", "2", "--third", "12", "--threshold", "25")[0] == 0
    assert [_opts(a)["seed"] for a in fake.calls] == ["2", "7", "7", "7"]  # 24.5 < 25: the pair rule alone


def test_a_stop_loses_nothing_and_the_same_command_goes_on(tmp_path):
    base = tmp_path / "runs" / "clustering"
    level = lambda seed, e, fork: 0.1 if fork else {3: 0.30, 8: 0.25}[seed]  # noqa: E731
    stopped = FakeTrain(base, level, stop_after=2)
    code, said = _run(tmp_path, stopped, "--seed", "3")
    assert code == 143 and "the same command goes on" in said[-1]
    again = FakeTrain(base, level)
    assert _run(tmp_path, again, "--seed", "3")[0] == 0
    assert [(_opts(a)["seed"], _opts(a)["trainer.max_epochs"]) for a in again.calls] == [("8", "8"), ("8", "10")]
    last = FakeTrain(base, level)
    code, said = _run(tmp_path, last, "--seed", "3", "--dry-run")
    assert code == 0 and last.calls == [] and "rule-late-s8: done" in said


def test_dry_run_names_the_next_commands_and_trains_nothing(tmp_path):
    fake = FakeTrain(tmp_path / "runs" / "clustering", lambda seed, e, fork: 0.2)
    code, said = _run(tmp_path, fake, "--seed", "4", "--dry-run", "num_threads=1")
    assert code == 0 and fake.calls == []
    nexts = [s for s in said if s.startswith("next: python train.py")]
    assert len(nexts) == 2 and "seed=4 " in nexts[0] and "seed=9 " in nexts[1] and "num_threads=1" in nexts[0]


@pytest.mark.parametrize("extra, message", [
    (["seed=1"], "sets seed"),
    (["--trunks", "3,3"], "its own seed"),
    (["--third", "13"], "--third needs --threshold"),
    (["--windows", "2-3,3-5"], "must start after the first ends"),
    (["--windows", "2-3,6-9"], "must lie between"),
    (["--fork-epoch", "12"], "under trainer.max_epochs"),
])
def test_bad_input_is_one_line_before_any_run(tmp_path, capsys, extra, message):
    assert restart_rule.main(_args(tmp_path, "--seed", "3", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "runs").exists()


def test_end_to_end_with_train_py_and_the_registry(tmp_path, small_overrides):
    """The real train.py (in this process): folders, resumes and the fork behave as the rule assumes."""
    def in_process(commands, jobs):
        for argv in commands:
            code = train_main(argv)
            if code:
                return code
        return 0

    registry = tmp_path / "results.jsonl"
    argv = ["--seed", "0", "--trunks", "0,5", "--windows", "1-1,3-3", "--fork-epoch", "4", "--band", "100",
            "--registry", str(registry), "--config", "configs/clustering30_long.yaml",
            *small_overrides, "trainer.limit_train_batches=2", "trainer.max_epochs=5", "model.category_noise_from=4"]
    args = restart_rule.parse_args(argv)
    said = []
    assert restart_rule.run(args, runner=in_process, say=said.append) == 0
    base = tmp_path / "runs" / "clustering"
    trunks = [json.loads((base / f"rule-trunk-s{t}" / "result.json").read_text()) for t in (0, 5)]
    assert [t["epochs"] for t in trunks] == [4, 4]  # a band of 100 points: both on to the fork epoch, in place
    kept = [s for s in said if s.startswith("kept trunk")][0].split()[-1]
    fork = json.loads((base / f"rule-late-s{kept}" / "result.json").read_text())
    assert fork["epochs"] == 5 and len(fork["curve"]["values"]) == 5  # the trunk's epochs 0-3 and its own
    rows = read(registry)
    assert [r.get("recipe") for r in rows][-1] == "clustering30-restart-rule"
    sel = rows[-1]["selection"]
    assert sel["decided_on"] == "3-3" and set(sel["means"]) == {"t0", "t5"}
    assert sel["reported_run"] == Path(fork["run_dir"]).name


def test_runs_that_end_short_of_their_epochs_are_not_started_again_and_again(tmp_path):
    with pytest.raises(restart_rule.RuleError, match="without reaching their epochs"):
        restart_rule.run(restart_rule.parse_args(_args(tmp_path, "--seed", "3")), runner=lambda c, j: 0,
                         say=lambda s: None)


def test_a_stop_signal_reaches_each_running_training_once(tmp_path):
    """SIGTERM to this command is passed on to the running train.py (its own session, so a terminal's
    Ctrl-C is not seen twice), which checkpoints and stops; the command ends with its code."""
    import os
    import signal
    import threading

    child = tmp_path / "child.py"
    child.write_text(
        "import signal, sys, time\n"
        "seen = []\n"
        "signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))\n"
        f"open({str(tmp_path / 'started')!r}, 'w').close()\n"
        "end = time.time() + 20\n"
        "while not seen and time.time() < end: time.sleep(0.05)\n"
        "time.sleep(0.5)\n"
        f"open({str(tmp_path / 'seen')!r}, 'w').write(str(len(seen)))\n"
        "sys.exit(143 if seen else 0)\n")

    def stop_when_started():
        end = __import__("time").time() + 20
        while not (tmp_path / "started").exists() and __import__("time").time() < end:
            __import__("time").sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=stop_when_started, daemon=True).start()
    code = restart_rule.subprocess_runner([["a"], ["b"]], jobs=1, program=child)
    assert code == 143 and (tmp_path / "seen").read_text() == "1"
    assert signal.getsignal(signal.SIGTERM) is before  # this process's own handler is back


def _child(folder: Path, body: str, exit_code: str) -> Path:
    """A stand-in for train.py run by subprocess_runner: marks its start and end in folder, then exits with the
    value of the expression exit_code."""
    folder.mkdir(exist_ok=True)
    child = folder / "child.py"
    child.write_text("import pathlib, signal, sys, time\n"
                     f"d = pathlib.Path({str(folder)!r}); name = sys.argv[1]\n"
                     "started = lambda: len(list(d.glob('*.start')))\n"
                     "(d / f'{name}.start').touch()\n" + body +
                     "(d / f'{name}.end').touch()\n"
                     f"sys.exit({exit_code})\n")
    return child


def test_jobs_2_runs_two_side_by_side_and_starts_no_new_run_after_a_failure(tmp_path):
    """--jobs 2 with real processes: two run at once (each waits to see the other start, and stays until the other
    has counted, so a slow poll cannot count the third), never three; after a run fails, the running one finishes,
    nothing new starts, and the failure's code is returned."""
    body = ("end = time.time() + 20\n"
            "while (seen := started()) < int(sys.argv[3]) and time.time() < end: time.sleep(0.05)\n"
            "(d / f'{name}.ran').write_text(f'{seen} {len(list(d.glob(\"*.end\")))}')\n"
            "while len(list(d.glob('*.ran'))) < int(sys.argv[3]) and time.time() < end: time.sleep(0.05)\n"
            "while len(sys.argv) > 4 and not (d / f'{sys.argv[4]}.end').exists() and time.time() < end:\n"
            "    time.sleep(0.05)\n"
            "time.sleep(1.5 if len(sys.argv) > 4 else 0)\n")
    together = tmp_path / "together"
    code = restart_rule.subprocess_runner([["a", "0", "2"], ["b", "0", "2"], ["c", "0", "1"]], jobs=2,
                                          program=_child(together, body, "int(sys.argv[2])"))
    assert code == 0
    assert [(together / f"{n}.ran").read_text().split()[0] for n in "ab"] == ["2", "2"]  # each saw the other start
    started, ended = map(int, (together / "c.ran").read_text().split())
    assert started == 3 and ended >= 1  # c started only once a place was free
    failing = tmp_path / "failing"
    code = restart_rule.subprocess_runner([["a", "3", "1"], ["b", "0", "1", "a"], ["c", "0", "1"]], jobs=2,
                                          program=_child(failing, body, "int(sys.argv[2])"))
    assert code == 3
    assert (failing / "b.end").exists() and not (failing / "c.start").exists()  # b ended 1.5 s after a failed


def test_a_stop_signal_reaches_both_trainings_of_jobs_2_once_each(tmp_path):
    import os
    import signal
    import threading
    import time

    child = _child(tmp_path, "seen = []\n"
                             "signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))\n"
                             "(d / f'{name}.ready').touch()\n"
                             "end = time.time() + 20\n"
                             "while not seen and time.time() < end: time.sleep(0.05)\n"
                             "time.sleep(0.5)\n"
                             "(d / f'{name}.seen').write_text(str(len(seen)))\n", "143 if seen else 0")

    def stop_when_both_started():
        end = time.time() + 20
        while len(list(tmp_path.glob("*.ready"))) < 2 and time.time() < end:
            time.sleep(0.05)  # both have started and set their handlers
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_both_started, daemon=True).start()
    code = restart_rule.subprocess_runner([["a"], ["b"], ["c"]], jobs=2, program=child)
    assert code == 143
    assert [(tmp_path / f"{n}.seen").read_text() for n in "ab"] == ["1", "1"]
    assert not (tmp_path / "c.start").exists()  # nothing new starts once stopping
