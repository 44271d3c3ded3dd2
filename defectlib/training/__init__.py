"""Training: the alternating sampler, seed 000's two-stage (segmentation, then classifier) loop,
and seed 004's recognition training (pair batches, DR block selection)."""

from .recognition import PairBatchSampler, predict_recognition, select_blocks, train_recognition
from .sampler import AlternatingSampler
from .seg004 import BalancedBatchSampler, predict_seg004, random_crop_box, train_seg004
from .two_stage import LOG_EVERY, freeze, predict, seg_targets, train_classifier, train_segmentation

__all__ = [
    "AlternatingSampler",
    "LOG_EVERY",
    "PairBatchSampler",
    "freeze",
    "predict",
    "predict_recognition",
    "seg_targets",
    "select_blocks",
    "train_classifier",
    "train_recognition",
    "train_segmentation",
    # seed 004, segmentation
    "BalancedBatchSampler",
    "predict_seg004",
    "random_crop_box",
    "train_seg004",
]
