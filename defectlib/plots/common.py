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


def plot_curves(cells: Mapping[str, Mapping[int, Mapping[str, np.ndarray]]], *, prefix: str, metric: str = "ap",
                metric_label: str | None = None, window: int = 25, columns: int = 4):
    """Training loss (moving average) and a validation figure against step: one column per
    cell, the loss above the validation curve, one line per fold.

    Parameters
    ----------
    cells : mapping of str to mapping of int to mapping
        ``{title: {fold: arrays}}`` where ``arrays`` holds ``<prefix>_losses`` (every step),
        ``<prefix>_eval_step`` and ``<prefix>_eval_<metric>`` (the validation records).
    prefix : str
        The training stage (``train``, ``seg``, ``clf``).
    metric : str
        The validation figure drawn (``ap``, ``pixel_f1``, ...).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    n = max(len(cells), 1)
    columns = min(columns, n)
    blocks = -(-n // columns)
    fig, axes = plt.subplots(2 * blocks, columns, figsize=(3.3 * columns, 4.6 * blocks), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for i, (title, folds) in enumerate(cells.items()):
        r, c = divmod(i, columns)
        loss_ax, val_ax = axes[2 * r, c], axes[2 * r + 1, c]
        loss_ax.set_visible(True)
        val_ax.set_visible(True)
        plot_fold_losses(loss_ax, {f: a[f"{prefix}_losses"] for f, a in folds.items()}, window=window, lw=0.8)
        loss_ax.set_yscale("log")
        loss_ax.set_title(title, fontsize=8)
        loss_ax.grid(alpha=0.3)
        for fold, arrays in sorted(folds.items()):
            key = f"{prefix}_eval_{metric}"
            if key in arrays:
                val_ax.plot(arrays[f"{prefix}_eval_step"], arrays[key], "o-", ms=2, lw=0.8, label=f"fold {fold}")
        val_ax.set_xlabel("step")
        val_ax.grid(alpha=0.3)
        if c == 0:
            loss_ax.set_ylabel("training loss")
            val_ax.set_ylabel(f"validation {metric_label or metric}")
    if cells:
        axes[1, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig
