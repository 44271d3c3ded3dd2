"""Figures for the book. Each function takes results (tables, arrays) and returns a Figure."""

from .common import plot_curves
from .data import plot_area_histograms, plot_class_counts, plot_dilation_example, plot_fold_counts
from .rec004 import plot_recognition_losses, plot_recognition_rates, plot_scores, plot_size_bin_tpr
from .seg000 import (plot_defect_crops, plot_gallery, plot_image_errors, plot_resolution, plot_score_vs_map,
                     plot_sweep_errors, plot_sweep_metrics, plot_training_curves)
from .seg004 import plot_fold_metrics, plot_loss_curves, plot_overlays, plot_size_bins

__all__ = [
    "plot_curves",
    "plot_area_histograms", "plot_class_counts", "plot_dilation_example", "plot_fold_counts",
    "plot_defect_crops", "plot_gallery", "plot_image_errors", "plot_resolution", "plot_score_vs_map",
    "plot_sweep_errors", "plot_sweep_metrics", "plot_training_curves",
    "plot_recognition_losses", "plot_recognition_rates", "plot_scores", "plot_size_bin_tpr",
    "plot_fold_metrics", "plot_loss_curves", "plot_overlays", "plot_size_bins",
]
