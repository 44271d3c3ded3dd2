"""``defectlib.data.download`` against fixture archives served on 127.0.0.1 only.

No test reaches the real download URLs: every archive is built here and served by a loopback
``ThreadingHTTPServer`` on an ephemeral port, with short timeouts.
"""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from defectlib.data import DATASETS
from defectlib.data import download as dl
from defectlib.data.download import ARCHIVES, download_dataset, find_dataset_top, sha256_file
from defectlib.errors import DataError, DownloadError

TIMEOUT = 5.0


# --------------------------------------------------------------------------- fixture data


def _encode(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def kolektor_files(prefix: str = "") -> dict[str, bytes]:
    """kos01, kos02 with Part0, Part1 each; kos02/Part1 is defective."""
    rng = np.random.default_rng(0)
    files = {}
    for kos in ("kos01", "kos02"):
        for part in (0, 1):
            image = rng.integers(0, 256, size=(24, 16), dtype=np.uint8)
            mask = np.zeros((24, 16), np.uint8)
            if (kos, part) == ("kos02", 1):
                mask[5:10, 4:8] = 255
            files[f"{prefix}{kos}/Part{part}.jpg"] = _encode(".jpg", image)
            files[f"{prefix}{kos}/Part{part}_label.bmp"] = _encode(".bmp", mask)
    return files


def magnetic_files(prefix: str = "Magnetic-tile-defect-datasets.-master/") -> dict[str, bytes]:
    image = np.full((12, 10), 128, np.uint8)
    mask = np.zeros((12, 10), np.uint8)
    files = {f"{prefix}README.md": b"# Magnetic tile\n"}
    for cls, name in (("MT_Free", "a"), ("MT_Crack", "b")):
        files[f"{prefix}{cls}/Imgs/{name}.jpg"] = _encode(".jpg", image)
        files[f"{prefix}{cls}/Imgs/{name}.png"] = _encode(".png", mask)
    return files


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- loopback server


class Server:
    """Serves ``files[path] = bytes`` on 127.0.0.1 and records the paths requested."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.requests.append(self.path)
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.path in server.truncate:
                    data = data[: len(data) // 2]
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def serve(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return self.url(path)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    srv = Server()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data"


def fetch(name: str, root: Path, url: str, sha256: str | None, **kwargs) -> Path:
    kwargs.setdefault("progress", False)
    return download_dataset(name, root=root, url=url, sha256=sha256, timeout=TIMEOUT, **kwargs)


def tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- tests


def test_archives_match_the_registry():
    assert {"kolektorsdd", "magnetictile"} <= set(ARCHIVES) <= set(DATASETS)
    for name, archive in ARCHIVES.items():
        assert archive.name == name
        assert archive.folder == DATASETS[name].folder
        assert archive.url.startswith("https://")
        assert archive.sha256 is None or len(archive.sha256) == 64
        with pytest.raises(Exception):
            archive.url = "x"  # frozen


@pytest.mark.parametrize("prefix", ["", "KolektorSDD/", "outer/KolektorSDD/"])
def test_good_checksum_unpacks_kolektor(server, root, prefix):
    files = kolektor_files(prefix)
    data = make_zip(files)
    url = server.serve("/KolektorSDD.zip", data)
    folder = fetch("kolektorsdd", root, url, sha(data), progress=True)
    assert folder == root / "KolektorSDD"
    assert tree(folder) == sorted(name[len(prefix):] for name in files)
    label = folder / "kos02" / "Part1_label.bmp"
    assert label.read_bytes() == files[f"{prefix}kos02/Part1_label.bmp"]
    assert sorted(p.name for p in root.iterdir()) == ["KolektorSDD"]  # no temp leftovers
    assert server.requests == ["/KolektorSDD.zip"]


def test_pinned_hash_applies_to_another_url(server, root, monkeypatch):
    data = make_zip(kolektor_files())
    url = server.serve("/mirror.zip", data)
    pinned = dl.Archive("kolektorsdd", "https://x.invalid/a.zip", sha(data), "KolektorSDD", 0)
    monkeypatch.setitem(ARCHIVES, "kolektorsdd", pinned)
    assert fetch("kolektorsdd", root, url, None).is_dir()


def test_tar_gz_is_unpacked(server, root):
    data = make_tar_gz(kolektor_files("KolektorSDD/"))
    url = server.serve("/KolektorSDD.tar.gz", data)
    folder = fetch("kolektorsdd", root, url, sha(data))
    assert (folder / "kos01" / "Part0.jpg").is_file()


def test_unpacked_fixture_reads_with_kolektor_samples(server, root):
    try:
        from defectlib.data.kolektor import kolektor_samples
    except ImportError:
        pytest.skip("defectlib.data.kolektor.kolektor_samples is not written yet")
    data = make_zip(kolektor_files())
    folder = fetch("kolektorsdd", root, server.serve("/k.zip", data), sha(data))
    table = kolektor_samples(folder)
    assert len(table) == 4
    assert int(table["label"].sum()) == 1
    assert table.loc[table["label"] == 1, "sample_id"].tolist() == ["kos02/Part1"]


def test_wrong_checksum_names_both_hashes_and_leaves_nothing(server, root):
    data = make_zip(kolektor_files())
    url = server.serve("/KolektorSDD.zip", data)
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        fetch("kolektorsdd", root, url, wrong)
    message = str(info.value)
    assert url in message and wrong in message and sha(data) in message
    assert list(root.iterdir()) == []


def test_bad_sha256_argument_is_refused(server, root):
    url = server.serve("/k.zip", make_zip(kolektor_files()))
    with pytest.raises(DownloadError, match="not a SHA-256"):
        fetch("kolektorsdd", root, url, "abc")
    assert server.requests == []


def test_existing_folder_is_skipped(server, root):
    url = server.serve("/KolektorSDD.zip", make_zip(kolektor_files()))
    existing = root / "KolektorSDD"
    existing.mkdir(parents=True)
    (existing / "mine.txt").write_text("keep")
    assert fetch("kolektorsdd", root, url, "0" * 64) == existing
    assert server.requests == []
    assert tree(existing) == ["mine.txt"]


def test_force_downloads_again_and_replaces(server, root):
    data = make_zip(kolektor_files())
    url = server.serve("/KolektorSDD.zip", data)
    folder = fetch("kolektorsdd", root, url, sha(data))
    (folder / "stale.txt").write_text("old")
    assert fetch("kolektorsdd", root, url, sha(data), force=True) == folder
    assert len(server.requests) == 2
    assert not (folder / "stale.txt").exists()
    assert (folder / "kos01" / "Part0.jpg").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["KolektorSDD"]


def test_force_with_bad_download_keeps_the_old_folder(server, root):
    data = make_zip(kolektor_files())
    url = server.serve("/KolektorSDD.zip", data)
    folder = fetch("kolektorsdd", root, url, sha(data))
    before = tree(folder)
    with pytest.raises(DownloadError):
        fetch("kolektorsdd", root, url, "1" * 64, force=True)
    assert tree(folder) == before
    assert sorted(p.name for p in root.iterdir()) == ["KolektorSDD"]


@pytest.mark.parametrize(
    "evil", ["../evil.txt", "kos01/../../evil.txt", "/tmp/evil.txt", "..\\evil.txt"]
)
def test_zip_slip_is_refused(server, root, tmp_path, evil):
    files = kolektor_files()
    files[evil] = b"pwned"
    data = make_zip(files)
    url = server.serve("/evil.zip", data)
    with pytest.raises(DownloadError, match="unsafe member"):
        fetch("kolektorsdd", root, url, sha(data))
    assert list(root.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_tar_slip_and_links_are_refused(server, root):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        link = tarfile.TarInfo("kos01/Part0.jpg")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    data = buf.getvalue()
    url = server.serve("/link.tar.gz", data)
    with pytest.raises(DownloadError, match="link"):
        fetch("kolektorsdd", root, url, sha(data))
    assert list(root.iterdir()) == []


def test_404_names_the_url(server, root):
    url = server.url("/missing.zip")
    with pytest.raises(DownloadError) as info:
        fetch("kolektorsdd", root, url, "0" * 64)
    message = str(info.value)
    assert url in message and "404" in message
    assert "DEFECTLIB_DATA" in message  # the manual route
    assert list(root.iterdir()) == []


def test_connection_refused_names_the_url(root):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/KolektorSDD.zip"
    with pytest.raises(DownloadError) as info:
        fetch("kolektorsdd", root, url, "0" * 64)
    assert url in str(info.value)
    assert list(root.iterdir()) == []


def test_truncated_download_is_an_error(server, root):
    data = make_zip(kolektor_files())
    url = server.serve("/KolektorSDD.zip", data)
    server.truncate.add("/KolektorSDD.zip")
    with pytest.raises(DownloadError) as info:
        fetch("kolektorsdd", root, url, sha(data))
    assert url in str(info.value)
    assert list(root.iterdir()) == []


def test_magnetic_tile_nested_top_is_found(server, root):
    files = magnetic_files()
    data = make_zip(files)
    url = server.serve("/master.zip", data)
    folder = fetch("magnetictile", root, url, sha(data))
    assert folder == root / "MagneticTile"
    assert (folder / "MT_Free" / "Imgs" / "a.jpg").is_file()
    assert (folder / "MT_Free" / "Imgs" / "a.png").is_file()
    assert (folder / "MT_Crack" / "Imgs" / "b.jpg").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["MagneticTile"]


def test_no_pinned_hash_refuses_and_prints_the_computed_one(server, root, monkeypatch):
    entry = ARCHIVES["magnetictile"]
    unpinned = dl.Archive(entry.name, entry.url, None, entry.folder, entry.strip)
    monkeypatch.setitem(ARCHIVES, "magnetictile", unpinned)
    data = make_zip(magnetic_files())
    url = server.serve("/master.zip", data)
    with pytest.raises(DownloadError) as info:
        fetch("magnetictile", root, url, None)
    assert sha(data) in str(info.value) and "--sha256" in str(info.value)
    assert list(root.iterdir()) == []
    assert fetch("magnetictile", root, url, sha(data).upper()).is_dir()


def test_archive_without_the_layout_is_a_data_error(server, root):
    data = make_zip({"something/else.txt": b"x"})
    url = server.serve("/other.zip", data)
    with pytest.raises(DataError, match="kosNN"):
        fetch("kolektorsdd", root, url, sha(data))
    assert list(root.iterdir()) == []


def test_not_an_archive_is_refused(server, root):
    data = b"<html>a login page</html>"
    url = server.serve("/page.html", data)
    with pytest.raises(DownloadError, match="not a zip or tar"):
        fetch("kolektorsdd", root, url, sha(data))
    assert list(root.iterdir()) == []


def test_unknown_name_lists_known_names(root):
    with pytest.raises(DataError) as info:
        download_dataset("mvtec", root=root)
    assert "kolektorsdd" in str(info.value) and "magnetictile" in str(info.value)
    assert not root.exists()


def test_unsupported_scheme_is_refused(root):
    with pytest.raises(DownloadError, match="scheme"):
        download_dataset("kolektorsdd", root=root, url="ftp://127.0.0.1/a.zip", sha256="0" * 64)


def test_file_url_for_a_manual_download(root, tmp_path):
    data = make_zip(kolektor_files())
    archive = tmp_path / "KolektorSDD.zip"
    archive.write_bytes(data)
    folder = fetch("kolektorsdd", root, archive.as_uri(), sha(data))
    assert (folder / "kos02" / "Part1.jpg").is_file()
    assert archive.is_file()  # the user's copy is left alone


def test_find_dataset_top_is_pure_and_skips_macosx(tmp_path):
    for rel, data in kolektor_files("wrap/inner/").items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (tmp_path / "__MACOSX" / "kos01").mkdir(parents=True)
    (tmp_path / "__MACOSX" / "kos01" / "Part0.jpg").write_bytes(b"")
    before = tree(tmp_path)
    assert find_dataset_top(tmp_path, "kolektorsdd") == tmp_path / "wrap" / "inner"
    assert tree(tmp_path) == before
    with pytest.raises(DataError, match="MT_"):
        find_dataset_top(tmp_path, "magnetictile")


def test_sha256_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"defect" * 1000)
    assert sha256_file(path) == sha(b"defect" * 1000)
