"""Training: one loop (:mod:`.loop`: schedule, validation, checkpoints, resume) and the
trainers of each paper: seed 000's two stages (:mod:`.seg000`), seed 004's recognition
(:mod:`.rec004`) and segmentation (:mod:`.seg004`); the samplers they draw batches with."""

from .loop import Checkpoint, History, Schedule, fit, plan_batches
from .rec004 import PairBatchSampler, predict_recognition, select_blocks, train_recognition
from .sampler import AlternatingSampler
from .seg000 import (TwoStages, freeze, predict, score_summary, seg_targets, train_classifier, train_segmentation,
                     train_two_stages)
from .seg004 import BalancedBatchSampler, predict_seg004, random_crop_box, train_seg004

__all__ = [
    "AlternatingSampler",
    "BalancedBatchSampler",
    "Checkpoint",
    "History",
    "PairBatchSampler",
    "Schedule",
    "TwoStages",
    "fit",
    "freeze",
    "plan_batches",
    "predict",
    "predict_recognition",
    "predict_seg004",
    "random_crop_box",
    "score_summary",
    "seg_targets",
    "select_blocks",
    "train_classifier",
    "train_recognition",
    "train_seg004",
    "train_segmentation",
    "train_two_stages",
]
