"""Figures of seed 004's recognition chapter: TPR/TNR/ACC per method and augmentation (the
paper's Figs. 3–5) with the spread over folds, TPR by defect size, the test images' scores
(per cell or network input), and training losses."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .common import plot_fold_losses

METHOD_LABELS = {"dr": "DR", "resnet50": "ResNet-50"}
AUGMENT_LABELS = {True: "augmentation on", False: "augmentation off"}
AUGMENT_COLORS = {True: "#d62728", False: "#1f77b4"}
CELL_STYLES = {("dr", True): ("#d62728", "-"), ("dr", False): ("#d62728", "--"),
               ("resnet50", True): ("#1f77b4", "-"), ("resnet50", False): ("#1f77b4", "--")}
RATES = (("tpr", "TPR"), ("tnr", "TNR"), ("acc", "ACC = (TPR + TNR) / 2"))


def _ordered(values, order) -> list:
    values = list(dict.fromkeys(values))
    return [v for v in order if v in values] + [v for v in values if v not in order]


def plot_recognition_rates(table: pd.DataFrame) -> Figure:
    """TPR, TNR and ACC per method, augmentation on and off (the paper's Figs. 3–5).

    ``table`` is :func:`defectlib.experiments.rec004.grid_table`: a bar is the value over all
    test folds together, the points are the folds, the line their range. One row of panels
    per dataset.
    """
    datasets = list(dict.fromkeys(table["dataset"]))
    methods = _ordered(table["method"], ["dr", "resnet50"])
    augments = _ordered(table["augment"].map(bool), [True, False])
    fig, axes = plt.subplots(len(datasets), 3, figsize=(11, 3.1 * len(datasets)), squeeze=False, sharey=True)
    width = 0.8 / max(len(augments), 1)
    rng = np.random.default_rng(0)
    for row, dataset in zip(axes, datasets):
        rows = table[table["dataset"] == dataset]
        for ax, (metric, title) in zip(row, RATES):
            for j, augment in enumerate(augments):
                offset = (j - (len(augments) - 1) / 2) * width
                for i, method in enumerate(methods):
                    cell = rows[(rows["method"] == method) & (rows["augment"].map(bool) == augment)]
                    if cell.empty:
                        continue
                    overall = cell.loc[cell["fold"] == "all", metric]
                    folds = cell.loc[cell["fold"] != "all", metric].dropna().to_numpy(float)
                    x = i + offset
                    ax.bar(x, overall.iloc[0] if len(overall) else np.nan, width * 0.9, color=AUGMENT_COLORS[augment],
                           alpha=0.55, label=AUGMENT_LABELS[augment] if i == 0 else None)
                    if len(folds):
                        ax.vlines(x, folds.min(), folds.max(), color="k", lw=1)
                        ax.scatter(x + rng.uniform(-width / 6, width / 6, len(folds)), folds, s=10, color="k", zorder=3)
            ax.set_xticks(range(len(methods)))
            ax.set_xticklabels([METHOD_LABELS.get(m, m) for m in methods])
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{dataset}: {title}" if metric == "tpr" else title, fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        row[0].set_ylabel("rate (bar: all folds; dots: folds)")
    axes[0, -1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_size_bin_tpr(table: pd.DataFrame, *, area: str = "native") -> Figure:
    """TPR per defect-area bin, one line per method and augmentation, a panel per dataset.

    ``table`` is :func:`defectlib.experiments.rec004.size_bin_tpr`; the tick labels give the
    number of defective test images in each bin (the same for every cell of a dataset); bins
    without a defect are left out.
    """
    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 3.4), squeeze=False, sharey=True)
    for ax, dataset in zip(axes[0], datasets):
        rows = table[table["dataset"] == dataset]
        rows = rows[rows["bin"].isin(rows.loc[rows["n"] > 0, "bin"])]  # bins holding no defect are left out
        bins = list(dict.fromkeys(rows["bin"]))
        for (method, augment), cell in rows.groupby(["method", rows["augment"].map(bool)], sort=False):
            cell = cell.set_index("bin").reindex(bins)
            color, style = CELL_STYLES.get((method, augment), (None, "-"))
            ax.plot(range(len(bins)), cell["tpr"], marker="o", ls=style, color=color,
                    label=f"{METHOD_LABELS.get(method, method)}, {AUGMENT_LABELS[augment]}")
        counts = rows.drop_duplicates("bin").set_index("bin")["n"].reindex(bins)
        ax.set_xticks(range(len(bins)))
        ax.set_xticklabels([f"{b}\n(n={int(n)})" for b, n in counts.items()], fontsize=8)
        ax.set_xlabel(f"total defect area, px ({'native resolution' if area == 'native' else 'at the network input'})")
        ax.set_title(dataset, fontsize=10)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("TPR (all test folds)")
    axes[0, -1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def plot_scores(scores: pd.DataFrame, *, by: str = "input", xlabel: str = "network input (H×W)",
                threshold: float = 0.5, ax=None) -> Figure:
    """Every test image's score, defective against defect-free, per value of column ``by``
    (the network input, a cell), in the order they first appear.

    ``scores`` has one row per test image: ``by``, ``label`` (1: defective) and ``score``. The
    dashed line is the decision threshold. Draws on ``ax`` where given.
    """
    data = scores.assign(image=scores["label"].map({1: "defective", 0: "defect-free"}))
    groups = list(dict.fromkeys(data[by]))
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 + 2.2 * len(groups), 3.6))
    sns.stripplot(data=data, x=by, y="score", hue="image", hue_order=["defect-free", "defective"],
                  order=groups, dodge=True, jitter=0.3, size=2.5, alpha=0.7,
                  palette={"defect-free": "#1f77b4", "defective": "#d62728"}, ax=ax)
    ax.axhline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("image score (all test folds)")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.figure.tight_layout()
    return ax.figure


def plot_recognition_losses(curves: dict[str, dict[int, np.ndarray]], *, window: int = 25) -> Figure:
    """Training losses (moving average over ``window`` steps), one panel per cell, a line per fold."""
    n = max(len(curves), 1)
    columns = min(4, n)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(curves):]:
        ax.set_axis_off()
    for ax, (title, folds) in zip(axes.flat, curves.items()):
        plot_fold_losses(ax, folds, window=window, lw=1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("loss (moving average)")
    if curves:
        axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
