"""Published numbers the book sets beside ours. Typed from the papers; never our results.

Every value names its source. The book labels them as the papers' own.
"""

from __future__ import annotations

#: Seed 000, Figs. 5–6 as read in ../shared/STUDY.md: FP and FN at dilation 9, threshold 0.9,
#: over the three test folds of KolektorSDD.
SEED000_BEST = {
    "proposed": {"dilation": 9, "fp": 1, "fn": 1},
    "deeplabv3plus": {"dilation": 9, "fp": 2, "fn": 4},
    "unet": {"dilation": 9, "fp": 5, "fn": 4},
}

#: Tabernik et al. 2019 (the dataset's paper), segmentation-based net at dilation 5.
TABERNIK2019 = {"ap": 0.999, "fp": 0, "fn": 1, "dilation": 5, "parameters_m": 15.7, "ms_per_image_titanx": 110}

SOURCES = {
    "seed000": "Surface defect detection model of motor commutator based on semantic segmentation (seed 000), Figs. 5-6",
    "tabernik2019": "Tabernik, Sela, Skvarc, Skocaj, J. Intell. Manuf. 2019, Table 2 (KolektorSDD, dilation 5)",
}

#: Published speed and size anchors for the performance chapter (other hardware, other code).
SPEED_ANCHORS = [
    {"source": "Tabernik et al. 2019 (SegDecNet)", "model": "SegDecNet", "parameters_m": 15.7,
     "input": "1408×512", "ms_per_image": 110.0, "hardware": "Titan X"},
    {"source": "Božič et al. 2021 (mixed supervision)", "model": "SegDecNet++", "parameters_m": None,
     "input": "1408×512", "ms_per_image": 1000 / 23, "hardware": "RTX 2080 Ti",
     "note": "23 images/s; 32 min of training per fold"},
    {"source": "Božič et al. 2021 (baselines there)", "model": "U-Net", "parameters_m": 31.1,
     "input": "1408×512", "ms_per_image": None, "hardware": None},
    {"source": "Božič et al. 2021 (baselines there)", "model": "DeepLabv3+", "parameters_m": 41.1,
     "input": "1408×512", "ms_per_image": None, "hardware": None},
]
