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


def plot_sweep_errors(table: pd.DataFrame, *, folds: pd.DataFrame | None = None) -> Figure:
    """False positives and false negatives against annotation precision (seed 000's Fig. 6).

    With ``folds`` (:func:`~defectlib.experiments.seg000.fold_errors`), a third panel shows
    FP + FN of every test fold as points beside each cell's total.
    """
    dilations = sorted(table["dilation"].unique())
    models = list(dict.fromkeys(table["model"]))
    panels = ("fp", "fn", "folds") if folds is not None and len(folds) else ("fp", "fn")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.4), sharey=True)
    width = 0.8 / max(len(models), 1)
    for ax, metric in zip(axes, panels):
        for i, model in enumerate(models):
            x0 = np.arange(len(dilations)) + (i - (len(models) - 1) / 2) * width
            color = MODEL_COLORS.get(model)
            if metric == "folds":
                rows = folds[folds["model"] == model]
                x = x0[[dilations.index(k) for k in rows["dilation"]]] if len(rows) else []
                ax.scatter(x, rows["errors"], s=14, color=color, label=MODEL_LABELS.get(model, model))
                continue
            rows = table[table["model"] == model].set_index("dilation").reindex(dilations)
            bars = ax.bar(x0, rows[metric], width, label=MODEL_LABELS.get(model, model), color=color)
            ax.bar_label(bars, fontsize=7)
        _dilation_ticks(ax, dilations)
        ax.set_title({"fp": "false positives", "fn": "false negatives", "folds": "FP + FN per test fold"}[metric])
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("images")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


SIZE_STYLES = ("o-", "s--", "^:", "d-.")


def plot_resolution(table: pd.DataFrame, *, references: dict[str, dict] | None = None) -> Figure:
    """Errors and AP against annotation precision, one line per model and input size.

    ``table`` is a :func:`~defectlib.experiments.seg000.grid_table` of the cells at every size;
    the colour says the model (as in the sweep's figures), the line style the input size.
    ``references`` maps a label to a published ``{"dilation", "fp", "fn"[, "ap"]}``, drawn as
    stars (e.g. :data:`~defectlib.experiments.references.SEED000_BEST`'s proposed row).
    """
    dilations = sorted(table["dilation"].unique())
    sizes = list(dict.fromkeys(table["input"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    t = table.assign(errors=table["fp"] + table["fn"])
    for (metric, title), ax in zip((("errors", "FP + FN at 0.9, all test folds"), ("ap", "AP of the classifier's score")),
                                   axes):
        for (model, size), rows in t.groupby(["model", "input"], sort=False):
            rows = rows.set_index("dilation").reindex(dilations)
            ax.plot(range(len(dilations)), rows[metric], SIZE_STYLES[sizes.index(size) % len(SIZE_STYLES)],
                    color=MODEL_COLORS.get(model), label=f"{MODEL_LABELS.get(model, model)}, {size}")
        for i, (label, ref) in enumerate((references or {}).items()):
            value = ref["fp"] + ref["fn"] if metric == "errors" else ref.get("ap")
            if value is not None and ref["dilation"] in dilations:
                ax.plot(dilations.index(ref["dilation"]), value, "*", ms=12, color=f"C{7 + i}", label=label)
        _dilation_ticks(ax, dilations)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(bottom=0)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.18, 1, 1))
    # Below the panels, so no point of any line is hidden behind it.
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    return fig


def plot_training_curves(folds: dict[int, dict[str, np.ndarray]], *, window: int = 25) -> Figure:
    """Both stages of one run: training loss (moving average over ``window`` steps) and the
    validation AP (of the map maximum, then of the classifier) against step, per fold."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 5.4))
    for column, (prefix, title, label) in enumerate((("seg", "segmentation stage", "AP of the map maximum"),
                                                     ("clf", "classification stage", "AP of the classifier"))):
        loss_ax, val_ax = axes[0, column], axes[1, column]
        plot_fold_losses(loss_ax, {fold: arrays[f"{prefix}_losses"] for fold, arrays in folds.items()}, window=window)
        loss_ax.set_yscale("log")
        loss_ax.set_ylabel("training loss (moving average)")
        loss_ax.set_title(title)
        for fold, arrays in sorted(folds.items()):
            if f"{prefix}_eval_ap" in arrays:
                val_ax.plot(arrays[f"{prefix}_eval_step"], arrays[f"{prefix}_eval_ap"], "o-", ms=3, label=f"fold {fold}")
        val_ax.set_ylabel(f"validation {label}")
        val_ax.set_xlabel("step")
        for ax in (loss_ax, val_ax):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
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


def plot_image_errors(errors: pd.DataFrame, *, top: int = 15) -> Figure:
    """The ``top`` images decided wrongly most often (:func:`~defectlib.experiments.seg000.image_errors`):
    the share of runs whose classifier decision was wrong, and beside it the share whose
    map-maximum decision was, per image; labels give the class, test fold and defect area."""
    rows = errors.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.32 * max(len(rows), 1) + 1.3))
    y = np.arange(len(rows))
    ax.barh(y + 0.2, rows["wrong_share"], height=0.4, color="#d62728", label="classifier at its threshold")
    ax.barh(y - 0.2, rows["map_wrong_share"], height=0.4, color="#7f7f7f", label="map maximum at its threshold")
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r.sample_id} ({'defect, ' + str(int(r.defect_area)) + ' px' if r.label == 1 else 'defect-free'}"
                        f", fold {int(r.fold)})" for r in rows.itertuples()], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"share of the runs that decide the image wrongly ({int(errors['runs'].max()) if len(errors) else 0} runs)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_score_vs_map(samples: pd.DataFrame, *, threshold: float, map_threshold: float = 0.5) -> Figure:
    """Each test image's classifier probability against its segmentation map's maximum, one
    panel per test fold, defective images in red: where the two decisions disagree, the points
    lie off the diagonal quadrants (dashed lines: the two thresholds)."""
    folds = sorted(samples["fold"].unique())
    fig, axes = plt.subplots(1, len(folds), figsize=(3.6 * len(folds), 3.4), squeeze=False, sharey=True)
    for ax, fold in zip(axes.flat, folds):
        part = samples[samples["fold"] == fold]
        for label, color, name in ((0, "#1f77b4", "defect-free"), (1, "#d62728", "defective")):
            rows = part[part["label"] == label]
            ax.scatter(rows["seg_max"], rows["score"], s=12, alpha=0.7, color=color, label=f"{name} ({len(rows)})")
        ax.axhline(threshold, color="k", ls="--", lw=0.8)
        ax.axvline(map_threshold, color="k", ls=":", lw=0.8)
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"test fold {fold}")
        ax.set_xlabel("maximum of the segmentation map")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left")
    axes.flat[0].set_ylabel("classifier probability")
    fig.tight_layout()
    return fig


def plot_defect_crops(crops: list[dict[str, np.ndarray]], *, columns: int = 4) -> Figure:
    """Native-resolution crops around annotated defects
    (:func:`~defectlib.experiments.seg000.defect_crops`), the annotation drawn as an outline
    only, so the defect itself stays visible."""
    n = max(len(crops), 1)
    columns = min(columns, n)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, crop in zip(axes.flat, crops):
        mask = crop["masks"][0]
        ax.imshow(crop["image"], cmap="gray", vmin=0, vmax=255)
        ax.contour(mask, levels=[0.5], colors="#ffdd00", linewidths=0.8)
        ax.set_title(f"{crop['sample_id']}\n{int(mask.sum())} px annotated", fontsize=8)
    if not crops:
        axes.flat[0].text(0.5, 0.5, "none", ha="center", va="center")
    fig.tight_layout()
    return fig
