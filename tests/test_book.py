"""The book: clean sources, a papermill run per notebook, and a build that fails on errors."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from defectlib.book import build_book, execute_notebooks, toc_entries, toc_notebooks
from defectlib.errors import DefectlibError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def test_every_toc_entry_exists():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    for entry in toc_entries(toc):
        path = ROOT / entry
        assert path.suffix or any(path.with_suffix(s).is_file() for s in (".md", ".ipynb")), entry


def test_every_notebook_is_in_the_toc():
    assert sorted(ROOT / p for p in toc_notebooks(ROOT)) == NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_have_one_parameters_cell_with_profile(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    assert "profile =" in tagged[0].source
    # The names before the parameters cell are recorded, so unknown parameters are caught.
    index = nb.cells.index(tagged[0])
    assert any("_before = set(globals())" in c.source for c in nb.cells[:index])


def _notebook(tmp_path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.cells[0].metadata["tags"] = ["parameters"]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_a_failing_cell_fails_with_the_notebook_named(tmp_path):
    _notebook(tmp_path, "profile = 'smoke'", "raise RuntimeError('boom')")
    with pytest.raises(DefectlibError, match=r"nb.ipynb: cell \d+ failed with RuntimeError: boom"):
        execute_notebooks(tmp_path, [Path("nb.ipynb")], parameters={"profile": "smoke"}, progress=False)


@pytest.mark.slow
def test_an_unknown_parameter_stops_the_data_notebook(isolated):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError, match="unknown parameter.*dilaton"):
        pm.execute_notebook(str(ROOT / "book" / "data.ipynb"), str(isolated / "out.ipynb"),
                            parameters={"profile": "smoke", "dilaton": 9}, progress_bar=False)


@pytest.mark.slow
@pytest.mark.longest
def test_smoke_book_builds_from_papermill_outputs(isolated):
    index = build_book("smoke", path_output=isolated, progress=False)
    assert index == isolated / "_build" / "html" / "index.html" and index.is_file()
    html = isolated / "_build" / "html" / "book"
    for page in ("intro", "reproducibility", "data"):
        assert (html / f"{page}.html").is_file(), page
    data_page = (html / "data.html").read_text()
    assert "Traceback" not in data_page
    assert data_page.count("<img") >= 4  # the four figures of the data chapter
    executed = json.loads((isolated / "_build" / "source-smoke" / "book" / "data.ipynb").read_text())
    assert executed["metadata"]["papermill"]["parameters"]["profile"] == "smoke"
    assert (isolated / "results" / "data").is_dir()  # the run went to the isolated cache
    # each notebook's time, from nothing cached, and the runs the grids wrote
    record = json.loads((isolated / "_build" / "notebook-runs-smoke.json").read_text())
    timed = {run["notebook"]: run for run in record["notebooks"]}
    assert sorted(timed) == sorted(nb.name for nb in toc_notebooks(ROOT))
    assert all(run["duration_s"] > 0 and not run["failed"] for run in timed.values())
    assert timed[toc_notebooks(ROOT)[0].name]["cached_before"] == 0
    assert timed["seg004.ipynb"]["runs"] and all(r["experiment"] == "seg004" for r in timed["seg004.ipynb"]["runs"])


def test_book_wide_overrides_go_only_to_the_notebooks_that_declare_them():
    from defectlib.book import declared_parameters, route_parameters

    declared = {nb: declared_parameters(ROOT / nb) for nb in toc_notebooks(ROOT)}
    assert all(names[0] == "profile" for names in declared.values())
    routed = route_parameters(declared, {"profile": "converged", "threads": 1})
    assert sorted(nb.stem for nb, params in routed.items() if "threads" in params) == ["performance"]
    assert all(params["profile"] == "converged" for params in routed.values())
    assert routed[Path("book/data.ipynb")] == {"profile": "converged"}


def test_an_override_no_notebook_declares_fails_before_anything_runs(tmp_path):
    from defectlib.book import route_parameters

    declared = {Path("a.ipynb"): ["profile", "amp"], Path("b.ipynb"): ["profile", "seed"]}
    with pytest.raises(DefectlibError, match=r"parameter\(s\) ampp.*\n  amp: a.ipynb\n  profile: a.ipynb, b.ipynb"):
        route_parameters(declared, {"profile": "cpu", "ampp": False})


@pytest.mark.slow
def test_execute_notebooks_routes_overrides(tmp_path):
    # papermill records in each executed notebook the parameters it was given.
    for name, source in [("a", "profile = 'x'\namp = None"), ("b", "profile = 'x'")]:
        _notebook(tmp_path, source).rename(tmp_path / f"{name}.ipynb")
    execute_notebooks(tmp_path, [Path("a.ipynb"), Path("b.ipynb")], parameters={"profile": "smoke", "amp": False},
                      progress=False)
    for name, expected in [("a", {"profile": "smoke", "amp": False}), ("b", {"profile": "smoke"})]:
        executed = json.loads((tmp_path / f"{name}.ipynb").read_text())
        assert executed["metadata"]["papermill"]["parameters"] == expected


def _executed(path: Path, *, start: str, end: str, duration: float, exception=None) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"input_path": "book/seg004.ipynb", "parameters": {"profile": "converged", "compute": True},
                                "start_time": start, "end_time": end, "duration": duration, "exception": exception}
    nbformat.write(nb, path)
    return path


def _provenance(results: Path, key: str, *, finished: str, wall_s: float, f1=None) -> None:
    run = results / "seg004" / key
    run.mkdir(parents=True)
    (run / "provenance.json").write_text(json.dumps({
        "experiment": "seg004", "run_key": key, "config": {"profile": "converged"},
        "device": {"cpu_model": "Some CPU", "cpu_count": 2}, "git": {"commit": "abc"},
        "finished_utc": finished, "wall_time_s": wall_s}))
    if f1 is not None:
        (run / "metrics.json").write_text(json.dumps({"f1": f1}))


def test_notebook_run_takes_papermills_times_and_the_runs_written_meanwhile(tmp_path):
    from defectlib.book import notebook_run

    executed = _executed(tmp_path / "out.ipynb", start="2026-11-30T08:00:00.000001",
                         end="2026-11-30T09:00:00.000001", duration=3600.0)
    results = tmp_path / "results"
    _provenance(results, "cached", finished="2026-11-29T08:10:00+00:00", wall_s=600)
    _provenance(results, "inside", finished="2026-11-30T08:31:00+00:00", wall_s=1800, f1=0.75)
    _provenance(results, "later", finished="2026-11-30T09:05:00+00:00", wall_s=360)
    record = notebook_run(executed, results=results)
    assert record["notebook"] == "seg004.ipynb" and record["parameters"] == {"profile": "converged", "compute": True}
    assert record["duration_s"] == 3600.0 and record["failed"] is False
    assert record["cached_before"] == 1  # the run of the day before; "later" ends after the notebook
    assert [run["run_key"] for run in record["runs"]] == ["inside"]
    run = record["runs"][0]
    assert run["wall_time_s"] == 1800 and run["f1"] == 0.75 and run["device"]["cpu_model"] == "Some CPU"
    assert record["start_utc"] == "2026-11-30T08:00:00.000001+00:00"


def test_notebook_run_names_a_notebook_papermill_did_not_run_and_a_bad_provenance(tmp_path):
    from defectlib.book import notebook_run

    bare = tmp_path / "bare.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), bare)
    with pytest.raises(DefectlibError, match=r"bare\.ipynb: not a notebook executed by papermill"):
        notebook_run(bare, results=tmp_path)
    executed = _executed(tmp_path / "out.ipynb", start="2026-11-30T08:00:00", end="2026-11-30T09:00:00", duration=3600)
    (tmp_path / "results" / "x" / "k").mkdir(parents=True)
    (tmp_path / "results" / "x" / "k" / "provenance.json").write_text("{\"config\": {}}")
    with pytest.raises(DefectlibError, match=r"k.provenance\.json: not the provenance of a run"):
        notebook_run(executed, results=tmp_path / "results")


@pytest.mark.slow
def test_execute_notebooks_records_each_notebooks_time_the_failing_one_too(isolated):
    stage = isolated / "stage"
    stage.mkdir()
    _notebook(stage, "profile = 'x'", "import time; time.sleep(0.2)").rename(stage / "a.ipynb")
    _notebook(stage, "profile = 'x'", "raise RuntimeError('boom')").rename(stage / "b.ipynb")
    record = isolated / "_build" / "notebook-runs-smoke.json"
    with pytest.raises(DefectlibError, match="b.ipynb"):
        execute_notebooks(stage, [Path("a.ipynb"), Path("b.ipynb")], parameters={"profile": "smoke"},
                          progress=False, record=record)
    runs = json.loads(record.read_text())
    assert runs["parameters"] == {"profile": "smoke"}
    assert [(r["notebook"], r["failed"]) for r in runs["notebooks"]] == [("a.ipynb", False), ("b.ipynb", True)]
    assert runs["notebooks"][0]["duration_s"] >= 0.2 and runs["notebooks"][0]["runs"] == []
    assert runs["notebooks"][0]["cached_before"] == 0


@pytest.mark.parametrize("name", ["performance.ipynb", "data.ipynb"])
def test_code_cells_are_hidden_behind_a_toggle_except_the_parameters(name):
    nb = nbformat.read(ROOT / "book" / name, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            tags = cell.metadata.get("tags", [])
            assert ("parameters" in tags) != ("hide-input" in tags), cell.source[:60]
