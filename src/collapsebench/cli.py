"""The command line: run, resume, sweep, status, compare, validate, ls, phase, plan, report, schema,
knowledge-items.

`--help`, `validate`, `status`, `ls` and `plan` import no torch. (Over 300 lines: a function a verb
and the parser of its arguments, each short; what a verb does lives in the module it calls.)"""

from __future__ import annotations

import argparse
import atexit
import errno
import gc
import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collapsebench import __version__
from collapsebench.allocator import tune
from collapsebench.console import console, setup_logging
from collapsebench.errors import UserError

if TYPE_CHECKING:
    from collapsebench.analysis.report_process import ReportProcess
    from collapsebench.config import Config
    from collapsebench.layout import CellStatus


def _cmd_run(args: argparse.Namespace) -> int:
    from collapsebench.analysis import report_process

    # its imports overlap the config's (stopped unless a vector world); forked as the command started
    # where it is the command line's (collapsebench.launch)
    early = report_process.take_early() or report_process.fork()
    try:
        from collapsebench.config import load_config
        from collapsebench.validate import check_installed

        config = load_config(args.config, args.overrides)
        check_installed(config, strict=True)
    except BaseException:
        if early is not None:
            early.stop()
        raise
    return _drive(config, args, early)


def _drive(config: Config, args: argparse.Namespace, early: ReportProcess | None = None) -> int:
    """Run (or continue) ``config``; ``--json`` then prints the run's summary on stdout. A vector
    world's report is drawn by a forked process (:mod:`.analysis.report_process`): ``early``, forked
    before the config was read, or one forked now."""
    from collapsebench import batch
    from collapsebench.analysis.report_process import report_writer
    from collapsebench.loop import run_experiment

    vector = batch.applies(config)
    if vector:
        # the run's full collections and the interpreter's at exit skip what is frozen (every
        # object, at exit: those passes took 0.1-0.2 s of a toy run), and the OS frees it;
        # registered once however often main() runs in one process (the tests)
        gc.freeze()
        atexit.unregister(gc.freeze)
        atexit.register(gc.freeze)
    with report_writer(forked=vector, process=early) as report:
        run = run_experiment(config, redo_from=args.redo_from, yes=args.yes, ask=sys.stdin.isatty(),
                             allow_download=args.allow_download, report=report)
    _print_json(args, run.path)
    return 0


def _print_json(args: argparse.Namespace, run_dir: Path) -> None:
    """``--json``: the run's final summary as JSON on stdout (the progress stays on stderr)."""
    if args.json:
        from collapsebench.summary import final_summary

        print(json.dumps(final_summary(run_dir), indent=2))


def _cmd_resume(args: argparse.Namespace) -> int:
    from collapsebench.layout import RunLayout, SweepLayout

    if SweepLayout(args.run_dir).exists():
        from collapsebench.sweep.runner import run_sweep

        return _sweep_exit(run_sweep(args.run_dir))

    config = RunLayout(args.run_dir).load_config()
    if Path(config.run_dir()) != Path(args.run_dir).resolve():
        config = config.model_copy(update={"output_dir": str(Path(args.run_dir).resolve())})
    return _drive(config, args)


def _sweep_exit(statuses: Mapping[str, CellStatus]) -> int:
    """1 when a cell failed (its error is in status), else 0."""
    return 1 if any(status.state == "failed" for status in statuses.values()) else 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from collapsebench.sweep.runner import create, detach, run_sweep

    sweep = create(args.config, args.overrides, grid=args.grid, zips=args.zip, exclude=args.exclude,
                   baselines=args.baselines, name=args.name, workers=args.workers, share=args.share)
    cells = sweep.cells()
    if args.dry_run:
        for cell in cells:
            console.print(f"  {cell['dir']}  {cell['label']}  seed {cell['seed']}", highlight=False, markup=False)
        console.print(f"{len(cells)} cells in {sweep.path} (not run)")
        return 0
    if args.detach:
        where = detach(sweep)
        console.print(f"sweep of {len(cells)} cells running in {where}; follow it with: collapsebench status {sweep.path}",
                      highlight=False, markup=False)
        return 0
    return _sweep_exit(run_sweep(sweep.path))


def _cmd_compare(args: argparse.Namespace) -> int:
    from collapsebench.analysis.compare import compare

    out = compare(args.paths, metrics=args.metric or None, out=args.out, reference=args.reference,
                  correction=args.correction, contrasts=args.contrasts)
    console.print(f"report: {out}" if out else "no evaluated iteration yet")
    return 0


def _cmd_phase(args: argparse.Namespace) -> int:
    from collapsebench.layout import parse_step
    from collapsebench.phases import execute

    iteration, phase = parse_step(args.step)
    execute(args.run_dir, iteration, phase)
    return 0


def _cmd_task(args: argparse.Namespace) -> int:
    from collapsebench.executors import run_task_file

    run_task_file(args.spec)
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from collapsebench.executors.workers import serve

    serve(args.queue)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from collapsebench.status import print_status

    print_status(args.run_dir)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from collapsebench.config import load_config
    from collapsebench.validate import validate_config

    config = load_config(args.config, args.overrides)
    report = validate_config(config)
    for line in report.checked:
        console.print(f"  [green]ok[/] {line}")
    for line in report.prepare:  # built by `run` before the first step
        console.print(f"  [green]ok[/] {line}", highlight=False)
    for name in report.downloads:  # checkable here; `run` refuses until they are in the local cache
        console.print(f"  [yellow]needs download:[/] {name}")
    for note in report.installs:  # a GPU plug-in's backend, installed where it runs; `run` refuses here
        console.print(f"  [yellow]needs install where it runs:[/] {escape(note)}", highlight=False)
    if not args.no_backend:
        import yaml

        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
            yaml.safe_dump(config.dump(), fh)
        result = subprocess.run([sys.executable, "-m", "collapsebench", "check-backends", fh.name])
        Path(fh.name).unlink()
        if result.returncode != 0:
            return result.returncode
    console.print(f"[green]valid[/]: {args.config} (run directory {config.run_dir()})")
    return 0


def _cmd_check_backends(args: argparse.Namespace) -> int:
    from collapsebench.config import load_config
    from collapsebench.validate import check_backends

    for line in check_backends(load_config(args.config)):
        console.print(f"  [green]ok[/] {line}")
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    from collapsebench.listing import print_registries

    print_registries(args.registry)
    return 0


def _cmd_knowledge_items(args: argparse.Namespace) -> int:
    from collapsebench.evaluations.common import write_jsonl
    from collapsebench.evaluations.knowledge_items import build_cloze_items, load_texts, model_scorer

    texts = load_texts(Path(args.input), args.text_field)
    if args.kind == "kr_test":
        from collapsebench.evaluations.kr_test import kr_items

        items = kr_items([str(t) for t in texts], ["all"] * len(texts), min_context_words=args.min_words,
                         seed=args.seed)[:args.n]
    else:
        scorer = model_scorer(args.model) if args.model else None
        items = build_cloze_items(texts, n_items=args.n, seed=args.seed, n_words=args.n_words,
                                  min_words=args.min_words, scorer=scorer, n_candidates=args.candidates)
    write_jsonl(Path(args.output), items)
    console.print(f"wrote {len(items)} items to {args.output}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from collapsebench.analysis.report import write_report
    from collapsebench.layout import RunLayout, SweepLayout

    if SweepLayout(args.run_dir).exists():
        return _cmd_compare(argparse.Namespace(paths=[args.run_dir], metric=None, out=None, reference=None,
                                               correction="holm", contrasts=None))
    run = RunLayout(args.run_dir)
    run.load_config()
    path = write_report(run)
    console.print(f"report: {path}" if path else "no evaluated iteration yet")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from collapsebench.analysis.plan import main as plan

    plan(args.config, args.overrides, gpu=args.gpu, gpus=args.gpus, mfu=args.mfu, params=args.params,
         documents=args.documents, tokens_per_document=args.tokens_per_document,
         chars_per_token=args.chars_per_token, calibrate=args.calibrate, as_json=args.json)
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from collapsebench.config import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _error(message: str) -> int:
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return 2


def _redo_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="redo_from", metavar="ITER.PHASE", help="redo from this step on (e.g. 2.train)")
    p.add_argument("--yes", action="store_true",
                   help="consent to redo committed steps (stale, --from, beyond iterations); they move to superseded/")
    p.add_argument("--allow-download", action="store_true",
                   help="let hub models and datasets that are not in the local cache be downloaded")


def _sweep_args(p: argparse.ArgumentParser) -> None:
    """The sweep command: the base config, its axes, and how the cells run."""
    p.add_argument("config", help="experiment YAML file (its sweep: block holds a grid too)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of the base config")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=[v1, ...]",
                   help="an axis: a config key (list indices and whole blocks too) and its values as a YAML list")
    p.add_argument("--zip", action="append", default=[], metavar="KEY=[v1, ...]",
                   help="keys stepped together (equal-length lists), as one axis")
    p.add_argument("--exclude", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="leave out the cells whose config matches all these values")
    p.add_argument("--baselines", choices=["clean"], help="add the real-only (1 - alpha) run of each replace(alpha) cell")
    p.add_argument("--name", help="sweep directory runs/NAME (default: the config's sweep.name or <name>-sweep)")
    p.add_argument("--workers", type=int, help="cells run at once (the sweep executor's workers)")
    p.add_argument("--no-share", dest="share", action="store_false", default=None,
                   help="compute every cell's steps itself (no sharing of identical steps between cells)")
    p.add_argument("--detach", action="store_true",
                   help="start the driver so that it outlives this command (a SLURM job of its own with a slurm "
                   "sweep executor); follow with status")
    p.add_argument("--dry-run", action="store_true", help="list the cells and write the manifest, run nothing")
    p.set_defaults(fn=_cmd_sweep)


def _knowledge_items_args(p: argparse.ArgumentParser) -> None:
    """The cloze (or KR-test) item builder: input documents, output items and how they are drawn."""
    p.add_argument("input", help=".txt (one document per line), .jsonl/.json, .csv, .parquet or a dataset folder")
    p.add_argument("output", help="the JSONL item file to write")
    p.add_argument("--kind", choices=["cloze", "kr_test"], default="cloze",
                   help="cloze: last-word items; kr_test: a true sentence against it with one fact changed")
    p.add_argument("--n", type=int, default=500, help="number of items")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-words", type=int, default=1, help="words in each continuation")
    p.add_argument("--min-words", type=int, default=5, help="shortest usable sentence (kr_test: context)")
    p.add_argument("--text-field", default="text")
    p.add_argument("--model", help="causal LM folder that picks the most confusable of --candidates distractors")
    p.add_argument("--candidates", type=int, default=8)
    p.set_defaults(fn=_cmd_knowledge_items)


def _plan_args(p: argparse.ArgumentParser) -> None:
    """The plan command: the hardware to plan for and what the config does not say."""
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--gpu", default="h100", choices=["h100", "a100", "h200"], help="the GPU to plan for")
    p.add_argument("--gpus", type=int, default=1, help="GPUs the phases run on")
    p.add_argument("--mfu", action="append", default=[], metavar="PHASE=FRACTION",
                   help="model FLOPs utilisation of a phase (defaults: train 0.4, generate 0.1, evaluate 0.3)")
    p.add_argument("--calibrate", action="store_true",
                   help="measure this machine: run iteration 1 at two reduced sizes and fit each phase's time")
    p.add_argument("--params", type=float, help="model parameters, where the config does not say")
    p.add_argument("--documents", type=int, help="real documents, where the data source does not say")
    p.add_argument("--tokens-per-document", type=float, help="mean tokens a document, where it cannot be estimated")
    p.add_argument("--chars-per-token", type=float, default=4.0, help="for text files (default 4)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(fn=_cmd_plan)


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="RUN_OR_SWEEP")
    p.add_argument("--metric", action="append", default=[], help="a metric to compare (repeatable; default: all)")
    p.add_argument("--out", help="output folder (default: <first path>/report)")
    p.add_argument("--reference", help="the cell the others are tested against (default: the 0%%-synthetic cell)")
    p.add_argument("--correction", choices=["holm", "bonferroni", "none"], default="holm",
                   help="multiple-comparison correction over each metric's comparisons at one iteration")
    p.add_argument("--contrasts", metavar="FILE", help="a YAML file whose contrasts: block to test (default: the "
                   "block in the runs' configs)")
    p.set_defaults(fn=_cmd_compare)


def _config_args(p: argparse.ArgumentParser, fn: Any, *, json_summary: bool = False) -> None:
    """A verb of a config and its overrides (``validate`` also skips the backends on request)."""
    p.add_argument("config", help="experiment YAML file")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides (values parsed as YAML)")
    if json_summary:
        _redo_options(p)
        p.add_argument("--json", action="store_true", help="print the run's final summary as JSON on stdout")
    p.set_defaults(fn=fn)


# Verbs of one positional argument: (name, argument, help or None for the verbs the framework runs itself
# (hidden from --help: a parser without help= is not listed), function)
SIMPLE_VERBS = (
    ("status", "run_dir", "iterations x phases: status, durations, counts, latest metrics (or a sweep's cells)",
     _cmd_status),
    ("check-backends", "config", None, _cmd_check_backends),  # validate's child process
    ("ls", "registry", "registered plug-in names", _cmd_ls),
    ("task", "spec", None, _cmd_task),  # what executors' workers run
    ("worker", "queue", None, _cmd_worker),  # a long-lived worker: runs the tasks of its queue
    ("report", "run_dir", "(re)write the run's (or sweep's) report.html", _cmd_report),
    ("schema", None, "print the config's JSON Schema", _cmd_schema),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="collapsebench", description="Model-collapse experiments from one YAML file.")
    parser.add_argument("--version", action="version", version=f"collapsebench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _config_args(sub.add_parser("run", help="start or continue the run of a config"), _cmd_run, json_summary=True)
    p = sub.add_parser("resume", help="continue a run directory (or a sweep directory)")
    p.add_argument("run_dir")
    _redo_options(p)
    p.add_argument("--json", action="store_true", help="print the run's final summary as JSON on stdout")
    p.set_defaults(fn=_cmd_resume)
    _sweep_args(sub.add_parser("sweep", help="run a grid of runs over config keys (cells under runs/NAME/)"))
    _compare_args(sub.add_parser("compare", help="figures, statistics over seeds and a report from runs and sweeps"))
    p = sub.add_parser("validate", help="check a config without running it")
    _config_args(p, _cmd_validate)
    p.add_argument("--no-backend", action="store_true",
                   help="skip building the backends' argument objects (which imports torch in a child process)")
    p = sub.add_parser("phase", help="run one phase of one iteration (the executors' entry point)")
    p.add_argument("run_dir")
    p.add_argument("step", metavar="ITER.PHASE")
    p.set_defaults(fn=_cmd_phase)
    _knowledge_items_args(sub.add_parser("knowledge-items", help="build last-word cloze items for the knowledge "
                                         "evaluation from documents (items from a run's training data: the knowledge "
                                         "evaluation's items option)"))
    _plan_args(sub.add_parser("plan", help="tokens, FLOPs, GPU-hours and disk of a config, per phase, before it runs"))
    for name, argument, text, fn in SIMPLE_VERBS:
        p = sub.add_parser(name, help=text) if text else sub.add_parser(name)
        if argument == "registry":
            p.add_argument(argument, nargs="?", help="one registry (e.g. regimes, trainers)")
        elif argument:
            p.add_argument(argument)
        p.set_defaults(fn=fn)
    return parser


# The machine refusing a write: the user's to fix (free space, permissions), reported like a user error.
STORAGE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse, taking ``key=value`` overrides from anywhere on the line for the verbs that have them.

    argparse fills a ``nargs="*"`` positional from one run of positionals only, so an override after
    an option (``validate c.yaml --no-backend iterations=3``) would be left over; here each leftover
    that is an override joins the overrides, in the order given (a later one wins)."""
    args, rest = parser.parse_known_args(argv)
    extra = [a for a in rest if not a.startswith("-") and "=" in a] if hasattr(args, "overrides") else []
    unknown = [a for a in rest if a not in extra]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    tune()  # before torch allocates: this process and the workers it starts
    setup_logging()
    args = parse_args(build_parser(), sys.argv[1:] if argv is None else argv)
    try:
        return int(args.fn(args))
    except UserError as exc:
        return _error(str(exc))
    except OSError as exc:
        if exc.errno not in STORAGE_ERRORS:
            raise
        where = exc.filename or "a file"
        return _error(f"cannot write {where}: {exc.strerror}. What was committed is intact; free space or fix "
                      "the permissions, then run the same command again (or collapsebench resume RUN_DIR)")
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]; continue with: collapsebench resume RUN_DIR")
        return 130
