"""Record finished runs in the registry and regenerate every table in the docs from it.

    python -m experiments.results record runs/semi_supervised/<run>      # append a finished run's lines
    python -m experiments.results docs                                   # README, docs/results.md, docs/experiments/
    python -m experiments.results table [--experiment clustering]        # print a table
    python -m experiments.results select --recipe R --seed I --windows 60-79 --candidate A=SRC --candidate B=SRC \
        --report A=RUN       # keep the better run on validation as seed I of recipe R (experiments/selection.py)

`record` reads the run folder's result.json (train() writes it) and decides the run's stage: a confirmation
only when it is the row's command, a preregistered seed, started after the row's file was committed
(docs/protocol.md). The generated tables sit between markers and are only ever written by `docs`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List

from lightning_aae.data import DataError
from lightning_aae.errors import EXIT_INPUT, EXIT_STORAGE, fail
from lightning_aae.provenance import command_line
from lightning_aae.storage import StorageError, write_text_atomic

from . import selection, tables
from .registry import METRICS, REGISTRY, append, claims, holds_selection, read, record_run

PAGES = {  # docs/experiments/<page>.md: the experiment whose table it shows, and one line about it
    "semi_supervised": ("semi_supervised", "100 and 1000 labels: a label head, a style code, two adversaries"),
    "clustering": ("clustering", "16 and 30 clusters without labels, scored by the paper's cluster error"),
    "dim_reduction": ("dim_reduction", "2-D codes with 20 learned cluster heads"),
    "parzen": ("parzen", "the Parzen-window log-likelihood of an 8-D AAE"),
    "autoencoder_family": ("autoencoder", "plain, denoising, sparse, nonnegative, linear, stacked, recurrent"),
    "own_data": (tables.DATASETS, "SVHN, an .npz array file or a folder of images; a recorded run on scikit-learn's 8x8 digits"),
    "demos": (None, "2-D codes under each prior, the supervised style/content split, the label-regularized prior"),
}
HEADLINE = ("<!-- headline:begin (python -m experiments.results docs) -->", "<!-- headline:end -->")
TABLE = ("<!-- table:begin (python -m experiments.results docs) -->", "<!-- table:end -->")
ARMS = ("<!-- arms:begin (python -m experiments.results docs) -->", "<!-- arms:end -->")
# page -> the recipe prefixes of its exploratory arms (one per labeled-set size)
ARMS_OF = {"semi_supervised": ("semi_supervised_100-", "semi_supervised_1000-")}


def replace_block(text: str, markers: tuple, body: str) -> str:
    begin, end = markers
    if begin not in text or end not in text:
        raise ValueError(f"markers {begin} ... {end} not found")
    return text[: text.index(begin)] + f"{begin}\n{body}\n{end}" + text[text.index(end) + len(end):]


def page_table(rows: List[Dict[str, Any]], experiment: str, prereg: Dict[str, Dict[str, Any]]) -> str:
    """The generated table of an experiment page (PAGES): the family's, the other data sets', or the experiment's
    (`prereg`: row -> its preregistered file, as registry.claims reads them)."""
    special = {tables.FAMILY: tables.family_table, tables.DATASETS: tables.dataset_table}
    return special[experiment](rows) if experiment in special else \
        tables.experiment_table(rows, experiment, prereg)


def results_page(rows: List[Dict[str, Any]], prereg: Dict[str, Dict[str, Any]]) -> str:
    """docs/results.md, whole (`prereg` as for page_table)."""
    n_conf = sum(r.get("stage") == "confirmation" and r["metric"] == METRICS[r["experiment"]][0] for r in rows)
    pages = "\n".join(f"- [{page.replace('_', ' ')}](experiments/{page}.md): {about}" for page, (_, about) in PAGES.items())
    return f"""# Results

Test errors on MNIST, mean ± sample std over seeds. **Ours** counts only confirmation runs: fresh seeds
committed in `docs/preregistered/` before their runs started, every one of them reported
([protocol](protocol.md)). "Claim" is the bound on the mean committed with those seeds, and whether the
mean met it. "Last epoch" is the same runs' test error at their final epoch, with no checkpoint
chosen on labeled validation images. Everything here is generated from the registry
(`docs/results.jsonl`, {len(rows)} lines, {n_conf} confirmation runs) by `python -m experiments.results docs`.

{HEADLINE[0]}
{tables.headline_table(rows, link="experiments/{page}.md", claims=prereg)}
{HEADLINE[1]}

The paper (Makhzani et al., 2015) trains for thousands of epochs with SGD; ours trains for tens of
epochs with Adam on a CPU. What each page adds to the paper, the ablations and the distance that is left:

{pages}

Speed: [benchmarks.md](benchmarks.md). How a result is made and checked: [protocol.md](protocol.md).
"""


def write_docs(rows: List[Dict[str, Any]], root: Path) -> List[Path]:
    written = []
    readme = root / "README.md"
    prereg = claims(root)  # read once for every table below
    headline = tables.headline_table(rows, claims=prereg)
    write_text_atomic(readme, replace_block(readme.read_text(), HEADLINE, headline))
    written.append(readme)
    write_text_atomic(root / "docs" / "results.md", results_page(rows, prereg))
    written.append(root / "docs" / "results.md")
    for page, (experiment, _) in PAGES.items():
        path = root / "docs" / "experiments" / f"{page}.md"
        if experiment is None or not path.is_file():
            continue
        text = replace_block(path.read_text(), TABLE, page_table(rows, experiment, prereg))
        if page in ARMS_OF:
            text = replace_block(text, ARMS, tables.arms_table(rows, experiment, ARMS_OF[page]))
        write_text_atomic(path, text)
        written.append(path)
    return written


def select(args) -> None:
    """`select`: decide, then append the reported run's line as seed args.seed of args.recipe."""
    if args.band < 0:
        raise ValueError(f"--band must be at least 0, got {args.band}")
    candidates = selection.parse_candidates(args.candidate)
    reports = dict(spec.partition("=")[::2] for spec in args.report)
    unknown = sorted(set(reports) - set(candidates))
    if unknown or any(not run for run in reports.values()):
        raise ValueError(f"--report: expected LABEL=RUN with LABEL one of the candidates ({', '.join(candidates)}), "
                         f"got {', '.join(args.report)}")
    registry = Path(args.registry)
    rows = read(registry)
    if holds_selection(rows, args.recipe, args.seed):
        raise ValueError(f"{registry} already holds seed {args.seed} of {args.recipe}")
    windows = selection.parse_windows_checked(args.windows)
    try:
        chosen, decided, means, curves = selection.choose(candidates, args.metric, windows, args.band,
                                                          100.0 if args.percent else 1.0)
    except DataError as exc:
        raise ValueError(str(exc)) from None
    for label, by_window in means.items():
        print(f"{label}: " + ", ".join(f"epochs {w} {m:.2f}" for w, m in by_window.items()) +
              (" (quoted)" if isinstance(candidates[label], tuple) else ""))
    print(f"kept {chosen} (decided over epochs {decided})")
    if chosen not in reports:
        raise ValueError(f"the rule kept {chosen}: name the run that reports it with --report {chosen}=RUN")
    line = selection.selection_line(selection.reported_line(rows, reports[chosen]), args.recipe, args.seed, chosen,
                                    decided, means, candidates, curves, args.metric, args.band, windows,
                                    command_line())
    append(line, registry)
    print(f"recorded {line['experiment']} seed {args.seed} of {args.recipe}: {line['metric']} = {line['value']} "
          f"(run {line['selection']['reported_run']})")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.results", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record", help="append finished runs (folders holding result.json) to the registry")
    rec.add_argument("run_dirs", nargs="+")
    rec.add_argument("--recipe", help="the recipe's name in the tables (default: the run's W&B group)")
    rec.add_argument("--registry", default=str(REGISTRY))
    doc = sub.add_parser("docs", help="regenerate the tables of README.md, docs/results.md and docs/experiments/")
    doc.add_argument("--registry", default=str(REGISTRY))
    doc.add_argument("--root", default=".", help="the checkout whose docs are written")
    tab = sub.add_parser("table", help="print the headline table, or one experiment's")
    tab.add_argument("--experiment", choices=sorted(METRICS))
    tab.add_argument("--registry", default=str(REGISTRY))
    sel = sub.add_parser("select", help="keep the better of several runs on validation and record the kept "
                         "run's result as one seed of a recipe made of that choice")
    sel.add_argument("--recipe", required=True, help="the name of the recipe the choice makes")
    sel.add_argument("--seed", type=int, required=True, help="the seed this choice reports in that recipe")
    sel.add_argument("--candidate", action="append", default=[], metavar="LABEL=SOURCE[,SOURCE]",
                     help="a run to choose from: its validation curve's sources (run folders, REGISTRY#RUN), "
                     "or quoted:A-B:MEAN for a curve that was not kept")
    sel.add_argument("--report", action="append", default=[], metavar="LABEL=RUN",
                     help="the recorded run (its folder's name) that reports a candidate when it is chosen")
    sel.add_argument("--metric", default="val/cluster_error")
    sel.add_argument("--percent", action="store_true", help="compare means x 100 (band in percent points)")
    sel.add_argument("--windows", required=True, metavar="A-B[,C-D]", help="the epochs to compare over, in order")
    sel.add_argument("--band", type=float, default=0.0,
                     help="means within this of the lowest go on to the next window (default 0)")
    sel.add_argument("--registry", default=str(REGISTRY))
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "record":
            for run in args.run_dirs:  # each run's lines together, before anything is printed
                for line in record_run(Path(run), Path(args.registry), args.recipe):
                    print(f"recorded {line['experiment']} seed {line['seed']} ({line['stage']}): "
                          f"{line['metric']} = {line['value']}" +
                          (f", last epoch {line['value_last']}" if "value_last" in line else ""))
        elif args.cmd == "select":
            select(args)
        elif args.cmd == "docs":
            for path in write_docs(read(Path(args.registry)), Path(args.root)):
                print(f"wrote {path}")
        else:
            rows = read(Path(args.registry))
            print(tables.experiment_table(rows, args.experiment) if args.experiment else tables.headline_table(rows))
    except ValueError as exc:
        return fail(exc, EXIT_INPUT)
    except StorageError as exc:
        return fail(exc, EXIT_STORAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
