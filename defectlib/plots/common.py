"""Pieces the chapters' figures share."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def plot_fold_losses(ax, folds: Mapping[int, np.ndarray], *, window: int, **line) -> None:
    """Draw each fold's training losses on ``ax`` as a moving average, one line per fold.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    folds : mapping of int to array_like
        ``{fold: losses}``, one loss per step; folds are drawn in order, empty ones skipped.
    window : int
        Moving-average window in steps, shortened to a fifth of a fold's steps (at least 1).
    **line
        Passed to :meth:`~matplotlib.axes.Axes.plot` (``lw=1``, say); each line is
        labelled ``fold <n>``. A point is drawn at the step that ends its window.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> plot_fold_losses(ax, {1: [4, 3, 2, 1, 1], 0: [2.0] * 10, 2: []}, window=2)
    >>> [(l.get_label(), len(l.get_xdata())) for l in ax.get_lines()]
    [('fold 0', 9), ('fold 1', 5)]
    >>> plt.close(fig)
    """
    for fold, losses in sorted(folds.items()):
        losses = np.asarray(losses, dtype=float)
        if len(losses) == 0:
            continue
        w = max(1, min(window, len(losses) // 5 or 1))
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax.plot(np.arange(len(smooth)) + w, smooth, label=f"fold {fold}", **line)
