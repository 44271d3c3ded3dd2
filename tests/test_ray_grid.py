"""The grid on Ray: a local Ray gives the numbers of a sequential run; a fold whose worker died is
reported by cell and fold, the others are saved, and the next invocation trains only that fold;
a node whose data differs from the folds manifest is refused by name; without Ray the command
says how to install it."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray

from defectlib.data.folds import FoldsManifest
from defectlib.errors import DataError, DefectlibError, UnavailableError
from defectlib.experiments import common, grid, ray_grid, seg000


def _cell():
    """The first cell of the smoke grid (seg000's proposed network, 3 folds of synthetic data)."""
    return grid.study_cells("smoke")[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """A driver cache and a worker node's own cache, kept for the module (the synthetic data
    is made once in each)."""
    root = tmp_path_factory.mktemp("ray-grid")
    return {"driver": root / "driver-cache", "worker": root / "worker-cache", "root": root}


@pytest.fixture(scope="module")
def local_ray(caches):
    """A local Ray node with two single-CPU slots whose workers use their own cache.

    The raylet gives the node's dashboard agent 15 s to report its ports; on a machine busy with
    other work the agent's imports take longer and the raylet aborts. The agent's ports are
    therefore fixed up front (the listen port is handed to the raylet too), so the raylet does
    not wait for them. Ray starts its workers at niceness 15; here they run at this process's,
    as the sequential run does, so that other work on the machine slows both alike.
    """
    from ray._private import services
    from ray.cluster_utils import Cluster

    ports = {name: _free_port() for name in ("metrics_agent_port", "metrics_export_port",
                                             "dashboard_agent_listen_port", "runtime_env_agent_port")}
    start = services.start_ray_process

    def start_with_listen_port(command, process_type, *args, **kwargs):
        if process_type == "raylet":
            command = [*command, f"--dashboard_agent_listen_port={ports['dashboard_agent_listen_port']}"]
        return start(command, process_type, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(services, "start_ray_process", start_with_listen_port)
        mp.setenv("DEFECTLIB_CACHE", str(caches["driver"]))
        cluster = Cluster()
        cluster.add_node(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, **ports,
                         env_vars={"DEFECTLIB_CACHE": str(caches["worker"]), "OMP_NUM_THREADS": "1",
                                   "RAY_worker_niceness": "0",
                                   "DEFECTLIB_RESULTS": str(caches["root"] / "worker-results")})
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def sequential(caches):
    """The cell trained fold after fold in this process (one torch thread, as grid workers run)."""
    import torch

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEFECTLIB_RESULTS", str(caches["root"] / "sequential-results"))
        mp.setenv("DEFECTLIB_CACHE", str(caches["driver"]))
        torch.set_num_threads(1)
        try:
            assert grid.run_worker([_cell()], progress=False, log=lambda line: None)["finished"] == 1
        finally:
            torch.set_num_threads(threads)
        return common.cell_run(_cell()).load()


@pytest.fixture
def driver(caches, tmp_path, monkeypatch):
    """A fresh results cache for the driver; the module's driver cache."""
    monkeypatch.setenv("DEFECTLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("DEFECTLIB_CACHE", str(caches["driver"]))
    return tmp_path


def _same_as(result, reference) -> None:
    assert result.key == reference.key
    assert (result.path / "samples.csv").read_bytes() == (reference.path / "samples.csv").read_bytes()
    assert result.metrics == reference.metrics
    for fold in range(3):
        ours, theirs = (r.artifact(f"fold{fold}") for r in (result, reference))
        assert ours.keys() == theirs.keys()
        for name in ours:
            np.testing.assert_array_equal(ours[name], theirs[name])


@pytest.mark.slow
def test_a_local_ray_gives_the_sequential_numbers_and_reruns_only_a_killed_workers_fold(local_ray, sequential,
                                                                                       driver):
    marker = driver / "killed-once"

    def dies_once_on_fold_1(cfg, data, current, **kw):
        # The worker process dies outright (as when a node is lost or killed), once.
        if data.fold == 1 and not marker.exists():
            marker.touch()
            os._exit(1)
        return seg000._train_fold(cfg, data, current, **kw)

    cell = _cell()
    name = grid.describe(cell)
    report = ray_grid.run_ray([cell], retries=0, progress=False, log=lambda line: None, train_fold=dies_once_on_fold_1)
    assert marker.exists()
    assert (report.trained, report.busy, report.finished) == (2, 0, 0)  # folds 0 and 2, one on each CPU
    [failure] = report.failed
    assert (failure.cell, failure.fold, failure.key) == (name, 1, common.cell_run(cell).key)
    assert "died" in failure.error.lower() or "crash" in failure.error.lower()
    assert str(failure).startswith(f"{name}: fold 1 failed")
    current = common.cell_run(cell)
    assert [current.has_part(f"fold{f}") for f in range(3)] == [True, False, True] and not current.complete
    saved = {f: current._part(f"fold{f}").read_bytes() for f in (0, 2)}

    lines = []
    again = ray_grid.run_ray([cell], retries=0, progress=False, log=lines.append, train_fold=dies_once_on_fold_1)
    assert (again.trained, again.finished, again.failed) == (1, 1, [])
    assert lines[0].startswith("1 folds to train")  # only the killed worker's fold
    assert {f: current._part(f"fold{f}").read_bytes() for f in (0, 2)} == saved  # the others were kept
    assert any(line.startswith(f"{name}: finished") for line in lines)

    # The folds trained on Ray give the cell's samples, metrics and artifacts of the sequential run.
    result = current.load()
    _same_as(result, sequential)
    assert set(result.provenance["parts"]) == {"fold0", "fold1", "fold2"}
    assert not list(Path(result.path).rglob(".*.tmp"))
    # Nothing is missing any more: the next invocation submits nothing.
    done = ray_grid.run_ray([cell], progress=False, log=lines.append)
    assert (done.trained, done.finished, done.failed) == (0, 0, []) and lines[-1].startswith("0 folds to train")


def test_a_node_whose_data_differs_from_the_manifest_is_refused_by_name(monkeypatch, isolated):
    table = pd.DataFrame({"sample_id": ["a", "b"]})
    hashes = pd.DataFrame({"sample_id": ["a", "b"], "image_sha256": ["1", "2"], "mask_sha256": ["3", "4"]})
    monkeypatch.setattr(ray_grid, "load_samples", lambda name: table)
    monkeypatch.setattr(ray_grid, "content_hashes", lambda t: hashes)
    expected = ray_grid.data_checksum(hashes)
    manifest = FoldsManifest(path=Path("kolektorsdd-k3-seed0-0123456789ab.csv"), sha256="0" * 64, table=table,
                             data_checksum="f" * 64, n_folds=3, seed=0)
    with pytest.raises(DataError) as err:
        ray_grid.check_worker_data("kolektorsdd", manifest, "node-7")
    message = str(err.value)
    assert "'kolektorsdd'" in message and "node-7" in message and expected in message and "f" * 64 in message
    assert "DEFECTLIB_DATA" in message and "defectlib data folds kolektorsdd" in message
    with pytest.raises(DataError, match="synthetic.* generate it again"):  # generated data: made anew
        ray_grid.check_worker_data("synthetic", manifest, "node-7")
    same = FoldsManifest(path=manifest.path, sha256="0" * 64, table=table, data_checksum=expected, n_folds=3, seed=0)
    assert ray_grid.check_worker_data("kolektorsdd", same, "node-7") is table


def test_fold_files_are_written_part_table_last_and_only_inside_the_run_folder(tmp_path):
    class Current:
        path = tmp_path / "run"

        def has_part(self, name):
            return (self.path / "parts" / f"{name}.csv").is_file()

    order = []
    written = ray_grid.atomic.write_bytes
    ray_grid.atomic.write_bytes = lambda path, data: (order.append(Path(path).relative_to(Current.path).as_posix()),
                                                      written(path, data))
    try:
        files = {"parts/fold1.csv": b"sample_id\n", "parts/fold1.json": b"{}", "artifacts/fold1.npz": b"x"}
        assert ray_grid.save_fold_files(Current(), 1, files) is True
        assert order[-1] == "parts/fold1.csv" and sorted(order) == sorted(files)
        assert ray_grid.save_fold_files(Current(), 1, files) is False  # saved already: nothing written
        assert len(order) == 3
    finally:
        ray_grid.atomic.write_bytes = written
    with pytest.raises(DefectlibError, match="outside the run folder"):
        ray_grid.save_fold_files(Current(), 2, {"parts/fold2.csv": b"", "../../escape": b""})
    with pytest.raises(DefectlibError, match="no parts/fold3.csv"):
        ray_grid.save_fold_files(Current(), 3, {"parts/fold3.json": b"{}"})


def test_without_ray_the_command_says_how_to_install_it(monkeypatch, capsys, isolated):
    from defectlib.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(UnavailableError, match=r"pip install defectlib\[ray\]"):
        ray_grid.require_ray()
    assert main(["grid", "run", "--profile", "smoke", "--executor", "ray", "--experiment", "seg000"]) == 2
    assert "pip install defectlib[ray]" in capsys.readouterr().err
