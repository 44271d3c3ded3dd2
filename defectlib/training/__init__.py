"""Training: the alternating sampler and seed 000's two-stage (segmentation, then classifier) loop."""

from .sampler import AlternatingSampler
from .two_stage import LOG_EVERY, freeze, predict, seg_targets, train_classifier, train_segmentation

__all__ = [
    "AlternatingSampler",
    "LOG_EVERY",
    "freeze",
    "predict",
    "seg_targets",
    "train_classifier",
    "train_segmentation",
]
