"""``defectlib grid``: compute the study's grid in the background, and see where it stands.

::

    defectlib grid start [--profile converged] [--workers 2]   # detached workers, one thread each
    defectlib grid run [--profile converged] [--experiment E]   # one worker in the foreground
    defectlib grid run --executor ray [--address ADDR]          # every missing fold a Ray task
    defectlib grid status [--profile converged]                 # done, running, left, CPU-hours
    defectlib grid start --until 15:20                          # start only folds that end by then
    defectlib grid pilot --experiment E --fold K --set key=value  # a recipe on validation images

Workers take folds under locks, so any number can run at once and none trains a fold twice;
a stopped worker's fold resumes from its last checkpoint when a worker next reaches it. Where
the machine (and the checkpoints in its cache) may be gone after a known time, ``--until``
makes the workers start only folds whose estimated time (``grid status``'s) ends before it,
taking cheaper cells further down the order instead. Logs go to
``<cache>/grid/<profile>-worker<N>.log``. ``grid pilot`` trains one fold under a candidate
recipe and scores only its validation images
(:func:`~defectlib.experiments.pilot.pilot_fold`): how a recipe is chosen without a test fold.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta

from .config import DEFAULT_PROFILE, PROFILE_NAMES
from .errors import ConfigError


def _cells(args: argparse.Namespace) -> list:
    from .experiments.grid import study_cells

    cells = study_cells(args.profile)
    if args.experiment:
        cells = [c for c in cells if c.EXPERIMENT in args.experiment]
    return cells


def _deadline(text: str) -> float:
    """An argparse type: ``HH:MM`` (local time, the next time the clock shows it: today, or
    tomorrow once it has passed today) or an ISO date and time, as seconds since the epoch; an ISO
    time already past is refused."""
    try:
        if len(text) <= 5 and ":" in text:
            hour, minute = (int(v) for v in text.split(":"))
            now = datetime.now()
            when = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            if when <= now:
                when += timedelta(days=1)
        else:
            when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--until takes HH:MM or an ISO date and time, got {text!r}") from None
    if when.timestamp() <= time.time():
        raise argparse.ArgumentTypeError(f"--until {text}: that time is already past")
    return when.timestamp()


def _fold_hours(cells: list, profile: str) -> dict[str, float]:
    """Estimated hours of one fold of each unfinished cell, by run key (``grid status``'s)."""
    from .perf.chapter import cached_bench
    from .perf.cost import estimate_costs

    table = estimate_costs(cells, bench=cached_bench(profile))
    if table.empty:
        return {}
    return {row.key: row.hours_left / (row.folds - row.saved) for row in table.itertuples()
            if row.folds > row.saved and not math.isnan(row.hours_left)}


def cmd_grid_run(args: argparse.Namespace) -> int:
    import logging

    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    for noisy in ("matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from .experiments.grid import run_worker

    if args.executor == "ray":
        if args.until:
            raise ConfigError("--until works with the local executor only (Ray schedules the folds itself)")
        return _grid_run_ray(args)
    if args.threads:
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(args.threads)
    cells = _cells(args)
    # re-estimated after every saved fold: a cell's first fold replaces the bench's estimate
    fold_hours = (lambda: _fold_hours(cells, args.profile)) if args.until else None
    counts = run_worker(cells, commit=args.commit, progress=not args.quiet, deadline=args.until, fold_hours=fold_hours,
                        log=lambda text: logging.getLogger("defectlib.grid").info(text))
    print(f"grid {args.profile}: {counts['trained']} folds trained, {counts['busy']} left to other workers, "
          f"{counts['finished']} cells finished"
          + (f", {counts['deferred']} folds left for after the deadline" if counts["deferred"] else "")
          + (f", {counts['failed']} folds FAILED (see above)" if counts["failed"] else ""),
          flush=True)
    return 0


def _grid_run_ray(args: argparse.Namespace) -> int:
    import logging

    from .experiments.ray_grid import run_ray

    report = run_ray(_cells(args), address=args.address, gpus_per_fold=args.gpus_per_fold, commit=args.commit,
                     progress=not args.quiet, log=lambda text: logging.getLogger("defectlib.grid").info(text))
    print(f"grid {args.profile} on Ray: {report.trained} folds trained, {report.busy} left to other workers, "
          f"{report.finished} cells finished, {len(report.failed)} folds failed", flush=True)
    for failure in report.failed:
        print(f"  {failure}", file=sys.stderr)
    if report.failed:
        print("run the same command again to train the failed folds", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_grid_start(args: argparse.Namespace) -> int:
    from .paths import cache_root

    folder = cache_root() / "grid"
    folder.mkdir(parents=True, exist_ok=True)
    # One thread per worker (bit-identical re-runs); glibc keeps freed memory in the process
    # instead of mapping fresh pages every training step (faster, the same arithmetic).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_MMAP_MAX_": "0",
           "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}
    command = [sys.executable, "-m", "defectlib", "grid", "run", "--profile", args.profile, "--threads", "1", "--quiet"]
    for name in args.experiment or []:
        command += ["--experiment", name]
    if args.commit:
        command.append("--commit")
    if args.until:
        command += ["--until", datetime.fromtimestamp(args.until).isoformat(timespec="seconds")]
    for worker in range(args.workers):
        log = folder / f"{args.profile}-worker{worker}.log"
        with open(log, "a") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, start_new_session=True)
        print(f"worker {worker}: pid {process.pid}, log {log}")
    print(f"see progress with: defectlib grid status --profile {args.profile}")
    return 0


def cmd_grid_status(args: argparse.Namespace) -> int:
    import math

    from .perf.chapter import cached_bench
    from .perf.cost import estimate_costs

    from .experiments.grid import held_hours

    cells = _cells(args)
    table = estimate_costs(cells, bench=cached_bench(args.profile))
    if table.empty:
        print(f"grid {args.profile}: no cells")
        return 0
    # what interrupted folds' checkpoints hold is not left to do
    held = held_hours(cells)
    table["hours_left"] = [max(0.0, h - c) if h > 0 else h for h, c in zip(table["hours_left"], held)]
    for row in table.itertuples():
        left = "?" if math.isnan(row.hours_left) else f"{row.hours_left:.1f}" + ("*" if row.estimated_from == "bench" else "")
        print(f"{row.state:<8} {row.saved}/{row.folds}{' +' + str(row.running) if row.running else '':<3} "
              f"{row.cpu_hours:6.2f} h done, {left:>5} h left  {row.cell}  ({row.key})")
    done = int((table["state"] == "done").sum())
    known = table["hours_left"].dropna()
    unknown = int(table["hours_left"].isna().sum())
    print(f"grid {args.profile}: {done} of {len(table)} cells done, {int(table['saved'].sum())} of "
          f"{int(table['folds'].sum())} folds saved, {table['cpu_hours'].sum():.1f} CPU-hours so far; "
          f"about {known.sum():.1f} CPU-hours left" + (f" plus {unknown} cells of networks not yet timed" if unknown else ""))
    if (table["estimated_from"] == "bench").any():
        print("* estimated from the bench (no like cell has saved a fold yet), scaled by the saved folds' times")
    if any(held):
        print(f"hours left: less the {sum(held):.1f} training hours that interrupted folds' checkpoints hold")
    return 0


def _setting(text: str) -> tuple[str, object]:
    """An argparse type: ``key=value``, the value read as JSON where it parses (numbers,
    ``true``, lists) and as a string otherwise."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set takes key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def cmd_grid_pilot(args: argparse.Namespace) -> int:
    import pandas as pd
    import torch

    from .experiments.grid import EXPERIMENTS
    from .experiments.pilot import pilot_fold, publish

    if args.threads:
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(args.threads)
    overrides = dict(args.set or [])
    cfg = EXPERIMENTS[args.experiment].config.from_profile(args.profile, **overrides)
    if not 0 <= args.fold < cfg.n_folds:
        raise ConfigError(f"--fold {args.fold}: the cell has folds 0 to {cfg.n_folds - 1}")
    pilot = pilot_fold(cfg, args.fold, progress=not args.quiet)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_rows", 500):
        print(pilot.curves.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    scalars = {k: v for k, v in pilot.metrics.items() if isinstance(v, (int, float)) and "_fold_" not in k}
    print(f"validation images of fold {args.fold}, final network: "
          + ", ".join(f"{k} {v:.4g}" for k, v in scalars.items()))
    if pilot.checks.get("constant_output"):
        print("FAILED: the scores barely vary (constant output)")
    print(f"pilot {pilot.run.key}: {pilot.run.path}")
    if args.publish:
        print(f"published: {publish(pilot).path}")
    return 0


def add_parser(sub) -> None:
    """Register ``grid run``, ``grid start``, ``grid status`` and ``grid pilot`` on the
    ``defectlib`` parser."""
    grid = sub.add_parser("grid", help="compute the study's grid (background workers) and report on it")
    grid_sub = grid.add_subparsers(dest="grid_command", required=True)
    for name, func, text in (("run", cmd_grid_run, "train every missing fold, in the foreground"),
                             ("start", cmd_grid_start, "start background workers (one thread each)"),
                             ("status", cmd_grid_status, "what is done, running and left")):
        p = grid_sub.add_parser(name, help=text)
        p.add_argument("--profile", default=DEFAULT_PROFILE, choices=[n for n in PROFILE_NAMES])
        p.add_argument("--experiment", action="append", choices=["seg000", "rec004", "seg004"],
                       help="only this experiment's cells (repeatable)")
        if name != "status":
            p.add_argument("--commit", action="store_true", help="commit every saved fold and finished cell to git")
        if name != "status":
            p.add_argument("--until", type=_deadline, default=None, metavar="HH:MM",
                           help="start only folds whose estimated time ends by then (local time, the "
                                "next time the clock shows it, or an ISO date and time); the others are left for a later run")
        if name == "run":
            p.add_argument("--threads", type=int, default=None, help="torch threads (the grid's workers use 1)")
            p.add_argument("--quiet", action="store_true", help="no progress bars (the log keeps one line a fold)")
            p.add_argument("--executor", choices=["local", "ray"], default="local",
                           help="local: this process trains the folds (default); ray: every missing fold "
                                "is a Ray task (pip install defectlib[ray])")
            p.add_argument("--address", default=None,
                           help="with --executor ray: the Ray cluster (default: RAY_ADDRESS, else a local Ray)")
            p.add_argument("--gpus-per-fold", type=float, default=None,
                           help="with --executor ray: GPUs per fold (default 1 when the cluster has GPUs, else 0)")
        if name == "start":
            p.add_argument("--workers", type=int, default=2, help="processes (default 2: one per core)")
        p.set_defaults(func=func)
    p = grid_sub.add_parser("pilot", help="train one fold under a candidate recipe; score its validation images")
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=[n for n in PROFILE_NAMES])
    p.add_argument("--experiment", required=True, choices=["seg000", "rec004", "seg004"])
    p.add_argument("--fold", type=int, default=0, help="the test fold whose training folds are used (default 0)")
    p.add_argument("--set", nargs="+", type=_setting, metavar="KEY=VALUE",
                   help="config values over the profile's (dataset=magnetictile steps=2000 lr=3e-4 ...)")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--publish", action="store_true",
                   help="keep the finished pilot (scores, curves, provenance) beside the results, for the book")
    p.set_defaults(func=cmd_grid_pilot)
