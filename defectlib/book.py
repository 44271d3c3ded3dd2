"""Execute the book's notebooks with papermill, then build it with Jupyter Book.

Like cal-itp's portfolio: one declared set of parameters (the ``profile``, plus optional
overrides) runs every notebook listed in ``_toc.yml``; the executed copies go to a staging
folder (the committed sources stay free of outputs); ``jupyter-book build`` then renders the
staged copy with execution off, failing on any error or Sphinx warning.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import yaml

from tqdm.auto import tqdm

from .config import DEFAULT_PROFILE
from . import atomic
from .errors import DefectlibError
from .paths import project_root, results_root

BOOK_FILES = ("_config.yml", "_toc.yml")


def toc_entries(toc: Mapping[str, Any]) -> list[str]:
    """Every ``root``/``file`` entry of a ``_toc.yml`` mapping, in reading order.

    Examples
    --------
    >>> toc_entries({"root": "book/intro", "chapters": [{"file": "book/a", "sections": [{"file": "book/b"}]}]})
    ['book/intro', 'book/a', 'book/b']
    """
    entries = [toc["root"]] if "root" in toc else []

    def walk(items: list) -> None:
        for item in items or []:
            if "file" in item:
                entries.append(item["file"])
            for key in ("sections", "chapters"):
                walk(item.get(key, []))
            for part in item.get("parts", []):
                walk(part.get("chapters", []))

    walk(toc.get("chapters", []))
    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    return entries


def toc_notebooks(root: Path | None = None) -> list[Path]:
    """The notebooks of ``_toc.yml`` as paths relative to the project root."""
    root = root or project_root()
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    notebooks = []
    for entry in toc_entries(toc):
        path = Path(entry)
        candidate = path if path.suffix else path.with_suffix(".ipynb")
        if (root / candidate).is_file() and candidate.suffix == ".ipynb":
            notebooks.append(candidate)
    return notebooks


def stage_sources(stage: Path, root: Path | None = None) -> None:
    """Copy the book's sources (config, toc, ``book/`` without results) into ``stage``."""
    root = root or project_root()
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for name in BOOK_FILES:
        shutil.copy2(root / name, stage / name)
    shutil.copytree(
        root / "book",
        stage / "book",
        ignore=shutil.ignore_patterns("results", ".ipynb_checkpoints", "_build"),
    )


def declared_parameters(path: str | Path) -> list[str]:
    """The names a notebook's ``parameters`` cell declares, in order (papermill's reading).

    Examples
    --------
    >>> declared_parameters(project_root() / "book" / "seg000_sweep.ipynb")[0]
    'profile'
    """
    import papermill as pm

    return list(pm.inspect_notebook(str(path)))


def route_parameters(
    declared: Mapping[Path, list[str]], parameters: Mapping[str, Any]
) -> dict[Path, dict[str, Any]]:
    """Give each notebook the ``parameters`` its parameters cell declares.

    The notebooks reject names they do not declare (a misspelt parameter must not pass
    silently), so a book-wide override such as ``compute`` goes only to the notebooks that take
    it; ``profile`` is declared by every notebook.

    Raises
    ------
    DefectlibError
        When a name is declared by none of the notebooks, listing what they do declare.

    Examples
    --------
    >>> route_parameters({Path("a.ipynb"): ["profile", "compute"], Path("b.ipynb"): ["profile"]},
    ...                  {"profile": "converged", "compute": True})
    {PosixPath('a.ipynb'): {'profile': 'converged', 'compute': True}, PosixPath('b.ipynb'): {'profile': 'converged'}}
    """
    unknown = [name for name in parameters if not any(name in names for names in declared.values())]
    if unknown:
        known = {name: [str(nb) for nb, names in declared.items() if name in names]
                 for names in declared.values() for name in names}
        listing = "\n".join(f"  {name}: {', '.join(nbs)}" for name, nbs in sorted(known.items()))
        raise DefectlibError(f"no notebook of the book declares the parameter(s) {', '.join(unknown)}; "
                             f"the notebooks declare:\n{listing}")
    return {nb: {k: v for k, v in parameters.items() if k in names} for nb, names in declared.items()}


def _utc(text: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (papermill writes naive UTC times).

    Examples
    --------
    >>> _utc("2026-11-30T08:00:00.5").isoformat()
    '2026-11-30T08:00:00.500000+00:00'
    """
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def notebook_run(executed: str | Path, *, results: str | Path | None = None) -> dict[str, Any]:
    """What one papermill execution of a notebook took, and the study's runs it trained.

    Reads the executed notebook's papermill metadata (parameters, start, end, duration, whether
    a cell raised) and, from the results cache ``results`` (default: the study's,
    :func:`~defectlib.paths.results_root`), the ``provenance.json`` of every run finished
    within that window: experiment, run key, config, device, code version, wall
    time, and F1 where its ``metrics.json`` has one. ``cached_before`` counts the runs of the
    cache that had finished before the notebook started: 0 means it ran with no result cached.
    Nothing is executed; :func:`execute_notebooks` calls it after each notebook.

    Raises
    ------
    DefectlibError
        Naming the file, when ``executed`` is not a notebook papermill has run to the end (or
        to a failing cell), or a provenance in the window cannot be read.
    """
    executed = Path(executed)
    results = Path(results) if results is not None else results_root()
    try:
        meta = json.loads(executed.read_text())["metadata"]["papermill"]
        start, end = _utc(meta["start_time"]), _utc(meta["end_time"])
        duration = float(meta["duration"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DefectlibError(
            f"{executed}: not a notebook executed by papermill to the end ({type(exc).__name__}: {exc})"
        ) from None
    runs, cached_before = [], 0
    for path in sorted(results.glob("**/provenance.json")):
        try:
            record = json.loads(path.read_text())
            finished = _utc(record["finished_utc"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DefectlibError(f"{path}: not the provenance of a run ({type(exc).__name__}: {exc})") from None
        if finished < start:
            cached_before += 1
        if not (start <= finished <= end):
            continue
        metrics_path = path.with_name("metrics.json")
        try:
            metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        except (OSError, ValueError) as exc:
            raise DefectlibError(f"{metrics_path}: unreadable ({type(exc).__name__}: {exc})") from None
        runs.append({
            "experiment": record.get("experiment"), "run_key": record.get("run_key"),
            "config": record.get("config"), "device": record.get("device"),
            "git": record.get("git"), "finished_utc": record["finished_utc"],
            "wall_time_s": record.get("wall_time_s"), "f1": metrics.get("f1"),
        })
    return {
        "notebook": Path(meta.get("input_path") or executed).name,
        "parameters": meta.get("parameters", {}),
        "start_utc": start.isoformat(), "end_utc": end.isoformat(), "duration_s": duration,
        "failed": bool(meta.get("exception")),
        "cached_before": cached_before,
        "runs": runs,
    }


def execute_notebooks(
    stage: Path,
    notebooks: list[Path],
    *,
    parameters: Mapping[str, Any],
    progress: bool = True,
    record: Path | None = None,
) -> None:
    """Execute each staged notebook in place with papermill and its share of ``parameters``.

    Each notebook gets the names of ``parameters`` that its parameters cell declares
    (:func:`route_parameters`). With ``record``, after each notebook (the failing one
    included) the list of :func:`notebook_run` records so far is written there, atomically:
    how long every notebook took and which cells it trained.

    Raises
    ------
    DefectlibError
        Naming the notebook and the failing cell when any cell raises; naming the parameter
        when no notebook declares it (before anything runs).
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    routed = route_parameters({nb: declared_parameters(stage / nb) for nb in notebooks}, parameters)
    runs: list[dict[str, Any]] = []

    def write_record(path: Path) -> None:
        if record is not None:
            runs.append(notebook_run(path))
            atomic.write_json(record, {"parameters": dict(parameters), "notebooks": runs})

    for notebook in tqdm(notebooks, desc="notebooks", disable=not progress):
        path = stage / notebook
        try:
            pm.execute_notebook(
                str(path),
                str(path),
                parameters=routed[notebook],
                cwd=str(path.parent),
                kernel_name="python3",
                progress_bar=False,
                log_output=False,
            )
        except PapermillExecutionError as exc:
            try:
                write_record(path)
            except DefectlibError:  # the failure itself is what the user must see
                pass
            raise DefectlibError(
                f"{notebook}: cell {exc.exec_count} failed with {exc.ename}: {exc.evalue}\n"
                f"  the executed notebook, with the traceback, is at {path}"
            ) from None
        write_record(path)


def jupyter_book_build(stage: Path, path_output: Path) -> Path:
    """Run ``jupyter-book build`` (warnings are errors); return ``index.html``."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(stage),
           "--path-output", str(path_output), "--warningiserror", "--keep-going"]
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise DefectlibError(
            "jupyter-book build failed:\n" + (result.stdout[-6000:] + result.stderr[-6000:]).strip()
        )
    return path_output / "_build" / "html" / "index.html"


def notebook_runs_path(profile: str, path_output: Path | None = None) -> Path:
    """Where :func:`build_book` records the notebooks' times (see :func:`notebook_run`).

    Examples
    --------
    >>> notebook_runs_path("converged", Path("/tmp/out")).as_posix()
    '/tmp/out/_build/notebook-runs-converged.json'
    """
    return Path(path_output or project_root()) / "_build" / f"notebook-runs-{profile}.json"


def build_book(
    profile: str = DEFAULT_PROFILE,
    *,
    path_output: Path | None = None,
    parameters: Mapping[str, Any] | None = None,
    execute: bool = True,
    progress: bool = True,
) -> Path:
    """Stage, execute (papermill, ``profile`` + ``parameters``) and build the book.

    Each override of ``parameters`` goes to the notebooks that declare it, e.g.
    ``{"compute": True}`` to the three grid notebooks (:func:`route_parameters`).

    The HTML ends at ``<path_output>/_build/html/index.html``; ``path_output`` defaults to
    the project root. Returns that path. How long each notebook took, and the cells it trained,
    go to ``<path_output>/_build/notebook-runs-<profile>.json`` (:func:`notebook_run`).
    """
    root = project_root()
    path_output = Path(path_output or root).resolve()
    stage = path_output / "_build" / f"source-{profile}"
    stage_sources(stage, root)
    if execute:
        execute_notebooks(stage, toc_notebooks(root), parameters={"profile": profile, **(parameters or {})},
                          progress=progress, record=notebook_runs_path(profile, path_output))
    return jupyter_book_build(stage, path_output)
