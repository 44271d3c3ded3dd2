"""``defectlib train``, ``predict``, ``export`` and ``bench-runtimes``: the detector on one's own parts.

::

    defectlib train FOLDER|DATASET --out MODEL [--profile converged] [--seg-steps N] ...
    defectlib predict MODEL IMAGES...|FOLDER [--out scores.csv] [--overlays DIR] [--runtime torch]
    defectlib export MODEL --onnx [--check IMAGES...]
    defectlib bench-runtimes MODEL [--size 1408x512 ...] [--threads 2] [--repeats 20]

The folder layout is in :mod:`defectlib.deploy.folder`; the model directory in
:mod:`defectlib.deploy.model`. Errors are one message each, exit status 2
(:func:`defectlib.cli.main`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import DataError


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 352x128; got {text!r}") from None
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {text!r}")
    return h, w


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train_config, train_model

    cfg = train_config(args.profile, args.network, seed=args.seed, seg_steps=args.seg_steps,
                       clf_steps=args.clf_steps, input_size=list(args.input_size) if args.input_size else None,
                       threshold=args.threshold)
    out = train_model(args.data, Path(args.out), cfg, progress=not args.quiet,
                      log=lambda text: print(text, file=sys.stderr))
    from .model import read_info

    val = read_info(out)["validation"]
    print(f"model: {out} (validation: {val['n']} images, AP {val['ap']:.3f}, F1 {val['f1']:.3f} at "
          f"{cfg.threshold:g}, FP {val['fp']}, FN {val['fn']}; model card {out / 'MODEL_CARD.md'})")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .model import load_model
    from .predict import errors_message, list_images, predict_images

    model = load_model(args.model)
    table = predict_images(model, list_images(args.images), runtime=args.runtime, overlays=args.overlays,
                           threads=args.threads)
    text = table.to_csv(index=False, lineterminator="\n", float_format="%.6f")
    if args.out:
        from .. import atomic

        atomic.write_text(args.out, text)
        print(f"{len(table)} images scored: {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    problem = errors_message(table)
    if problem:
        raise DataError(problem)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_model

    if not args.onnx:
        raise DataError("say which format: defectlib export MODEL --onnx")
    record = export_model(args.model, check=args.check)
    diffs = ", ".join(f"{name} score {d['score']:.2g}, map {d['map']:.2g}" for name, d in record["max_abs_diff"].items())
    print(f"{Path(args.model) / record['file']}: opset {record['opset']}, BatchNorm folded; max abs difference from "
          f"PyTorch on {len(record['images'])} images: {diffs} (tolerance {record['tolerance']:g})")
    return 0


def cmd_bench_runtimes(args: argparse.Namespace) -> int:
    from ..paths import results_root
    from .bench import bench_runtimes

    out = Path(args.out) if args.out else results_root() / "bench" / f"runtimes-{Path(args.model).name}-threads{args.threads}.json"
    record = bench_runtimes(args.model, out, sizes=args.size, threads=args.threads, repeats=args.repeats)
    print(f"{'input':>10}{'runtime':>13}{'median ms':>11}{'vs torch':>10}")
    for r in record["rows"]:
        print(f"{r['input']:>10}{r['runtime']:>13}{r['median_ms']:>11.1f}{r['speedup_vs_torch']:>9.2f}x")
    for size, best in record["fastest"].items():
        print(f"fastest at {size}: {best['runtime']}, {best['speedup_vs_torch']:.2f}x the PyTorch path "
              f"({args.threads} threads, batch 1)")
    print(f"written: {out}")
    return 0


def add_parser(sub) -> None:
    """Add ``train``, ``predict``, ``export`` and ``bench-runtimes`` to the ``defectlib`` command."""
    from . import NETWORKS, RUNTIMES, TRAIN_PROFILES

    train = sub.add_parser("train", help="train the detector on an image folder (or a dataset of the study)")
    train.add_argument("data", help="image folder (good/, defective/, masks/; or labels.csv) or a dataset name")
    train.add_argument("--out", required=True, help="the model directory to write (resumes a stopped training)")
    train.add_argument("--profile", default="converged", choices=TRAIN_PROFILES,
                       help="the study's recipe (converged: the book's, at 352x128; smoke: a few steps, for tests)")
    train.add_argument("--network", default="proposed", choices=NETWORKS)
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--seg-steps", type=int, help="segmentation steps (default: the recipe's)")
    train.add_argument("--clf-steps", type=int, help="classifier steps (default: the recipe's)")
    train.add_argument("--input-size", type=_size, help="network input HxW (default: the recipe's)")
    train.add_argument("--threshold", type=float, help="decision threshold on the score (default 0.9)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser("predict", help="score images with a model directory (CSV: file, score, decision, "
                                             "defect_area)")
    predict.add_argument("model", help="model directory (defectlib train)")
    predict.add_argument("images", nargs="+", help="image files and/or folders (searched recursively)")
    predict.add_argument("--out", help="CSV file (default: standard output)")
    predict.add_argument("--overlays", help="folder for overlay PNGs of the segmentation map on each image")
    predict.add_argument("--runtime", default="torch", choices=RUNTIMES,
                         help="torch, or the exported ONNX under onnxruntime or openvino")
    predict.add_argument("--threads", type=int, help="intra-op threads of the runtime")
    predict.set_defaults(func=cmd_predict)

    export = sub.add_parser("export", help="export a model directory to ONNX, checked against PyTorch")
    export.add_argument("model", help="model directory (defectlib train)")
    export.add_argument("--onnx", action="store_true", help="write model.onnx (BatchNorm folded, opset 17)")
    export.add_argument("--check", nargs="+", help="images to check the export on (default: the model's "
                                                   "validation images)")
    export.set_defaults(func=cmd_export)

    bench = sub.add_parser("bench-runtimes", help="the exported model under torch, onnxruntime and openvino "
                                                  "(JSON under <results>/bench/)")
    bench.add_argument("model", help="model directory with model.onnx")
    bench.add_argument("--size", type=_size, action="append", help="input HxW (repeatable; default 1408x512 and "
                                                                   "the model's input size)")
    bench.add_argument("--threads", type=int, default=2)
    bench.add_argument("--repeats", type=int, default=20, help="timed calls per runtime and size")
    bench.add_argument("--out", help="JSON path (default: <results>/bench/runtimes-<model>-threads<N>.json)")
    bench.set_defaults(func=cmd_bench_runtimes)


__all__ = ["add_parser"]
