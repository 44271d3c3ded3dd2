"""Image-level and pixel-level metrics (pure functions).

All functions take numpy arrays (or array-likes) and return plain Python ``int`` /
``float`` values, usually in a ``dict``, so results can go straight into JSON.
Thresholds are inclusive: a score or pixel is positive when ``value >= threshold``.

Image level (:mod:`defectlib.metrics.image`)
    :func:`confusion_counts`, :func:`precision_recall_f1`, :func:`average_precision`,
    :func:`ap_standard_error` (how precisely a set of images measures AP), :func:`tpr_tnr_acc` (``ACC = (TPR + TNR) / 2``, seed 004's balanced accuracy) and
    :func:`image_metrics`, which gathers them all for ``metrics.json``.

Pixel level (:mod:`defectlib.metrics.pixel`)
    :func:`pixel_counts`, :func:`pixel_precision_recall_f1` (micro-averaged over all
    pixels), :func:`accumulate_pixel_counts` (stream images of any size) and
    :func:`counts_to_prf` (precision, recall, F1 from counts).
"""

from defectlib.metrics.image import (
    ap_standard_error,
    average_precision,
    confusion_counts,
    image_metrics,
    precision_recall_f1,
    tpr_tnr_acc,
)
from defectlib.metrics.pixel import (
    accumulate_pixel_counts,
    counts_to_prf,
    pixel_counts,
    pixel_precision_recall_f1,
)

__all__ = [
    "confusion_counts",
    "precision_recall_f1",
    "average_precision",
    "ap_standard_error",
    "tpr_tnr_acc",
    "image_metrics",
    "pixel_counts",
    "pixel_precision_recall_f1",
    "accumulate_pixel_counts",
    "counts_to_prf",
]
