"""defectlib: a reproducible study of deep-learning surface-defect detection.

Sub-packages
------------
data
    Readers for KolektorSDD and MagneticTile, a synthetic surface generator, annotation
    dilation, cross-validation folds, the download command.
metrics
    Image-level and pixel-level metrics (pure functions).
experiments
    One typed configuration per experiment, with the named profiles ``smoke``, ``converged``,
    ``paper``, the functions the book's notebooks call, and the study's whole grid
    (``defectlib grid``).
training
    One training loop (schedule, validation, checkpoints, resume) and each paper's trainers.
models
    Every network of the study, behind one registry.
perf
    Speed and memory: benchmarks and the performance chapter's accounting (beside the study;
    nothing in it imports this).
plots
    Figures for the book.
results
    The results cache under ``book/results`` (atomic, resumable, with provenance).
book, cli
    The papermill + Jupyter Book pipeline and the ``defectlib`` command.
"""

__version__ = "0.1.0"
