"""Figures of seed 004's segmentation chapter: per-fold metrics, size bins, overlays, losses."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from .common import plot_fold_losses

SEG004_COLORS = {"DeepLabv3+": "#1f77b4", "improved": "#d62728", "improved + ASPP": "#ff7f0e",
                 "no branch": "#2ca02c", "no branch + ASPP": "#9467bd", "whole-image training": "#8c564b"}
_TITLES = {"precision": "precision (PR, Fig. 6)", "recall": "recall (RE, Fig. 7)", "f1": "F1 (Fig. 8)"}


def plot_fold_metrics(table: pd.DataFrame, *, metrics=("precision", "recall", "f1")) -> Figure:
    """Pixel precision, recall and F1 per dataset and model, with the spread over folds.

    ``table`` is :func:`defectlib.experiments.seg004.grid_table`. Bars: the mean over test
    folds; dots: the folds; black tick: the value over all folds together (summed counts).
    """
    folds = table[table["fold"] != "all"]
    overall = table[table["fold"] == "all"]
    datasets = list(dict.fromkeys(table["dataset"]))
    models = list(dict.fromkeys(table["model"]))
    width = 0.8 / max(len(models), 1)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for i, model in enumerate(models):
            offset = (i - (len(models) - 1) / 2) * width
            color = SEG004_COLORS.get(model)
            for j, dataset in enumerate(datasets):
                values = folds[(folds["model"] == model) & (folds["dataset"] == dataset)][metric].to_numpy(float)
                x = j + offset
                if len(values):
                    ax.bar(x, values.mean(), width * 0.9, color=color, alpha=0.55,
                           label=model if j == 0 else None)
                    jitter = np.linspace(-width * 0.25, width * 0.25, len(values)) if len(values) > 1 else [0.0]
                    ax.plot(x + np.asarray(jitter), values, "o", color=color, markersize=3.5, markeredgecolor="k",
                            markeredgewidth=0.4)
                total = overall[(overall["model"] == model) & (overall["dataset"] == dataset)][metric]
                if len(total):
                    ax.hlines(float(total.iloc[0]), x - width * 0.45, x + width * 0.45, color="k", linewidth=1.2)
        ax.set_xticks(range(len(datasets)))
        ax.set_xticklabels(datasets)
        ax.set_ylim(0, 1.02)
        ax.set_title(_TITLES.get(metric, metric))
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("pixel level, per test fold")
    axes[0, -1].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def plot_size_bins(table: pd.DataFrame, *, metrics=("recall", "detection_rate")) -> Figure:
    """Pixel recall and detection rate by defect-size bin, one column per dataset.

    ``table`` is :func:`defectlib.experiments.seg004.size_table`; the ``defect-free`` rows are
    left out (their false-alarm rate is in the table).
    """
    table = table[table["bin"] != "defect-free"]
    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = plt.subplots(len(metrics), max(len(datasets), 1), figsize=(5 * max(len(datasets), 1), 2.8 * len(metrics)),
                             squeeze=False, sharey=True)
    for col, dataset in enumerate(datasets):
        rows = table[table["dataset"] == dataset]
        bins = list(dict.fromkeys(rows["bin"]))
        for row, metric in enumerate(metrics):
            ax = axes[row, col]
            for model, group in rows.groupby("model", sort=False):
                group = group.set_index("bin").reindex(bins)
                ax.plot(range(len(bins)), group[metric], "o-", label=model, color=SEG004_COLORS.get(model))
            counts = rows.drop_duplicates("bin").set_index("bin").reindex(bins)["n"]
            ax.set_xticks(range(len(bins)))
            ax.set_xticklabels([f"{b}\n(n={int(c)})" for b, c in zip(bins, counts)], fontsize=7)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            ax.set_title(f"{dataset}: {metric.replace('_', ' ')}", fontsize=9)
        axes[-1, col].set_xlabel("total defect area (px)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_class_metrics(table: pd.DataFrame, *, metrics=("recall", "f1")) -> Figure:
    """Pixel recall and F1 by defect class, one row per dataset with more than one class.

    ``table`` is :func:`defectlib.experiments.seg004.class_table`; each class's tick label
    gives its image count and its share of the defect pixels (its weight in the pooled F1).
    """
    datasets = [d for d in dict.fromkeys(table["dataset"]) if table[table["dataset"] == d]["defect_class"].nunique() > 1]
    fig, axes = plt.subplots(max(len(datasets), 1), len(metrics), figsize=(4.8 * len(metrics), 3.0 * max(len(datasets), 1)),
                             squeeze=False, sharey=True)
    for row, dataset in enumerate(datasets):
        rows = table[table["dataset"] == dataset]
        classes = list(dict.fromkeys(rows["defect_class"]))
        models = list(dict.fromkeys(rows["model"]))
        width = 0.8 / len(models)
        first = rows.drop_duplicates("defect_class").set_index("defect_class").reindex(classes)
        for col, metric in enumerate(metrics):
            ax = axes[row, col]
            for i, model in enumerate(models):
                group = rows[rows["model"] == model].set_index("defect_class").reindex(classes)
                ax.bar(np.arange(len(classes)) + (i - (len(models) - 1) / 2) * width, group[metric], width * 0.9,
                       color=SEG004_COLORS.get(model), label=model)
            ax.set_xticks(range(len(classes)))
            ax.set_xticklabels([f"{c}\n(n={int(n)}, {share:.1%})" for c, n, share in
                                zip(classes, first["n"], first["pixel_share"])], fontsize=7)
            ax.set_ylim(0, 1.02)
            ax.grid(axis="y", alpha=0.3)
            ax.set_title(f"{dataset}: pixel {metric}", fontsize=9)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_overlays(entries: pd.DataFrame, images, masks, probs, *, title: str, threshold: float = 0.5,
                  columns: int = 6) -> Figure:
    """Images with the ground truth (green outline) and the prediction (red, ``prob >= threshold``).

    ``probs`` are ``uint8`` probability maps (0–255) or floats in [0, 1]; the title of each
    panel gives the sample, its per-image pixel F1 and its TP / FP / FN pixels.
    """
    n = max(len(entries), 1)
    columns = min(columns, n)
    rows = -(-n // columns)
    height, width = (images[0].shape if len(images) else (4, 4))
    panel = 2.0
    fig, axes = plt.subplots(rows, columns, figsize=(panel * columns, panel * rows * height / width + 0.6),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (_, entry), image, mask, prob in zip(axes.flat, entries.iterrows(), images, masks, probs):
        prob = np.asarray(prob, dtype=float)
        if prob.max() > 1.0:
            prob = prob / 255.0
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        predicted = np.ma.masked_where(prob < threshold, np.ones_like(prob))
        ax.imshow(predicted, cmap=ListedColormap(["#ff2020"]), alpha=0.45, vmin=0, vmax=1, interpolation="nearest")
        if np.asarray(mask).any():
            ax.contour(np.asarray(mask, float), levels=[0.5], colors="#00ff00", linewidths=0.8)
        f1 = entry.get("f1_image", np.nan)
        ax.set_title(f"{entry['sample_id']}\nF1 {f1:.2f} · TP {int(entry['tp'])} FP {int(entry['fp'])} FN {int(entry['fn'])}",
                     fontsize=6)
    if len(entries) == 0:
        axes.flat[0].text(0.5, 0.5, "none", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_loss_curves(curves: dict[str, dict[int, np.ndarray]], *, window: int = 20) -> Figure:
    """Training losses per model (one panel each), one line per fold (moving average)."""
    fig, axes = plt.subplots(1, max(len(curves), 1), figsize=(4.5 * max(len(curves), 1), 3.0), squeeze=False, sharey=True)
    for ax, (name, folds) in zip(axes[0], curves.items()):
        plot_fold_losses(ax, folds, window=window)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("BCE loss (moving average)")
    fig.tight_layout()
    return fig
