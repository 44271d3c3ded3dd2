"""A deterministic synthetic surface-defect dataset.

What it is for
--------------
* **Tests**: a small dataset with exact pixel masks that any machine can generate in well
  under a second, so the readers, folds, training loop and metrics can be exercised without
  downloading KolektorSDD or MagneticTile.
* **The ``smoke`` profile**: the whole pipeline, end to end, on data that is always there.
* **A controlled study** (later): because every defect's kind, size and contrast are
  parameters, detection performance can be measured as a function of defect size and contrast,
  which the real datasets cannot offer.

What it is not
--------------
It is **not a model of any real surface**. The background is low-pass-filtered noise with
faint machining grooves and a slow illumination gradient, chosen only to look roughly like a
machined metal part; the defects are thin random-walk "cracks" and irregular elliptical
"blobs" added as a constant gray-level offset. Results on it say nothing, by themselves,
about KolektorSDD or MagneticTile.

How it is generated
-------------------
* Image ``i`` of a :class:`SyntheticSpec` is drawn from its own generator,
  ``np.random.default_rng([spec.seed, i])``: the background first, then (for a defective
  image) the defect's kind, size, contrast, thickness and position. Any sample can therefore
  be regenerated alone with :func:`generate_sample`, and the background of image ``i`` does
  not depend on whether it is defective, on the defect parameters, or on ``n_images``.
* Which images are defective: a seeded permutation of ``range(n_images)`` (drawn from
  ``np.random.default_rng([seed, n_images, 0x6C616273])``) whose first
  ``floor(n_images * defect_fraction + 0.5)`` entries are defective (see
  :func:`defective_indices`). For a fixed seed and ``n_images`` the defective sets are nested:
  raising ``defect_fraction`` only adds defective images.
* Consecutive images form physical "parts": image ``i`` belongs to group
  ``part{i // images_per_group:03d}``, so grouped folds can be tested.
* The mask is exactly the set of pixels the defect changed (no antialiasing).

On disk (:func:`synthetic_samples`)::

    <root>/<key>/img_0000.png         grayscale image
    <root>/<key>/img_0000_mask.png    mask, 0 / 255
    <root>/<key>/spec.json            the spec, the key, the generator and library versions
    <root>/<key>/samples.json         per-sample label, group, kind, size, contrast, thickness, area

``key`` is a short hash of the spec and of the generator version, so different specs never
share a folder. The folder is generated in a temporary sibling and renamed into place, so an
interrupted generation never leaves a half-written dataset; a complete folder is reused.
Files are byte-identical across runs with the same library versions on the same platform
(``spec.json`` records the numpy and OpenCV versions used).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, NamedTuple

import cv2
import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from ..paths import cache_root
from .samples import make_table

#: Bump whenever the generated pixels change for a given spec: it is part of the cache key.
GENERATOR_VERSION = 1

#: Background gray levels are clipped to this range, so a defect always changes its pixels.
SURFACE_RANGE: tuple[int, int] = (12, 243)

_LABEL_STREAM = 0x6C616273  # "labs": a third entropy word, so never equal to [seed, index]
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


# --------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SyntheticSpec:
    """What to generate: size and number of images, defect kinds and parameter ranges.

    All ranges are closed ``(low, high)`` intervals sampled uniformly per defective image
    (``crack_thickness`` over integers). A range with ``low == high`` fixes the parameter,
    which is how a controlled size or contrast study pins one factor.

    Parameters
    ----------
    n_images
        Number of images.
    defect_fraction
        Fraction of defective images; ``floor(n_images * defect_fraction + 0.5)`` of them are.
    height, width
        Image size in pixels (tall strips by default, like KolektorSDD's).
    kinds
        Defect kinds to draw from, uniformly; known kinds are ``"crack"`` and ``"blob"``.
    crack_length
        Length in pixels of a crack's polyline (the defect *size* of a crack).
    blob_radius
        Mean radius in pixels of a blob (the defect *size* of a blob); at most half the
        smaller image side.
    contrast
        Gray-level offset added to the defect's pixels: negative = darker than the
        background, positive = brighter. Both ends must have the same sign (the range may not
        contain 0, which would be an invisible defect); the sampled value is rounded to an
        integer and results are clipped to 0..255.
    crack_thickness
        Line thickness of a crack in pixels (integers).
    images_per_group
        Consecutive images that share a ``group`` (one physical part).
    seed
        Non-negative integer seed of the whole dataset.

    Raises
    ------
    ValueError
        (:class:`~defectlib.errors.ConfigError`) naming the field, if a field is invalid.

    Examples
    --------
    >>> spec = SyntheticSpec(n_images=10, defect_fraction=0.25)
    >>> spec.n_defective, spec.height, spec.width, spec.kinds
    (3, 128, 64, ('crack', 'blob'))
    >>> SyntheticSpec(contrast=(-10, 10))
    Traceback (most recent call last):
    ...
    defectlib.errors.ConfigError: SyntheticSpec.contrast: the range (-10.0, 10.0) contains 0; give one sign, e.g. (-60, -25) for dark defects or (25, 60) for bright ones
    """

    n_images: int = 48
    defect_fraction: float = 0.5
    height: int = 128
    width: int = 64
    kinds: tuple[str, ...] = ("crack", "blob")
    crack_length: tuple[float, float] = (16.0, 48.0)
    blob_radius: tuple[float, float] = (3.0, 9.0)
    contrast: tuple[float, float] = (-60.0, -25.0)
    crack_thickness: tuple[int, int] = (1, 3)
    images_per_group: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        def set_(name: str, value) -> None:  # the dataclass is frozen; normalise in place
            object.__setattr__(self, name, value)

        set_("n_images", _int_field("n_images", self.n_images, minimum=1))
        set_("height", _int_field("height", self.height, minimum=16))
        set_("width", _int_field("width", self.width, minimum=16))
        set_("images_per_group", _int_field("images_per_group", self.images_per_group, minimum=1))
        set_("seed", _int_field("seed", self.seed, minimum=0))

        fraction = self.defect_fraction
        if not isinstance(fraction, numbers.Real) or isinstance(fraction, bool):
            raise ConfigError(f"SyntheticSpec.defect_fraction: expected a number, got {fraction!r}")
        if not 0.0 <= float(fraction) <= 1.0:
            raise ConfigError(f"SyntheticSpec.defect_fraction: must be in [0, 1], got {fraction!r}")
        set_("defect_fraction", float(fraction))

        kinds = self.kinds
        if isinstance(kinds, str) or not _is_sequence(kinds):
            raise ConfigError(
                f"SyntheticSpec.kinds: expected a tuple of kind names, got {kinds!r}; "
                f"known kinds: {', '.join(DEFECT_KINDS)}"
            )
        kinds = tuple(kinds)
        if not kinds:
            raise ConfigError(f"SyntheticSpec.kinds: give at least one of {', '.join(DEFECT_KINDS)}")
        unknown = [k for k in kinds if k not in DEFECT_KINDS]
        if unknown:
            raise ConfigError(
                f"SyntheticSpec.kinds: unknown kind(s) {unknown}; known kinds: {', '.join(DEFECT_KINDS)}"
            )
        if len(set(kinds)) != len(kinds):
            raise ConfigError(f"SyntheticSpec.kinds: duplicate kinds in {kinds}")
        set_("kinds", kinds)

        half_side = min(self.height, self.width) / 2
        set_("crack_length", _range_field("crack_length", self.crack_length, minimum=2.0))
        set_("blob_radius", _range_field("blob_radius", self.blob_radius, minimum=1.0, maximum=half_side))
        set_("crack_thickness", _range_field("crack_thickness", self.crack_thickness, minimum=1,
                                             maximum=half_side / 2, integer=True))
        contrast = _range_field("contrast", self.contrast, minimum=-255.0, maximum=255.0)
        if contrast[0] <= 0.0 <= contrast[1]:
            raise ConfigError(
                f"SyntheticSpec.contrast: the range {contrast} contains 0; give one sign, e.g. "
                "(-60, -25) for dark defects or (25, 60) for bright ones"
            )
        if min(abs(contrast[0]), abs(contrast[1])) < 1.0:
            raise ConfigError(
                f"SyntheticSpec.contrast: |contrast| must be at least 1 gray level, got {contrast}"
            )
        set_("contrast", contrast)

    @property
    def n_defective(self) -> int:
        """Number of defective images, ``floor(n_images * defect_fraction + 0.5)``."""
        return int(math.floor(self.n_images * self.defect_fraction + 0.5))

    def size_range(self, kind: str) -> tuple[float, float]:
        """The ``(low, high)`` size range of defect ``kind`` (crack length or blob radius)."""
        return getattr(self, _defect_kind(kind).size_field)

    def key(self) -> str:
        """Short hash of the spec and :data:`GENERATOR_VERSION`: the dataset's folder name."""
        payload = json.dumps(
            {"generator_version": GENERATOR_VERSION, "spec": asdict(self)}, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _is_sequence(value) -> bool:
    return isinstance(value, (tuple, list))


def _int_field(name: str, value, *, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ConfigError(f"SyntheticSpec.{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"SyntheticSpec.{name}: must be at least {minimum}, got {value!r}")
    return int(value)


def _range_field(name: str, value, *, minimum: float, maximum: float | None = None,
                 integer: bool = False) -> tuple:
    if not _is_sequence(value) or len(value) != 2:
        raise ConfigError(f"SyntheticSpec.{name}: expected a (low, high) pair, got {value!r}")
    kind = numbers.Integral if integer else numbers.Real
    if any(not isinstance(v, kind) or isinstance(v, bool) for v in value):
        what = "integers" if integer else "numbers"
        raise ConfigError(f"SyntheticSpec.{name}: expected two {what}, got {value!r}")
    low, high = (int(v) for v in value) if integer else (float(v) for v in value)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(f"SyntheticSpec.{name}: bounds must be finite, got {value!r}")
    if low > high:
        raise ConfigError(f"SyntheticSpec.{name}: low > high in {value!r}")
    if low < minimum:
        raise ConfigError(f"SyntheticSpec.{name}: must be at least {minimum}, got {value!r}")
    if maximum is not None and high > maximum:
        raise ConfigError(f"SyntheticSpec.{name}: must be at most {maximum:g}, got {value!r}")
    return (low, high)


# --------------------------------------------------------------------------------------
# Background
# --------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation (float32)."""
    noise = rng.standard_normal(shape).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    return smooth / max(float(smooth.std()), 1e-6)


def make_surface(rng: np.random.Generator, *, height: int, width: int) -> np.ndarray:
    """A textured grayscale background that looks roughly like a machined metal surface.

    The sum of a mean gray level, fine grain and coarse mottling (low-pass-filtered noise),
    faint parallel grooves (a smoothed 1-D profile plus a periodic tool mark, near-horizontal
    or near-vertical), and a slow linear illumination gradient; clipped to
    :data:`SURFACE_RANGE` so that it is never saturated. Always draws the same amount of
    random numbers for a given size.

    Parameters
    ----------
    rng
        The random generator (consumed).
    height, width
        Image size in pixels.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(height, width)``.

    Examples
    --------
    >>> s = make_surface(np.random.default_rng(0), height=128, width=64)
    >>> s.shape, s.dtype, bool(s.min() >= SURFACE_RANGE[0] and s.max() <= SURFACE_RANGE[1])
    ((128, 64), dtype('uint8'), True)
    """
    shape = (height, width)
    base = rng.uniform(95.0, 150.0)
    grain = 3.0 * _smooth_noise(rng, shape, 0.7)
    mottle = rng.uniform(3.0, 7.0) * _smooth_noise(rng, shape, 7.0)

    # Grooves: a profile along u, the coordinate across the grooves.
    vertical = rng.random() < 0.5
    angle = (math.pi / 2 if vertical else 0.0) + rng.uniform(-0.08, 0.08)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u = yy * math.cos(angle) + xx * math.sin(angle)
    u -= u.min()
    n_u = int(math.ceil(float(u.max()))) + 2
    profile_noise = rng.standard_normal(n_u).astype(np.float32)
    profile = cv2.GaussianBlur(profile_noise.reshape(1, -1), (0, 0), sigmaX=1.0,
                               borderType=cv2.BORDER_REFLECT).ravel()
    profile /= max(float(profile.std()), 1e-6)
    period = rng.uniform(3.0, 9.0)
    phase = rng.uniform(0.0, 2 * math.pi)
    groove_amp = rng.uniform(2.0, 5.0)
    mark_amp = rng.uniform(1.0, 3.0)
    grooves = groove_amp * np.interp(u, np.arange(n_u, dtype=np.float32), profile).astype(np.float32)
    grooves += mark_amp * np.sin(2 * math.pi * u / period + phase).astype(np.float32)

    gx, gy = rng.uniform(-15.0, 15.0, size=2)
    light = gx * (xx / width - 0.5) + gy * (yy / height - 0.5)

    surface = base + grain + mottle + grooves + light
    low, high = SURFACE_RANGE
    return np.clip(np.rint(surface), low, high).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Defects
# --------------------------------------------------------------------------------------


def _draw_crack(canvas: np.ndarray, rng: np.random.Generator, size: float, thickness: int) -> None:
    """A random-walk polyline of total length ``size``, reflected at the image borders."""
    height, width = canvas.shape
    n_steps = max(1, int(round(size / 3.0)))
    step = size / n_steps
    margin = min(thickness, (min(height, width) - 1) / 2)
    lo = np.array([margin, margin])
    hi = np.array([width - 1 - margin, height - 1 - margin], dtype=float)
    point = rng.uniform(lo, hi)
    theta = rng.uniform(0.0, 2 * math.pi)
    turns = rng.normal(0.0, 0.35, size=n_steps)
    points = [point.copy()]
    for turn in turns:
        theta += turn
        direction = np.array([math.cos(theta), math.sin(theta)])
        point = point + step * direction
        for axis in (0, 1):  # reflect at the borders, keeping the length
            if point[axis] < lo[axis] or point[axis] > hi[axis]:
                bound = lo[axis] if point[axis] < lo[axis] else hi[axis]
                point[axis] = min(max(2 * bound - point[axis], lo[axis]), hi[axis])
                direction[axis] = -direction[axis]
                theta = math.atan2(direction[1], direction[0])
        points.append(point.copy())
    polyline = np.rint(np.array(points)).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [polyline], isClosed=False, color=1, thickness=int(thickness),
                  lineType=cv2.LINE_8)


def _draw_blob(canvas: np.ndarray, rng: np.random.Generator, size: float, thickness: int) -> None:
    """An irregular ellipse of mean radius ``size`` (area about pi * size**2); ignores thickness."""
    del thickness
    height, width = canvas.shape
    n_vertices = 32
    angles = np.linspace(0.0, 2 * math.pi, n_vertices, endpoint=False)
    wobble = np.ones(n_vertices)
    for harmonic in (2, 3, 4, 5):
        wobble += rng.uniform(0.0, 0.25 / harmonic) * np.cos(harmonic * angles + rng.uniform(0, 2 * math.pi))
    elongation = rng.uniform(0.55, 1.0)  # minor / major axis
    rx, ry = size / math.sqrt(elongation), size * math.sqrt(elongation)
    rotation = rng.uniform(0.0, math.pi)
    x = rx * wobble * np.cos(angles)
    y = ry * wobble * np.sin(angles)
    xr = x * math.cos(rotation) - y * math.sin(rotation)
    yr = x * math.sin(rotation) + y * math.cos(rotation)
    # Keep the blob's centre far enough from the borders that it is (almost always) whole.
    reach_x, reach_y = float(np.abs(xr).max()), float(np.abs(yr).max())
    cx = rng.uniform(min(reach_x, (width - 1) / 2), max(width - 1 - reach_x, (width - 1) / 2))
    cy = rng.uniform(min(reach_y, (height - 1) / 2), max(height - 1 - reach_y, (height - 1) / 2))
    polygon = np.rint(np.stack([cx + xr, cy + yr], axis=1)).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(canvas, [polygon], color=1, lineType=cv2.LINE_8)


class _DefectKind(NamedTuple):
    draw: Callable[[np.ndarray, np.random.Generator, float, int], None]
    size_field: str  # the SyntheticSpec field holding this kind's size range
    size_meaning: str


#: Defect kind -> how it is drawn and which spec field is its size. Adding a kind is adding
#: an entry (and a size-range field to :class:`SyntheticSpec`).
DEFECT_KINDS: dict[str, _DefectKind] = {
    "crack": _DefectKind(_draw_crack, "crack_length", "polyline length in pixels"),
    "blob": _DefectKind(_draw_blob, "blob_radius", "mean radius in pixels"),
}


def _defect_kind(kind: str) -> _DefectKind:
    try:
        return DEFECT_KINDS[kind]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown defect kind {kind!r}; known kinds: {', '.join(DEFECT_KINDS)}") from None


def add_defect(image: np.ndarray, rng: np.random.Generator, *, kind: str, size: float,
               contrast: float, thickness: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Add one defect to a copy of ``image``; return the new image and its exact mask.

    Parameters
    ----------
    image
        2-D ``uint8`` grayscale image (not modified).
    rng
        The random generator for the defect's shape and position (consumed).
    kind
        ``"crack"``: a thin random-walk polyline of length ``size`` pixels (reflected at the
        borders, drawn without antialiasing); ``"blob"``: an irregular ellipse of mean radius
        ``size`` pixels. See :data:`DEFECT_KINDS`.
    size
        Crack length or blob radius in pixels.
    contrast
        Gray levels added inside the defect (rounded to an integer; negative = darker);
        results are clipped to 0..255.
    thickness
        Crack line thickness in pixels (ignored for blobs).

    Returns
    -------
    image : numpy.ndarray
        The defective image, ``uint8``, the shape of ``image``.
    mask : numpy.ndarray
        ``uint8`` 0/1 array: 1 exactly where the defect changed the image.

    Raises
    ------
    ValueError
        (:class:`~defectlib.errors.ConfigError`) for an unknown kind, listing the known ones.

    Examples
    --------
    >>> flat = np.full((32, 32), 100, np.uint8)
    >>> out, mask = add_defect(flat, np.random.default_rng(0), kind="blob", size=5, contrast=-40)
    >>> bool(((out != flat) == (mask == 1)).all()), set(np.unique(out[mask == 1]).tolist())
    (True, {60})
    """
    draw = _defect_kind(kind).draw
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"image must be a 2-D uint8 array, got {image.dtype} of shape {image.shape}")
    canvas = np.zeros(image.shape, np.uint8)
    draw(canvas, rng, float(size), int(thickness))
    offset = int(round(contrast))
    out = image.astype(np.int16)
    out[canvas == 1] += offset
    out = np.clip(out, 0, 255).astype(np.uint8)
    mask = (out != image).astype(np.uint8)  # saturated pixels that could not change are no defect
    return out, mask


# --------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def defective_indices(spec: SyntheticSpec) -> frozenset[int]:
    """The indices of the defective images of ``spec`` (see the module docstring).

    Examples
    --------
    >>> sorted(defective_indices(SyntheticSpec(n_images=8, defect_fraction=0.5)))
    [1, 4, 5, 7]
    """
    order = np.random.default_rng([spec.seed, spec.n_images, _LABEL_STREAM]).permutation(spec.n_images)
    return frozenset(int(i) for i in order[: spec.n_defective])


def sample_id(index: int) -> str:
    """The sample id (and file stem) of image ``index``: ``img_0007``."""
    return f"img_{index:04d}"


def sample_group(spec: SyntheticSpec, index: int) -> str:
    """The group (physical part) of image ``index``: ``part001``."""
    return f"part{index // spec.images_per_group:03d}"


def generate_sample(spec: SyntheticSpec, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Generate image ``index`` of ``spec`` alone, from ``default_rng([spec.seed, index])``.

    Returns
    -------
    image : numpy.ndarray
        ``uint8`` array of shape ``(spec.height, spec.width)``.
    mask : numpy.ndarray
        ``uint8`` 0/1 array of the same shape; all zeros for a defect-free image.
    meta : dict
        ``index``, ``label`` (0/1), ``kind`` (``None`` when defect-free), ``size`` (crack
        length or blob radius), ``contrast`` (the integer gray-level offset) and
        ``thickness`` (cracks only); unused entries are ``None``.

    Examples
    --------
    >>> spec = SyntheticSpec(n_images=8, kinds=("blob",))
    >>> image, mask, meta = generate_sample(spec, 1)
    >>> image.shape, meta["label"], meta["kind"], int(mask.sum()) > 0
    ((128, 64), 1, 'blob', True)
    >>> generate_sample(spec, 0)[2]["kind"] is None
    True
    """
    if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not 0 <= index < spec.n_images:
        raise IndexError(f"sample index {index!r} out of range for n_images={spec.n_images}")
    index = int(index)
    rng = np.random.default_rng([spec.seed, index])
    image = make_surface(rng, height=spec.height, width=spec.width)
    meta = {"index": index, "label": 0, "kind": None, "size": None, "contrast": None, "thickness": None}
    if index not in defective_indices(spec):
        return image, np.zeros_like(image), meta
    kind = spec.kinds[int(rng.integers(len(spec.kinds)))]
    size = float(rng.uniform(*spec.size_range(kind)))
    contrast = int(round(float(rng.uniform(*spec.contrast))))
    thickness = int(rng.integers(spec.crack_thickness[0], spec.crack_thickness[1] + 1))
    image, mask = add_defect(image, rng, kind=kind, size=size, contrast=contrast, thickness=thickness)
    meta.update(label=1, kind=kind, size=size, contrast=contrast,
                thickness=thickness if kind == "crack" else None)
    return image, mask, meta


# --------------------------------------------------------------------------------------
# On disk
# --------------------------------------------------------------------------------------


def _write_png(path: Path, array: np.ndarray) -> None:
    """Write one PNG (the single place files are written; tests interrupt it)."""
    if not cv2.imwrite(str(path), array, _PNG_PARAMS):
        raise DataError(f"{path}: cannot write the PNG file")


def _write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")


def _generate_into(folder: Path, spec: SyntheticSpec, key: str) -> list[dict]:
    """Write all images, masks, ``spec.json`` and, last, ``samples.json`` into ``folder``."""
    records = []
    for index in range(spec.n_images):
        image, mask, meta = generate_sample(spec, index)
        sid = sample_id(index)
        _write_png(folder / f"{sid}.png", image)
        _write_png(folder / f"{sid}_mask.png", mask * np.uint8(255))
        records.append({
            "sample_id": sid,
            "group": sample_group(spec, index),
            "defect_class": meta["kind"] or "good",
            "defect_area": int(mask.sum()),
            **meta,
        })
    _write_json(folder / "spec.json", {
        "key": key,
        "generator_version": GENERATOR_VERSION,
        "spec": asdict(spec),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "defective_indices": sorted(defective_indices(spec)),
    })
    _write_json(folder / "samples.json", records)
    return records


def _read_complete(folder: Path, key: str, spec: SyntheticSpec) -> list[dict] | None:
    """The records of a complete dataset folder, or ``None`` if it is missing or incomplete."""
    try:
        info = json.loads((folder / "spec.json").read_text())
        records = json.loads((folder / "samples.json").read_text())
    except (OSError, ValueError):
        return None
    if info.get("key") != key or info.get("spec") != json.loads(json.dumps(asdict(spec))):
        return None
    if not isinstance(records, list) or len(records) != spec.n_images:
        return None
    for record in records:
        sid = record.get("sample_id")
        if not isinstance(sid, str) or not (folder / f"{sid}.png").is_file() \
                or not (folder / f"{sid}_mask.png").is_file():
            return None
    return records


def _table(folder: Path, spec: SyntheticSpec, records: list[dict]) -> pd.DataFrame:
    rows = [{
        "sample_id": r["sample_id"],
        "dataset": "synthetic",
        "image_path": str(folder / f"{r['sample_id']}.png"),
        "mask_path": str(folder / f"{r['sample_id']}_mask.png"),
        "label": int(r["label"]),
        "group": r["group"],
        "defect_class": r["defect_class"],
        "defect_area": int(r["defect_area"]),
        "height": spec.height,
        "width": spec.width,
    } for r in records]
    return make_table(rows)


def _publish(tmp: Path, final: Path, key: str, spec: SyntheticSpec) -> None:
    """Rename the finished ``tmp`` folder to ``final``, replacing an incomplete one."""
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0o700
    try:
        os.rename(tmp, final)
        return
    except OSError:
        if not final.exists():
            raise
    if _read_complete(final, key, spec) is not None:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return
    stale = Path(tempfile.mkdtemp(prefix=f".{key}.stale-", dir=final.parent))
    os.rename(final, stale / "old")
    os.rename(tmp, final)
    shutil.rmtree(stale, ignore_errors=True)


def spec_folder(spec: SyntheticSpec = SyntheticSpec(), root: str | Path | None = None) -> Path:
    """Where :func:`synthetic_samples` puts ``spec``'s dataset: ``<root>/<spec.key()>``."""
    base = Path(root).expanduser() if root is not None else cache_root() / "synthetic"
    return base.absolute() / spec.key()


def synthetic_samples(root: str | Path | None = None, *, spec: SyntheticSpec = SyntheticSpec()
                      ) -> pd.DataFrame:
    """Generate (or reuse) the synthetic dataset of ``spec`` and return its sample table.

    Parameters
    ----------
    root
        The folder that holds one sub-folder per spec; default ``cache_root() / "synthetic"``
        (``$DEFECTLIB_CACHE/synthetic``).
    spec
        What to generate.

    Returns
    -------
    pandas.DataFrame
        The sample table (:mod:`defectlib.data.samples`): ``dataset = "synthetic"``,
        ``sample_id = img_0000``..., ``group = part000``..., ``defect_class`` = the defect kind
        or ``"good"``, ``defect_area`` = mask pixel count. Per-sample generation parameters are
        in ``samples.json`` beside the images.

    Notes
    -----
    A complete folder ``<root>/<spec.key()>`` is reused as is. Otherwise the dataset is
    generated into a hidden temporary sibling (``.<key>.tmp-*``) and renamed into place, so an
    interrupted generation leaves no partial dataset (a process killed outright may leave its
    hidden temporary folder behind; it is never read and can be deleted).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as root:
    ...     table = synthetic_samples(root, spec=SyntheticSpec(n_images=6))
    >>> len(table), int(table["label"].sum()), sorted(table["group"].unique())
    (6, 3, ['part000', 'part001'])
    >>> table[["sample_id", "dataset", "defect_class"]].iloc[0].tolist()
    ['img_0000', 'synthetic', 'blob']
    """
    if not isinstance(spec, SyntheticSpec):
        raise ConfigError(f"spec must be a SyntheticSpec, got {type(spec).__name__}")
    final = spec_folder(spec, root)
    key = final.name
    records = _read_complete(final, key, spec)
    if records is None:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=final.parent))
        try:
            _generate_into(tmp, spec, key)
            _publish(tmp, final, key, spec)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        records = _read_complete(final, key, spec)
        if records is None:
            raise DataError(f"{final}: synthetic dataset is incomplete right after generating it")
    return _table(final, spec, records)


__all__ = [
    "DEFECT_KINDS",
    "GENERATOR_VERSION",
    "SURFACE_RANGE",
    "SyntheticSpec",
    "add_defect",
    "spec_folder",
    "defective_indices",
    "generate_sample",
    "make_surface",
    "sample_group",
    "sample_id",
    "synthetic_samples",
]
