"""Figures for the book. Each function takes results (tables, arrays) and returns a Figure."""

from .data import plot_area_histograms, plot_class_counts, plot_dilation_example, plot_fold_counts
from .seg000 import plot_gallery, plot_sweep_errors, plot_sweep_metrics, plot_training_curves

__all__ = [
    "plot_area_histograms", "plot_class_counts", "plot_dilation_example", "plot_fold_counts",
    "plot_gallery", "plot_sweep_errors", "plot_sweep_metrics", "plot_training_curves",
]
