"""Seed 000 design checks on KolektorSDD's *training* folds only (never a test fold).

Splits the training data of test fold 0 into its two folds of the folds manifest: fold 1
trains, fold 2 validates. Trains the proposed network at the ``cpu`` profile's size and
schedule in four variants and prints, for the training and the validation images, the AP of
the classifier's probability and of the segmentation map's maximum:

* ``kaiming-head, bn-classifier, lr 1e-3``: the first implementation;
* ``small-head, bn-classifier, lr 1e-3``: output convolution initialised normal(0, 0.01);
* ``small-head, no-norm classifier, lr 1e-3``: the ``cpu`` profile as it stands;
* ``small-head, no-norm classifier, lr 1e-2``: the paper's printed learning rate.

With ``--model unet`` or ``--model deeplabv3plus`` the baselines are checked the same way, in
the two learning rates (the head-initialisation variant concerns the proposed network only).

Writes ``book/results/seg000-checks/<model>.json`` (atomically) and prints a table.
Run: ``DEFECTLIB_DATA=../shared/data python scripts/seg000_validation_check.py [--model M]``
(about 3 min for the proposed network on 2 CPU cores, 4 to 5 min for a baseline).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import average_precision_score

from defectlib import atomic
from defectlib.data import load_samples
from defectlib.data.dataset import SurfaceDataset
from defectlib.data.folds import ensure_folds
from defectlib.experiments.seg000 import Seg000Config
from defectlib.models import DefectClassifier, build_segnet
from defectlib.paths import results_root
from defectlib.results import device_info, git_state, package_versions
from defectlib.seeding import seed_everything
from defectlib.training import predict, train_classifier, train_segmentation

VARIANTS = (
    # name, small head init, classifier BatchNorm, learning rate (both stages)
    ("kaiming-head, bn-classifier, lr 1e-3", False, True, 1e-3),
    ("small-head, bn-classifier, lr 1e-3", True, True, 1e-3),
    ("small-head, no-norm classifier, lr 1e-3", True, False, 1e-3),
    ("small-head, no-norm classifier, lr 1e-2", True, False, 1e-2),
)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="proposed", choices=("proposed", "unet", "deeplabv3plus"))
    model = parser.parse_args().model
    variants = VARIANTS if model == "proposed" else [v for v in VARIANTS if v[1] and not v[2]]
    cfg = Seg000Config.from_profile("cpu", model=model, dilation=0)
    table = load_samples(cfg.dataset)
    manifest = ensure_folds(cfg.dataset, table, n_folds=cfg.n_folds, seed=cfg.folds_seed)
    folds = manifest.folds_of(table)
    size = tuple(cfg.input_size)
    train = SurfaceDataset(table[folds == 1], size=size, dilation=cfg.dilation)
    val = SurfaceDataset(table[folds == 2], size=size, dilation=0)
    rows, segnets = [], {}
    print(f"{model}: {len(train)} training, {len(val)} validation images at {size}", flush=True)
    for name, small_head, clf_norm, lr in variants:
        key = (small_head, lr)
        started = time.perf_counter()
        if key not in segnets:
            seed_everything(cfg.seed)
            segnet = build_segnet(model)
            if model == "proposed" and not small_head:  # the first implementation: Kaiming fan_out like every other conv
                torch.nn.init.kaiming_normal_(segnet.head.weight, mode="fan_out")
            seg_losses = train_segmentation(segnet, train, steps=cfg.seg_steps, lr=lr, seed=cfg.seed)
            segnets[key] = (segnet, seg_losses)
        segnet, seg_losses = segnets[key]
        seed_everything(cfg.seed + 1)
        classifier = DefectClassifier(in_channels=segnet.feature_channels + 1, norm=clf_norm)
        train_classifier(segnet, classifier, train, steps=cfg.clf_steps, lr=lr, seed=cfg.seed)
        row = {"variant": name, "first_seg_loss": float(np.mean(seg_losses[:50]))}
        for split, dataset in (("train", train), ("val", val)):
            scores = predict(segnet, classifier, dataset, progress=False)
            y = dataset.table["label"].to_numpy()
            row[f"{split}_ap"] = average_precision_score(y, scores["score"])
            row[f"{split}_seg_max_ap"] = average_precision_score(y, scores["seg_max"])
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
        print(row, flush=True)
    frame = pd.DataFrame(rows)
    print(frame.round(3).to_string(index=False))
    out = results_root() / "seg000-checks" / f"{model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out, {
        "rows": rows,
        "split": "train fold 1, validate fold 2 of the folds manifest (test fold 0 untouched)",
        "config": cfg.model_dump(), "folds_manifest": str(manifest.path),
        "git": git_state(), "packages": package_versions(), "device": device_info(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


if __name__ == "__main__":
    main()
