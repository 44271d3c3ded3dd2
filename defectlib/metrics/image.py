"""Image-level metrics: is an image defective or not?

Every function takes ``y_true`` (0/1 labels, 1 = defective) and ``scores`` (the model's
defect probability or any real-valued score, higher = more defective), both 1-D and of
equal length, and returns plain Python ``int`` / ``float`` values. An image is
predicted defective when ``score >= threshold`` (inclusive, as in "defective when the
probability is >= 0.9").
"""

import math

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix

from defectlib.metrics.pixel import _check_threshold, counts_to_prf

__all__ = [
    "confusion_counts",
    "precision_recall_f1",
    "average_precision",
    "ap_standard_error",
    "tpr_tnr_acc",
    "image_metrics",
]


def _check_inputs(y_true, scores):
    """Validate the labels and scores; return them as int and float 1-D arrays."""
    y_true = np.asarray(y_true)
    scores = np.asarray(scores)
    if y_true.ndim != 1 or scores.ndim != 1:
        raise ValueError(
            f"y_true and scores must be 1-D, got shapes {y_true.shape} and {scores.shape}"
        )
    if y_true.shape[0] != scores.shape[0]:
        raise ValueError(
            f"y_true and scores must have the same length, got {y_true.shape[0]} "
            f"and {scores.shape[0]}"
        )
    if y_true.shape[0] == 0:
        raise ValueError("y_true and scores are empty")
    if not (y_true.dtype == bool or np.issubdtype(y_true.dtype, np.number)):
        raise ValueError(f"y_true must hold 0/1 labels, got dtype {y_true.dtype}")
    bad = ~np.isin(y_true, (0, 1))
    if bad.any():
        found = np.unique(y_true[bad])[:5].tolist()
        raise ValueError(f"y_true must hold only 0 and 1, found {found}")
    if not (scores.dtype == bool or np.issubdtype(scores.dtype, np.number)):
        raise ValueError(f"scores must be numeric, got dtype {scores.dtype}")
    scores = scores.astype(float)
    if np.isnan(scores).any():
        first = int(np.flatnonzero(np.isnan(scores))[0])
        raise ValueError(f"scores contain NaN (first at index {first})")
    if np.isinf(scores).any():
        raise ValueError("scores contain an infinite value")
    return y_true.astype(int), scores


def _counts(y_true, scores, threshold):
    """Confusion counts of already-validated inputs."""
    y_pred = (scores >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    return {"tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn)}


def confusion_counts(y_true, scores, *, threshold=0.5):
    """Count true/false positives and negatives of the thresholded scores.

    Parameters
    ----------
    y_true : array_like of shape (n,)
        Ground truth, 1 = defective, 0 = defect-free (bool accepted).
    scores : array_like of shape (n,)
        Defect score per image; predicted defective when ``score >= threshold``.
    threshold : float, optional
        Decision threshold (inclusive).

    Returns
    -------
    counts : dict
        ``{"tp": int, "fp": int, "fn": int, "tn": int}``.

    Raises
    ------
    ValueError
        If the inputs are empty, not 1-D, of different lengths, if `y_true` holds a
        value other than 0/1, or if `scores` contains NaN or infinity.

    Examples
    --------
    >>> confusion_counts([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1])
    {'tp': 1, 'fp': 1, 'fn': 1, 'tn': 1}
    >>> confusion_counts([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1], threshold=0.9)
    {'tp': 1, 'fp': 0, 'fn': 1, 'tn': 2}
    """
    threshold = _check_threshold(threshold)
    y_true, scores = _check_inputs(y_true, scores)
    return _counts(y_true, scores, threshold)


def precision_recall_f1(y_true, scores, *, threshold=0.5, zero_division=0.0):
    """Image-level precision, recall and F1 of the defective class.

    Agrees with ``sklearn.metrics.precision_recall_fscore_support(y_true, y_pred,
    average="binary", zero_division=zero_division)`` where
    ``y_pred = scores >= threshold``.

    Parameters
    ----------
    y_true : array_like of shape (n,)
        Ground truth, 1 = defective.
    scores : array_like of shape (n,)
        Defect score per image.
    threshold : float, optional
        Decision threshold (inclusive).
    zero_division : float, optional
        In [0, 1] or ``nan``. Precision when no image is predicted defective;
        recall when no image is defective; F1 when both hold (``TP + FP + FN == 0``).
        Otherwise F1 is ``2 TP / (2 TP + FP + FN)``, which is ``0.0`` whenever
        ``TP == 0`` -- also when precision or recall fell back to `zero_division`
        (scikit-learn's rule).

    Returns
    -------
    result : dict
        ``precision``, ``recall``, ``f1`` (float) and ``tp``, ``fp``, ``fn``, ``tn``
        (int).

    Raises
    ------
    ValueError
        As :func:`confusion_counts`, or if `zero_division` is out of range.

    Examples
    --------
    >>> precision_recall_f1([1, 1, 0, 0], [0.9, 0.8, 0.7, 0.1], threshold=0.75)
    {'precision': 1.0, 'recall': 1.0, 'f1': 1.0, 'tp': 2, 'fp': 0, 'fn': 0, 'tn': 2}
    >>> precision_recall_f1([1, 0], [0.2, 0.1])["precision"]  # nothing predicted
    0.0
    """
    counts = confusion_counts(y_true, scores, threshold=threshold)
    return counts_to_prf(counts, zero_division=zero_division)


def average_precision(y_true, scores):
    """Average precision (area under the precision-recall curve, step-wise).

    Computed by :func:`sklearn.metrics.average_precision_score`; threshold-free.

    Parameters
    ----------
    y_true : array_like of shape (n,)
        Ground truth, 1 = defective.
    scores : array_like of shape (n,)
        Defect score per image.

    Returns
    -------
    ap : float
        Average precision in [0, 1], or ``nan`` when `y_true` has no positive (AP is
        undefined then; scikit-learn would warn and return 0.0). With only positives
        it is 1.0.

    Raises
    ------
    ValueError
        As :func:`confusion_counts`.

    Examples
    --------
    >>> average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.8333333333333333
    >>> average_precision([0, 0], [0.1, 0.4])
    nan
    """
    y_true, scores = _check_inputs(y_true, scores)
    if not y_true.any():
        return float("nan")
    return float(average_precision_score(y_true, scores))


def ap_standard_error(*, ap, n_positive):
    """Standard error of an average precision measured on ``n_positive`` positives.

    The binomial approximation ``sqrt(ap (1 - ap) / n_positive)`` of Boyd, Eng and Page,
    "Area under the precision-recall curve: point estimates and confidence intervals"
    (ECML PKDD 2013): how precisely a test or validation set of that many defective images
    can measure AP. Two APs on the same images that differ by less than it cannot be told
    apart by those images.

    Parameters
    ----------
    ap : float
        Average precision in [0, 1].
    n_positive : int
        Defective images it was measured on.

    Returns
    -------
    se : float
        The standard error, ``nan`` when ``ap`` is nan or ``n_positive`` is 0.

    Raises
    ------
    ValueError
        If ``ap`` is outside [0, 1] or ``n_positive`` is negative.

    Examples
    --------
    >>> round(ap_standard_error(ap=0.75, n_positive=7), 3)
    0.164
    >>> ap_standard_error(ap=1.0, n_positive=20)
    0.0
    >>> ap_standard_error(ap=0.5, n_positive=0)
    nan
    """
    ap, n_positive = float(ap), int(n_positive)
    if n_positive < 0:
        raise ValueError(f"n_positive must be >= 0, got {n_positive}")
    if math.isnan(ap) or n_positive == 0:
        return float("nan")
    if not 0.0 <= ap <= 1.0:
        raise ValueError(f"ap must be in [0, 1], got {ap}")
    return math.sqrt(ap * (1.0 - ap) / n_positive)


def tpr_tnr_acc(y_true, scores, *, threshold=0.5):
    """True-positive rate, true-negative rate and their mean.

    ``ACC = (TPR + TNR) / 2`` -- seed paper 004's definition, i.e. the balanced
    accuracy (:func:`sklearn.metrics.balanced_accuracy_score`), not the fraction of
    correctly classified images.

    Parameters
    ----------
    y_true : array_like of shape (n,)
        Ground truth, 1 = defective.
    scores : array_like of shape (n,)
        Defect score per image.
    threshold : float, optional
        Decision threshold (inclusive).

    Returns
    -------
    result : dict
        ``tpr = TP / (TP + FN)`` (``nan`` when there are no positives),
        ``tnr = TN / (TN + FP)`` (``nan`` when there are no negatives), and
        ``acc = (tpr + tnr) / 2`` (``nan`` when either is ``nan``).

    Raises
    ------
    ValueError
        As :func:`confusion_counts`.

    Examples
    --------
    >>> tpr_tnr_acc([1, 1, 0, 0, 0, 0], [0.9, 0.2, 0.1, 0.1, 0.1, 0.1])
    {'tpr': 0.5, 'tnr': 1.0, 'acc': 0.75}
    >>> tpr_tnr_acc([0, 0], [0.9, 0.1])
    {'tpr': nan, 'tnr': 0.5, 'acc': nan}
    """
    c = confusion_counts(y_true, scores, threshold=threshold)
    tpr = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] > 0 else math.nan
    tnr = c["tn"] / (c["tn"] + c["fp"]) if c["tn"] + c["fp"] > 0 else math.nan
    acc = (tpr + tnr) / 2  # nan propagates
    return {"tpr": float(tpr), "tnr": float(tnr), "acc": float(acc)}


def image_metrics(y_true, scores, *, threshold):
    """All image-level metrics in one flat dict, ready for ``metrics.json``.

    Parameters
    ----------
    y_true : array_like of shape (n,)
        Ground truth, 1 = defective.
    scores : array_like of shape (n,)
        Defect score per image.
    threshold : float
        Decision threshold (inclusive); required, and recorded in the result.

    Returns
    -------
    result : dict
        Keys ``precision``, ``recall``, ``f1``, ``tp``, ``fp``, ``fn``, ``tn`` (as
        :func:`precision_recall_f1` with ``zero_division=0.0``), ``ap``
        (:func:`average_precision`), ``tpr``, ``tnr``, ``acc`` (:func:`tpr_tnr_acc`),
        ``n`` (number of images), ``n_positive`` (defective images) and
        ``threshold``. Values are Python ``int`` or ``float`` (possibly ``nan``, which
        :func:`json.dumps` writes as ``NaN``).

    Raises
    ------
    ValueError
        As :func:`confusion_counts`.

    Examples
    --------
    >>> m = image_metrics([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1], threshold=0.5)
    >>> m["tp"], m["fp"], m["precision"], m["acc"], m["ap"], m["n_positive"]
    (1, 1, 0.5, 0.5, 0.8333333333333333, 2)
    """
    threshold = _check_threshold(threshold)
    y_true, scores = _check_inputs(y_true, scores)
    prf = counts_to_prf(_counts(y_true, scores, threshold))
    rates = tpr_tnr_acc(y_true, scores, threshold=threshold)
    return {
        **prf,
        "ap": average_precision(y_true, scores),
        **rates,
        "n": int(y_true.shape[0]),
        "n_positive": int(y_true.sum()),
        "threshold": threshold,
    }
