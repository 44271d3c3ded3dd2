"""Figures of seed 000's chapters: the annotation sweep, training curves, error galleries."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .common import plot_fold_losses

MODEL_LABELS = {"proposed": "proposed (lightweight)", "deeplabv3plus": "DeepLabv3+", "unet": "U-Net"}
MODEL_COLORS = {"proposed": "#d62728", "deeplabv3plus": "#1f77b4", "unet": "#2ca02c"}


def _dilation_ticks(ax, dilations) -> None:
    ax.set_xticks(list(range(len(dilations))))
    ax.set_xticklabels(["original" if k <= 1 else str(k) for k in dilations])
    ax.set_xlabel("annotation (dilation kernel)")


def plot_sweep_metrics(table: pd.DataFrame) -> Figure:
    """F1, precision and recall against annotation precision per model (seed 000's Fig. 5)."""
    dilations = sorted(table["dilation"].unique())
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharey=True)
    for ax, metric in zip(axes, ("f1", "precision", "recall")):
        for model, rows in table.groupby("model", sort=False):
            rows = rows.set_index("dilation").reindex(dilations)
            ax.plot(range(len(dilations)), rows[metric], "o-", label=MODEL_LABELS.get(model, model),
                    color=MODEL_COLORS.get(model))
        _dilation_ticks(ax, dilations)
        ax.set_title(metric if metric != "f1" else "F1")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("at threshold 0.9, all test folds")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    # Below the panels, so no point of any curve is hidden behind it.
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    return fig


def plot_sweep_errors(table: pd.DataFrame) -> Figure:
    """False positives and false negatives against annotation precision (seed 000's Fig. 6)."""
    dilations = sorted(table["dilation"].unique())
    models = list(dict.fromkeys(table["model"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
    width = 0.8 / max(len(models), 1)
    for ax, metric in zip(axes, ("fp", "fn")):
        for i, model in enumerate(models):
            rows = table[table["model"] == model].set_index("dilation").reindex(dilations)
            x = np.arange(len(dilations)) + (i - (len(models) - 1) / 2) * width
            bars = ax.bar(x, rows[metric], width, label=MODEL_LABELS.get(model, model), color=MODEL_COLORS.get(model))
            ax.bar_label(bars, fontsize=7)
        _dilation_ticks(ax, dilations)
        ax.set_title({"fp": "false positives", "fn": "false negatives"}[metric])
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("images")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_training_curves(folds: dict[int, dict[str, np.ndarray]], *, window: int = 25) -> Figure:
    """Per-fold training losses of both stages (moving average over ``window`` steps)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.0))
    for ax, key, title in zip(axes, ("seg_losses", "clf_losses"), ("segmentation", "classification")):
        plot_fold_losses(ax, {fold: arrays[key] for fold, arrays in folds.items()}, window=window)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (moving average)")
        ax.set_title(f"{title} stage")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_gallery(entries: pd.DataFrame, images: list[np.ndarray], maps: list[np.ndarray], *,
                 title: str, columns: int = 8) -> Figure:
    """Images with the predicted segmentation overlaid and the probability printed."""
    n = max(len(entries), 1)
    columns = min(columns, n)
    rows = -(-n // columns)
    height, width = (images[0].shape if images else (4, 2))
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.6 * rows * height / width + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (_, entry), image, seg in zip(axes.flat, entries.iterrows(), images, maps):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        seg = np.asarray(seg, dtype=float)
        ax.imshow(seg, cmap="inferno", alpha=0.45, vmin=0, vmax=1,
                  extent=(-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5), interpolation="nearest")
        ax.set_title(f"{entry['sample_id']}\np = {entry['score']:.3f}", fontsize=7)
    if len(entries) == 0:
        axes.flat[0].text(0.5, 0.5, "none", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
