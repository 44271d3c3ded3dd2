"""defectlib: a reproducible study of deep-learning surface-defect detection.

Sub-packages
------------
data
    Readers for KolektorSDD and MagneticTile, a synthetic surface generator, annotation
    dilation, cross-validation folds, the download command.
metrics
    Image-level and pixel-level metrics (pure functions).
experiments
    One typed configuration per experiment, with the named profiles ``smoke``, ``cpu``,
    ``paper``, and the functions the book's notebooks call.
plots
    Figures for the book.
results
    The results cache under ``book/results`` (atomic, resumable, with provenance).
book, cli
    The papermill + Jupyter Book pipeline and the ``defectlib`` command.
"""

__version__ = "0.1.0"
