"""The ``defectlib`` command.

::

    defectlib data summary [NAME ...]          # JSON statistics of the datasets found
    defectlib data download NAME [...]         # fetch, verify (SHA-256) and unpack
    defectlib data folds NAME [--k K]          # write the folds manifest, print its hash
    defectlib book [--profile cpu] [-p K V]    # papermill every notebook, build the book

Errors print one line (or a short block) naming what is wrong, and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import DefectlibError


def _data_root(args: argparse.Namespace) -> Path:
    from .paths import data_root

    return Path(args.root) if args.root else data_root()


def cmd_data_summary(args: argparse.Namespace) -> int:
    from .data import DATASETS, dataset_folder, load_samples
    from .data.summary import summarize

    root = _data_root(args)
    names = args.names or [n for n, spec in DATASETS.items() if not spec.generated]
    found = {n: dataset_folder(n, root) for n in names}
    present = [n for n, folder in found.items() if folder.is_dir() or DATASETS[n].generated]
    if not present:
        # Raise the message of the first dataset: it names the path, layout and the fix.
        load_samples(names[0], root)
    report = {name: {"path": str(found[name]), **summarize(load_samples(name, root))} for name in present}
    print(json.dumps(report, indent=2))
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from .data.download import download_dataset

    root = _data_root(args)
    root.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        path = download_dataset(name, root=root, url=args.url, sha256=args.sha256, force=args.force)
        print(f"{name}: {path}")
    return 0


def cmd_data_folds(args: argparse.Namespace) -> int:
    from .data import dataset_spec, load_samples
    from .data.folds import ensure_folds

    table = load_samples(args.name, _data_root(args))
    k = args.k or dataset_spec(args.name).n_folds_default
    manifest = ensure_folds(args.name, table, n_folds=k, seed=args.seed)
    print(json.dumps({"path": str(manifest.path), "sha256": manifest.sha256, "data_checksum": manifest.data_checksum}, indent=2))
    return 0


def _parse_value(text: str):
    """Papermill-like: int, float, bool, None, JSON lists/dicts, else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"True": True, "False": False, "None": None}.get(text, text)


def cmd_book(args: argparse.Namespace) -> int:
    from .book import build_book, notebook_runs_path

    parameters = {k: _parse_value(v) for k, v in args.parameters}
    index = build_book(
        args.profile,
        path_output=Path(args.path_output) if args.path_output else None,
        parameters=parameters,
        execute=not args.no_execute,
    )
    print(f"book built: {index}")
    record = notebook_runs_path(args.profile, Path(args.path_output).resolve() if args.path_output else None)
    if not args.no_execute and record.is_file():
        runs = json.loads(record.read_text())["notebooks"]
        for run in runs:
            print(f"  {run['notebook']:<28} {run['duration_s'] / 60:7.1f} min, {len(run['runs'])} runs written to the results cache")
        print(f"notebooks: {sum(r['duration_s'] for r in runs) / 3600:.2f} h in all (each notebook's time, "
              f"the runs it wrote and the results cached before it: {record})")
    return 0


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 1408x512; got {text!r}") from None
    return h, w


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import BENCH_MODELS, default_sizes, run_bench
    from .paths import results_root

    sizes = None
    if args.size:
        sizes = {BENCH_MODELS[m].experiment: list(args.size) for m in (args.models or BENCH_MODELS)}
    device = args.device or ("cuda" if __import__("torch").cuda.is_available() else "cpu")
    fuse_bn = args.fuse_bn != "off"
    levers = {"fuse_bn": fuse_bn, "compile": args.compile, "freezing": args.freezing, "amp": args.amp,
              "retain_freed_memory": args.heap == "retained"}
    if args.bottleneck_inplace is not None:
        levers["bottleneck_inplace"] = args.bottleneck_inplace == "on"
    if args.per_path_norm is not None:
        levers["per_path_norm"] = args.per_path_norm == "on"
    channels_last = None if args.channels_last is None else args.channels_last == "on"
    # The default file name says which levers were set, so a lever run never overwrites the baseline.
    layout = {None: None, True: "channels-last", False: "channels-first"}[channels_last]
    tags = [t for t, on in ((layout, layout), ("unfused-bn", not fuse_bn),
                            ("compile", args.compile), ("freezing", args.freezing), ("bf16", args.amp),
                            ("system-heap", args.heap == "system")) if on]
    if args.threads is not None:
        tags.append(f"threads{args.threads}")
    if args.bottleneck_inplace is not None:
        tags.append(f"inplace-{args.bottleneck_inplace}")
    if args.per_path_norm is not None:
        tags.append(f"per-path-norm-{args.per_path_norm}")
    stem = "-".join([device.split(":")[0], *tags])
    out = Path(args.out) if args.out else results_root() / "bench" / f"{stem}.json"
    record = run_bench(out, models=args.models or None, sizes=sizes or default_sizes(), device=device,
                       channels_last=channels_last, threads=args.threads, train_repeats=args.repeats,
                       infer_repeats=2 * args.repeats, **levers)
    print(f"matmul peak: {record['matmul_peak_flops_per_s'] / 1e9:.1f} GFLOP/s ({device}, "
          f"{record['machine']['torch_threads']} threads)")
    on = [k for k in ("channels_last", "fuse_bn", "compile", "freezing", "amp") if record["rows"] and record["rows"][0][k]]
    print(f"levers on: {', '.join(on) or 'none'}")  # in effect, including a model's own (channels-last)
    header = f"{'model':<14}{'input':>10}{'params M':>10}{'GFLOPs':>9}{'train s':>9}{'infer ms':>10}{'peak MB':>9}{'inf %peak':>10}{'train %peak':>12}"
    print(header)
    for r in record["rows"]:
        print(f"{r['model']:<14}{r['input']:>10}{r['parameters'] / 1e6:>10.2f}{r['gflops_per_image']:>9.2f}"
              f"{r['train_step_s']:>9.3f}{r['inference_s'] * 1e3:>10.1f}{r['peak_memory_mb']:>9.0f}"
              f"{100 * r['inference_fraction_of_peak']:>10.1f}{100 * r['train_fraction_of_peak']:>12.1f}")
    compiled = [r for r in record["rows"] if r.get("compile_inference_s") is not None]
    for r in compiled:
        print(f"compile ({r['model']} {r['input']}): inference {r['compile_inference_s']:.1f} s, "
              f"training {r['compile_train_s']:.1f} s (first call, not in the timings)")
    print(f"written: {out} ({record['wall_time_s']:.0f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="defectlib", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="datasets: summary, download, folds")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    root_help = "data root (default: $DEFECTLIB_DATA or ./data)"

    summary = data_sub.add_parser("summary", help="print JSON statistics per dataset found")
    summary.add_argument("names", nargs="*", help="datasets (default: every real dataset found)")
    summary.add_argument("--root", help=root_help)
    summary.set_defaults(func=cmd_data_summary)

    download = data_sub.add_parser("download", help="download, verify and unpack official archives")
    download.add_argument("names", nargs="+", choices=["kolektorsdd", "magnetictile"])
    download.add_argument("--root", help=root_help)
    download.add_argument("--url", help="another URL (a mirror, or file:// of a manual download)")
    download.add_argument("--sha256", help="expected SHA-256, overriding the pinned one")
    download.add_argument("--force", action="store_true", help="download again even if present")
    download.set_defaults(func=cmd_data_download)

    folds = data_sub.add_parser("folds", help="write (or check) a folds manifest")
    folds.add_argument("name")
    folds.add_argument("--k", type=int, help="number of folds (default: the study's)")
    folds.add_argument("--seed", type=int, default=0)
    folds.add_argument("--root", help=root_help)
    folds.set_defaults(func=cmd_data_folds)

    book = sub.add_parser("book", help="execute every notebook with papermill and build the book")
    book.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "paper"])
    book.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append", default=[],
                      metavar=("NAME", "VALUE"),
                      help="override a notebook parameter in every notebook that declares it (repeatable)")
    book.add_argument("--path-output", help="where _build/ goes (default: the project root)")
    book.add_argument("--no-execute", action="store_true", help="build from already-staged notebooks")
    book.set_defaults(func=cmd_book)

    bench = sub.add_parser("bench", help="speed and memory of every model (figures, JSON)")
    bench.add_argument("models", nargs="*", help="models (default: all of defectlib.bench.BENCH_MODELS)")
    bench.add_argument("--size", type=_size, action="append", help="input HxW (repeatable; default: every profile's)")
    bench.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    bench.add_argument("--repeats", type=int, default=5, help="timed training steps (inference: twice as many)")
    bench.add_argument("--channels-last", nargs="?", const="on", choices=["on", "off"], default=None,
                       help="force the channels-last memory format on every model (on, the bare flag) or "
                            "channels-first (off); default: each model's own (the proposed net: channels-last)")
    bench.add_argument("--per-path-norm", choices=["on", "off"], default=None,
                       help="the proposed net's bottleneck with one BatchNorm per path (as the paper draws it)")
    bench.add_argument("--fuse-bn", choices=["on", "off"], default=None,
                       help="inference with BatchNorm folded into the convolutions, as the study predicts "
                            "(default: on); off: the module as it is")
    bench.add_argument("--compile", action="store_true",
                       help="torch.compile inference and the training loss (compile time reported apart)")
    bench.add_argument("--freezing", action="store_true", help="with --compile: inductor freezing for inference")
    bench.add_argument("--amp", action="store_true",
                       help="bfloat16 autocast for inference and the training loss (weights stay float32)")
    bench.add_argument("--threads", type=int, help="torch.set_num_threads (default: PyTorch's)")
    bench.add_argument("--bottleneck-inplace", choices=["on", "off"],
                       help="the proposed net's in-place bottleneck forward (default: the class default, on)")
    bench.add_argument("--heap", choices=["retained", "system"], default="retained",
                       help="retained (default, as the study trains): keep freed memory in the process "
                            "(defectlib.allocator); system: the C library's default, which returns it")
    bench.add_argument("--out", help="JSON path (default: <results>/bench/<device>[-<levers>].json)")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DefectlibError as exc:
        print(f"defectlib: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("defectlib: interrupted; finished results are kept, a re-run continues", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
