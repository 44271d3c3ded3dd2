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
    "seed004": "Defect detection of mechanical design products using deep neural network (seed 004), Table 2 "
               "(its private datasets MDPA and MDPB: other data than ours)",
}

#: Seed 004, Table 2 (small defects: total defect area under 100 px, against all defect-free
#: samples, over its five cross-validation test groups). MDPA and MDPB are the paper's own
#: private datasets: other data than ours, shown beside our MagneticTile/KolektorSDD numbers.
SEED004_SMALL_DEFECTS = {
    "MDPA": {"resnet50": {"tpr": 0.992, "tnr": 0.850, "acc": 0.924},
             "dr": {"tpr": 0.996, "tnr": 0.945, "acc": 0.977}},
    "MDPB": {"resnet50": {"tpr": 0.980, "tnr": 0.913, "acc": 0.951},
             "dr": {"tpr": 0.985, "tnr": 0.942, "acc": 0.979}},
}
