"""Figures of the data chapter."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure


def plot_class_counts(samples: pd.DataFrame) -> Figure:
    """Images per class and dataset (log scale: defect-free images dominate)."""
    datasets = list(dict.fromkeys(samples["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.2), squeeze=False)
    for ax, name in zip(axes[0], datasets):
        counts = samples[samples["dataset"] == name]["defect_class"].value_counts().sort_index()
        colors = ["#7f7f7f" if c in ("good", "Free") else "#d62728" for c in counts.index]
        ax.bar(counts.index, counts.values, color=colors)
        for x, v in enumerate(counts.values):
            ax.text(x, v, str(v), ha="center", va="bottom", fontsize=8)
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_ylabel("images")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def plot_fold_counts(samples: pd.DataFrame) -> Figure:
    """Defective and defect-free images in every fold of every dataset."""
    datasets = list(dict.fromkeys(samples["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.0), squeeze=False)
    for ax, name in zip(axes[0], datasets):
        rows = samples[samples["dataset"] == name]
        table = pd.crosstab(rows["fold"], rows["label"].map({0: "defect-free", 1: "defective"}))
        table.plot.bar(stacked=True, ax=ax, color={"defect-free": "#7f7f7f", "defective": "#d62728"}, rot=0)
        ax.set_title(f"{name}: {rows['fold'].nunique()} folds")
        ax.set_ylabel("images")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_area_histograms(samples: pd.DataFrame, *, small: int = 100) -> Figure:
    """Defect area per defective image, at native resolution and at the network input."""
    datasets = list(dict.fromkeys(samples["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.2), squeeze=False)
    for ax, name in zip(axes[0], datasets):
        rows = samples[(samples["dataset"] == name) & (samples["defect_area"] > 0)]
        long = pd.concat(
            [
                pd.DataFrame({"area": rows["defect_area"], "measured at": "native"}),
                pd.DataFrame({"area": rows["defect_area_input"].clip(lower=1), "measured at": "224×224 input"}),
            ]
        )
        sns.histplot(long, x="area", hue="measured at", log_scale=True, bins=30, ax=ax, element="step")
        ax.axvline(small, color="k", ls="--", lw=1)
        ax.text(small, ax.get_ylim()[1] * 0.95, f" {small} px", va="top", fontsize=8)
        ax.set_title(name)
        ax.set_xlabel("defect area (pixels, log scale)")
        ax.set_ylabel("defective images")
    fig.tight_layout()
    return fig


def plot_dilation_example(example: dict[str, np.ndarray], *, columns: int = 2) -> Figure:
    """One defect with its original and dilated annotations, like seed 000's Fig. 3.

    The annotation is drawn as a translucent fill with its outline, so the defect itself stays
    visible under it.
    """
    image, masks, dilations = example["image"], example["masks"], example["dilations"]
    panels = [("image", None)] + [("original" if k <= 1 else f"dilated {k}×{k}", m) for k, m in zip(dilations, masks)]
    rows = -(-len(panels) // columns)
    panel_w = 5.0
    panel_h = panel_w * image.shape[0] / image.shape[1]
    fig, axes = plt.subplots(rows, columns, figsize=(panel_w * columns, panel_h * rows + 0.6), squeeze=False)
    for ax, (title, mask) in zip(axes.flat, panels):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        if mask is not None:
            ax.imshow(np.ma.masked_where(mask == 0, mask), cmap="autumn", alpha=0.35, vmin=0, vmax=1)
            ax.contour(mask, levels=[0.5], colors="#ffdd00", linewidths=0.8)
            title = f"{title}: {int(mask.sum())} px"
        ax.set_title(title, fontsize=10)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(f"{example['sample_id']} (crop at native resolution)", fontsize=10)
    fig.tight_layout()
    return fig
