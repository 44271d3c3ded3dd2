"""Pixel-level metrics for segmentation masks.

Every function takes numpy arrays (a single ``(H, W)`` mask or a stack ``(N, H, W)``)
and returns a ``dict`` of plain Python ``int`` / ``float`` values.

The metrics are *micro-averaged*: true/false positives and negatives are counted over
all pixels given, and precision, recall and F1 are computed once from those totals.
To evaluate images of different sizes without holding them all in memory, stream them
through :func:`accumulate_pixel_counts` and then call :func:`counts_to_prf`.

Counting uses numpy directly rather than :func:`sklearn.metrics.confusion_matrix`,
which is far slower on millions of pixels; the tests check that the two agree.
"""

from collections.abc import Iterable, Mapping
import math
import numbers

import numpy as np

__all__ = [
    "pixel_counts",
    "pixel_precision_recall_f1",
    "accumulate_pixel_counts",
    "counts_to_prf",
]

_COUNT_KEYS = ("tp", "fp", "fn", "tn")


def _check_threshold(threshold):
    """Return ``threshold`` as a float, or raise ValueError if it is not a real number."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise ValueError(f"threshold must be a real number, got {threshold!r}")
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("threshold must not be NaN")
    return threshold


def _check_zero_division(zero_division):
    """Return ``zero_division`` as a float in [0, 1] or NaN, else raise ValueError."""
    if isinstance(zero_division, bool) or not isinstance(zero_division, numbers.Real):
        raise ValueError(
            f"zero_division must be a number in [0, 1] or nan, got {zero_division!r}"
        )
    zero_division = float(zero_division)
    if not (math.isnan(zero_division) or 0.0 <= zero_division <= 1.0):
        raise ValueError(
            f"zero_division must be a number in [0, 1] or nan, got {zero_division!r}"
        )
    return zero_division


def _binarize_pair(pred, target, threshold):
    """Validate one (pred, target) pair and return two boolean arrays of equal shape."""
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got pred {pred.shape} "
            f"and target {target.shape}"
        )
    if pred.ndim not in (2, 3):
        raise ValueError(
            f"masks must be 2-D (H, W) or a 3-D stack (N, H, W), got shape {pred.shape}"
            " (squeeze any channel axis first)"
        )
    if pred.size == 0:
        raise ValueError(f"masks are empty (shape {pred.shape})")
    for name, arr in (("pred", pred), ("target", target)):
        if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.number)):
            raise ValueError(f"{name} must be numeric or boolean, got dtype {arr.dtype}")
        if np.issubdtype(arr.dtype, np.inexact) and np.isnan(arr).any():
            raise ValueError(f"{name} contains NaN")
    return pred >= threshold, target != 0


def pixel_counts(pred, target, *, threshold=0.5):
    """Count true/false positives and negatives over all pixels.

    Parameters
    ----------
    pred : array_like, shape (H, W) or (N, H, W)
        Predicted defect probabilities (or a binary mask). A pixel is predicted
        defective when ``pred >= threshold``.
    target : array_like, same shape as `pred`
        Ground-truth mask; any nonzero value is a defect pixel.
    threshold : float, optional
        Decision threshold applied to `pred` (inclusive).

    Returns
    -------
    counts : dict
        ``{"tp": int, "fp": int, "fn": int, "tn": int}``, summed over every pixel.

    Raises
    ------
    ValueError
        If the shapes differ (the message names both), the masks are not 2-D or 3-D,
        are empty, are not numeric, or contain NaN.

    Examples
    --------
    >>> import numpy as np
    >>> pred = np.array([[0.9, 0.2], [0.6, 0.1]])
    >>> target = np.array([[1, 1], [0, 0]])
    >>> pixel_counts(pred, target)
    {'tp': 1, 'fp': 1, 'fn': 1, 'tn': 1}
    >>> pixel_counts(pred, target, threshold=0.95)
    {'tp': 0, 'fp': 0, 'fn': 2, 'tn': 2}
    """
    threshold = _check_threshold(threshold)
    p, t = _binarize_pair(pred, target, threshold)
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    tn = int(p.size) - tp - fp - fn
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def counts_to_prf(counts, *, zero_division=0.0):
    """Precision, recall and F1 from confusion counts.

    ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)`` and
    ``F1 = 2 TP / (2 TP + FP + FN)``, which equals ``2 P R / (P + R)`` whenever both
    are defined. These are the standard definitions, the same as
    :func:`sklearn.metrics.precision_recall_fscore_support` (binary).

    Parameters
    ----------
    counts : mapping
        Non-negative integer counts with keys ``"tp"``, ``"fp"``, ``"fn"``; ``"tn"``
        is optional (not needed for these metrics, passed through when present).
    zero_division : float, optional
        Value used where a ratio is undefined: precision when ``TP + FP == 0`` (no
        positives predicted), recall when ``TP + FN == 0`` (no positives present), and
        F1 when ``TP + FP + FN == 0`` (nothing to get right or wrong). Must lie in
        [0, 1] or be ``nan``. As in scikit-learn, F1 is ``0.0`` (not `zero_division`)
        when ``TP == 0`` but ``FP + FN > 0``, even if precision or recall fell back to
        `zero_division`.

    Returns
    -------
    result : dict
        ``precision``, ``recall``, ``f1`` (float) followed by the counts (int).

    Raises
    ------
    ValueError
        If a required key is missing, a count is negative or not an integer, or
        `zero_division` is out of range.

    Examples
    --------
    >>> counts_to_prf({"tp": 3, "fp": 1, "fn": 3, "tn": 9})
    {'precision': 0.75, 'recall': 0.5, 'f1': 0.6, 'tp': 3, 'fp': 1, 'fn': 3, 'tn': 9}
    >>> counts_to_prf({"tp": 0, "fp": 0, "fn": 0}, zero_division=1.0)
    {'precision': 1.0, 'recall': 1.0, 'f1': 1.0, 'tp': 0, 'fp': 0, 'fn': 0}
    """
    zero_division = _check_zero_division(zero_division)
    if not isinstance(counts, Mapping):
        raise ValueError(f"counts must be a mapping, got {type(counts).__name__}")
    clean = {}
    for key in _COUNT_KEYS:
        if key not in counts:
            if key == "tn":
                continue
            raise ValueError(f"counts is missing the key {key!r}")
        value = counts[key]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise ValueError(f"counts[{key!r}] must be an integer, got {value!r}")
        if value < 0:
            raise ValueError(f"counts[{key!r}] must be non-negative, got {value}")
        clean[key] = int(value)
    tp, fp, fn = clean["tp"], clean["fp"], clean["fn"]
    precision = tp / (tp + fp) if tp + fp > 0 else zero_division
    recall = tp / (tp + fn) if tp + fn > 0 else zero_division
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else zero_division
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1), **clean}


def pixel_precision_recall_f1(pred, target, *, threshold=0.5, zero_division=0.0):
    """Pixel-level precision, recall and F1, micro-averaged over all pixels.

    Uses the standard definitions ``precision = TP / (TP + FP)``,
    ``recall = TP / (TP + FN)``, ``F1 = 2 P R / (P + R)``. Seed paper 004's
    equations 12-13 for pixel precision and recall are misprinted; these are the
    standard definitions, not a transcription of those equations.

    Parameters
    ----------
    pred : array_like, shape (H, W) or (N, H, W)
        Predicted probabilities or binary mask; positive where ``pred >= threshold``.
    target : array_like, same shape as `pred`
        Ground-truth mask; nonzero is a defect pixel.
    threshold : float, optional
        Decision threshold applied to `pred` (inclusive).
    zero_division : float, optional
        Value for an undefined ratio; see :func:`counts_to_prf`.

    Returns
    -------
    result : dict
        ``precision``, ``recall``, ``f1`` (float) and ``tp``, ``fp``, ``fn``, ``tn``
        (int). For a stack, the counts are summed over all images before the ratios
        are taken (micro-average), not averaged per image.

    Raises
    ------
    ValueError
        As :func:`pixel_counts` and :func:`counts_to_prf`.

    Examples
    --------
    >>> import numpy as np
    >>> pred = np.array([[1, 1, 0], [0, 0, 0]])
    >>> target = np.array([[1, 0, 0], [1, 0, 0]])
    >>> pixel_precision_recall_f1(pred, target)
    {'precision': 0.5, 'recall': 0.5, 'f1': 0.5, 'tp': 1, 'fp': 1, 'fn': 1, 'tn': 3}
    """
    zero_division = _check_zero_division(zero_division)
    counts = pixel_counts(pred, target, threshold=threshold)
    return counts_to_prf(counts, zero_division=zero_division)


def accumulate_pixel_counts(pairs, *, threshold=0.5):
    """Sum pixel counts over a stream of ``(pred, target)`` pairs.

    Lets a caller evaluate images one at a time (and of different sizes); the total
    equals :func:`pixel_counts` on a stack of the same images.

    Parameters
    ----------
    pairs : iterable of (array_like, array_like)
        Each pair is a prediction and its target, shapes as in :func:`pixel_counts`;
        different pairs may have different shapes.
    threshold : float, optional
        Decision threshold applied to every prediction (inclusive).

    Returns
    -------
    counts : dict
        ``{"tp": int, "fp": int, "fn": int, "tn": int}``; pass it to
        :func:`counts_to_prf` for precision, recall and F1.

    Raises
    ------
    ValueError
        If `pairs` is empty, an item is not a pair, or any pair fails the checks of
        :func:`pixel_counts` (the message gives the pair's index).

    Examples
    --------
    >>> import numpy as np
    >>> pairs = [(np.ones((2, 2)), np.eye(2)), (np.zeros((1, 3)), np.ones((1, 3)))]
    >>> accumulate_pixel_counts(pairs)
    {'tp': 2, 'fp': 2, 'fn': 3, 'tn': 0}
    """
    threshold = _check_threshold(threshold)
    if not isinstance(pairs, Iterable):
        raise ValueError(
            f"pairs must be an iterable of (pred, target), got {type(pairs).__name__}"
        )
    total = dict.fromkeys(_COUNT_KEYS, 0)
    n_pairs = 0
    for index, pair in enumerate(pairs):
        try:
            pred, target = pair
        except (TypeError, ValueError):
            raise ValueError(f"item {index} of pairs is not a (pred, target) pair") from None
        try:
            counts = pixel_counts(pred, target, threshold=threshold)
        except ValueError as exc:
            raise ValueError(f"pair {index}: {exc}") from exc
        for key in _COUNT_KEYS:
            total[key] += counts[key]
        n_pairs += 1
    if n_pairs == 0:
        raise ValueError("pairs is empty: no (pred, target) pairs to count")
    return total
