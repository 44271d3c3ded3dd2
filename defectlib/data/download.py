"""``defectlib data download``: fetch a dataset's official archive, verify it, unpack it.

:func:`download_dataset` streams the archive into a temporary file inside the data root,
checks its SHA-256 against the pinned value, unpacks it into a temporary folder inside the
data root, finds the dataset's top folder however deep the archive nests it, and renames that
folder into place (``<root>/KolektorSDD``, ``<root>/MagneticTile``). Every temporary file and
folder is removed whatever happens, so a failed or interrupted run never leaves a half-written
dataset behind; a folder that is already there is left alone unless ``force=True``.

Sources of the pinned archives
------------------------------
KolektorSDD
    Publisher: ViCoS lab, University of Ljubljana (https://www.vicos.si/resources/kolektorsdd/).
    URL and SHA-256 as pinned by anomalib (``src/anomalib/data/datamodules/image/kolektor.py``,
    ``DOWNLOAD_INFO``, whose ``hashsum`` is checked with ``hashlib.sha256``). The short link
    redirects to the publisher's file ``https://data.vicos.si/datasets/KSDD/KolektorSDD.zip``
    (101,831,129 bytes according to other public projects that pin the same SHA-256).
MagneticTile
    The authors' public GitHub repository ``abin24/Magnetic-tile-defect-datasets.`` (the
    trailing dot is part of the name). A branch archive (``refs/heads/master.zip``) changes
    whenever the branch moves, so the URL pins the commit
    ``cc4eb530b57b9cb7225bf76023873043ffd50655``; the SHA-256 of that commit's archive is the
    one pinned by NVIDIA's ``paidf-anomalygen``
    (``anomalygen/scripts/datasets/prepare_magnetic_tile_defect.py``). GitHub does not promise
    byte-stable archives: if the hash ever stops matching, check the content and pass
    ``--sha256`` explicitly rather than editing the pin blindly.

Neither hash was checked from this project (no network access when it was written); the
values are the published ones, and a mismatch is reported with both hashes.

When there is no hash to check against (``sha256=None`` in :data:`ARCHIVES` and none given),
the archive is downloaded and hashed but **not** unpacked: the error prints the computed
SHA-256 so it can be checked and passed with ``--sha256``.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import DataError, DownloadError

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_TMP_PREFIX = ".defectlib-"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SCHEMES = ("http", "https", "file")
_MAX_DEPTH = 4  # how deep find_dataset_top looks for the dataset's top folder


@dataclass(frozen=True)
class Archive:
    """Where a dataset's official archive lives and how it unpacks.

    Attributes
    ----------
    name
        Registry name (``kolektorsdd``, ``magnetictile``).
    url
        The official download URL.
    sha256
        Hex SHA-256 of the archive, or ``None`` if no public source states one.
    folder
        The folder under the data root the dataset is unpacked into.
    strip
        How many folders the official archive wraps the dataset's top folder in (0: the
        ``kosNN`` folders sit at the archive's top). Informational: :func:`find_dataset_top`
        locates the top folder itself, so a re-packed archive with another nesting also works.
    """

    name: str
    url: str
    sha256: str | None
    folder: str
    strip: int


_MT_COMMIT = "cc4eb530b57b9cb7225bf76023873043ffd50655"

ARCHIVES: dict[str, Archive] = {
    "kolektorsdd": Archive(
        name="kolektorsdd",
        # anomalib DOWNLOAD_INFO for Kolektor; redirects to data.vicos.si/datasets/KSDD/.
        url="https://go.vicos.si/kolektorsdd",
        sha256="65dc621693418585de9c4467d1340ea7958a6181816f0dc2883a1e8b61f9d4dc",
        folder="KolektorSDD",
        strip=0,
    ),
    "magnetictile": Archive(
        name="magnetictile",
        # GitHub archive of abin24/Magnetic-tile-defect-datasets. at a fixed commit; hash as
        # pinned by NVIDIA/paidf-anomalygen (prepare_magnetic_tile_defect.py).
        url=f"https://github.com/abin24/Magnetic-tile-defect-datasets./archive/{_MT_COMMIT}.zip",
        sha256="592b050953d1de4ffa538b93b6b91aee7268d8e59b73d4d9c92cfce187d7ce66",
        folder="MagneticTile",
        strip=1,
    ),
}


# --------------------------------------------------------------------------- public API


def download_dataset(
    name: str,
    *,
    root: str | os.PathLike,
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download, verify and unpack dataset ``name`` into ``root / ARCHIVES[name].folder``.

    Parameters
    ----------
    name
        Registry name (``kolektorsdd`` or ``magnetictile``).
    root
        The data root (``$DEFECTLIB_DATA``); created if missing.
    url
        Another address for the same archive (a mirror, or ``file:///path/archive.zip`` for a
        copy downloaded by hand). Default: the official URL.
    sha256
        The expected SHA-256. Default: the pinned one, which also applies to ``url``.
    force
        Download again and replace the folder if it already exists.
    progress
        Show a progress bar (tqdm, on stderr).
    timeout
        Seconds to wait for the server on connect and on each read.

    Returns
    -------
    pathlib.Path
        The dataset folder.

    Raises
    ------
    DataError
        Unknown ``name``, or the archive does not hold the dataset's layout.
    DownloadError
        Network failure, checksum mismatch, no checksum to verify against, or an unsafe
        archive member (absolute path or ``..``).
    """
    archive = archive_for(name)
    root = Path(root)
    target = root / archive.folder
    if target.exists() and not force:
        return target
    source = url or archive.url
    expected = _normalise_sha256(sha256) if sha256 else archive.sha256
    _check_scheme(source)
    root.mkdir(parents=True, exist_ok=True)
    tmp_file = _new_temp_file(root)
    tmp_dir: Path | None = None
    try:
        actual = _fetch(source, tmp_file, timeout=timeout, progress=progress, desc=archive.folder)
        _verify(source, expected, actual)
        tmp_dir = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX + "unpack-", dir=root))
        staging = tmp_dir / "archive"  # mkdtemp's folder is private (0700); this one is not
        staging.mkdir()
        unpack_archive(tmp_file, staging)
        tmp_file.unlink()
        top = find_dataset_top(staging, name)
        _install(top, target)
    finally:
        tmp_file.unlink(missing_ok=True)
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    logger.info("unpacked %s into %s", name, target)
    return target


def archive_for(name: str) -> Archive:
    """The :data:`ARCHIVES` entry for ``name``, or a :class:`DataError` listing known names."""
    try:
        return ARCHIVES[name]
    except KeyError:
        raise DataError(
            f"no archive to download for dataset {name!r}; known: {', '.join(sorted(ARCHIVES))}"
        ) from None


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_dataset_top(folder: str | os.PathLike, name: str) -> Path:
    """The shallowest folder under ``folder`` (itself included) holding dataset ``name``.

    KolektorSDD's top holds ``kosNN`` folders with ``PartM.jpg`` files; MagneticTile's holds
    ``MT_<Class>`` folders with an ``Imgs`` folder. Searches breadth-first, at most
    ``_MAX_DEPTH`` levels down, skipping hidden folders and ``__MACOSX``.

    Raises
    ------
    DataError
        If no folder matches; the message states the layout looked for.
    """
    is_top = _TOP_TESTS[archive_for(name).name]
    level = [Path(folder)]
    for _ in range(_MAX_DEPTH + 1):
        for candidate in level:
            if is_top(candidate):
                return candidate
        level = [child for parent in level for child in _subfolders(parent)]
    raise DataError(
        f"{folder}: the archive does not contain the {name} layout "
        f"({_LAYOUTS[name]}) within {_MAX_DEPTH} folders of its top"
    )


def unpack_archive(archive: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Unpack a zip or tar (plain, gz, bz2, xz) archive into ``dest``.

    Raises
    ------
    DownloadError
        If a member's path is absolute or climbs out with ``..``, a tar member is a link or
        a device, or the file is not a zip or tar archive.
    """
    archive, dest = Path(archive), Path(dest)
    if zipfile.is_zipfile(archive):
        _unpack_zip(archive, dest)
    elif tarfile.is_tarfile(archive):
        _unpack_tar(archive, dest)
    else:
        raise DownloadError(f"{archive.name}: not a zip or tar archive; cannot unpack it")


# --------------------------------------------------------------------------- layout tests


_LAYOUTS = {
    "kolektorsdd": "kosNN/PartM.jpg with PartM_label.bmp",
    "magnetictile": "MT_<Class>/Imgs/<name>.jpg with <name>.png",
}
_KOS = re.compile(r"^kos\d+$", re.IGNORECASE)
_PART = re.compile(r"^Part\d+\.jpg$", re.IGNORECASE)


def _subfolders(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX"))
    )


def _is_kolektor_top(folder: Path) -> bool:
    return any(
        _KOS.match(sub.name) and any(_PART.match(f.name) for f in sub.iterdir())
        for sub in _subfolders(folder)
    )


def _is_magnetic_top(folder: Path) -> bool:
    return any(
        sub.name.startswith("MT_") and (sub / "Imgs").is_dir() for sub in _subfolders(folder)
    )


_TOP_TESTS = {"kolektorsdd": _is_kolektor_top, "magnetictile": _is_magnetic_top}


# --------------------------------------------------------------------------- download steps


def _normalise_sha256(value: str) -> str:
    digest = value.strip().lower()
    if not _HEX64.match(digest):
        raise DownloadError(f"{value!r} is not a SHA-256 (64 hexadecimal digits)")
    return digest


def _check_scheme(url: str) -> None:
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme not in _SCHEMES:
        raise DownloadError(f"{url}: unsupported URL scheme {scheme!r} (use http, https or file)")


def _new_temp_file(root: Path) -> Path:
    handle, path = tempfile.mkstemp(prefix=_TMP_PREFIX + "download-", suffix=".part", dir=root)
    os.close(handle)
    return Path(path)


def _manual_route(url: str) -> str:
    folders = ", ".join(f"{a.name} -> {a.folder}" for a in ARCHIVES.values())
    return (
        f"  download it by hand (a browser) from {url}, then either unpack it into "
        f"$DEFECTLIB_DATA/<folder> ({folders}),\n"
        f"  or run again with --url file:///path/to/the/archive to verify and unpack that copy"
    )


def _fetch(url: str, dest: Path, *, timeout: float, progress: bool, desc: str) -> str:
    """Stream ``url`` into ``dest``; return the SHA-256 of what was written."""
    request = urllib.request.Request(url, headers={"User-Agent": "defectlib"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = _content_length(response)
            digest, written = _stream(response, dest, total=total, progress=progress, desc=desc)
    except urllib.error.HTTPError as err:
        raise DownloadError(
            f"download of {url} failed: HTTP {err.code} {err.reason}\n{_manual_route(url)}"
        ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"download of {url} failed: {reason}\n{_manual_route(url)}") from None
    if total is not None and written != total:
        raise DownloadError(
            f"download of {url} was cut short: {written} of {total} bytes\n{_manual_route(url)}"
        )
    return digest


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


def _stream(response, dest: Path, *, total: int | None, progress: bool, desc: str):
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    written = 0
    bar = tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress
    )
    with bar, open(dest, "wb") as out:
        for chunk in iter(lambda: response.read(_CHUNK), b""):
            out.write(chunk)
            digest.update(chunk)
            written += len(chunk)
            bar.update(len(chunk))
    return digest.hexdigest(), written


def _verify(url: str, expected: str | None, actual: str) -> None:
    if expected is None:
        raise DownloadError(
            f"no SHA-256 is pinned for {url}, so it was not unpacked.\n"
            f"  the downloaded archive has SHA-256 {actual}\n"
            f"  check it against a source you trust, then run again with --sha256 {actual}"
        )
    if actual != expected:
        raise DownloadError(
            f"checksum mismatch for {url}\n"
            f"  expected SHA-256 {expected}\n"
            f"  actual   SHA-256 {actual}\n"
            "  the file was deleted; the download may be corrupt or the archive may have changed"
        )


def _install(top: Path, target: Path) -> None:
    """Rename ``top`` to ``target``; an existing ``target`` is replaced only after that works."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX + "old-", dir=target.parent)) / "old"
        os.replace(target, old)
    try:
        os.replace(top, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old.parent, ignore_errors=True)


# --------------------------------------------------------------------------- unpacking


def _unsafe(member: str) -> bool:
    """Whether an archive member path is absolute or climbs out with ``..``."""
    posix = member.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        return True
    return ".." in PurePosixPath(posix).parts


def _unsafe_error(archive: Path, member: str) -> DownloadError:
    return DownloadError(
        f"{archive.name}: unsafe member {member!r} (absolute path or '..'); refusing to unpack"
    )


def _unpack_zip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            if _unsafe(member):
                raise _unsafe_error(archive, member)
        zf.extractall(dest)


def _unpack_tar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for member in members:
            if _unsafe(member.name):
                raise _unsafe_error(archive, member.name)
            if not (member.isfile() or member.isdir()):
                raise DownloadError(
                    f"{archive.name}: member {member.name!r} is a link or a special file; "
                    "refusing to unpack"
                )
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
            tf.extractall(dest, members=members, filter="data")
        else:
            tf.extractall(dest, members=members)
