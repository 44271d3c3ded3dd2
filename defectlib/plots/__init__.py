"""Figures for the book. Each function takes results (tables, arrays) and returns a Figure."""

from .data import plot_area_histograms, plot_class_counts, plot_dilation_example, plot_fold_counts

__all__ = ["plot_area_histograms", "plot_class_counts", "plot_dilation_example", "plot_fold_counts"]
