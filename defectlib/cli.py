"""The ``defectlib`` command.

::

    defectlib data check [NAME ...]            # decode and check everything, name every fault
    defectlib data summary [NAME ...]          # JSON statistics of the datasets found
    defectlib data download NAME [...]         # fetch, verify (SHA-256) and unpack
    defectlib data folds NAME [--k K]          # write the folds manifest, print its hash
    defectlib book [--profile cpu] [-p K V]    # papermill every notebook, build the book

Errors print one line (or a short block) naming what is wrong, and exit with status 2; an
operating-system error (a read-only folder, a full disk) names the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import grid_cli
from .deploy import cli as deploy_cli
from .config import DEFAULT_PROFILE, PROFILE_NAMES
from .errors import DataError, DefectlibError


def _data_root(args: argparse.Namespace) -> Path:
    from .paths import data_root

    return Path(args.root).absolute() if args.root else data_root()


def _present(names: list[str], root: Path) -> list[str]:
    """The datasets of ``names`` (default: every real one) whose folder exists; else the error."""
    from .data import DATASETS, dataset_folder, dataset_spec, missing_data_message

    explicit = bool(names)
    names = names or [n for n, spec in DATASETS.items() if not spec.generated]
    present = [n for n in names if dataset_spec(n).generated or dataset_folder(n, root).is_dir()]
    missing = [n for n in names if n not in present]
    if (explicit and missing) or not present:
        # The message names the path, the layout and the fix.
        raise DataError("\n".join(missing_data_message(n, dataset_folder(n, root)) for n in missing))
    return present


def _verify_all(names: list[str], root: Path) -> None:
    """Check every dataset of ``names`` (cached), and raise one error listing all their faults."""
    from .data import dataset_folder, dataset_spec
    from .data.integrity import verify_dataset

    messages = []
    for name in names:
        if dataset_spec(name).scanner is None:
            continue
        try:
            verify_dataset(name, dataset_folder(name, root))
        except DataError as exc:
            messages.append(str(exc))
    if messages:
        raise DataError("\n".join(messages))


def cmd_data_summary(args: argparse.Namespace) -> int:
    from .data import dataset_folder, load_samples
    from .data.summary import summarize

    root = _data_root(args)
    present = _present(args.names, root)
    _verify_all(present, root)
    report = {name: {"path": str(dataset_folder(name, root)), **summarize(load_samples(name, root))} for name in present}
    print(json.dumps(report, indent=2))
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from .data import dataset_folder, dataset_spec
    from .data.folds import changed_data_message, data_checksum
    from .data.integrity import check_dataset, faults_message, remember_clean
    from .paths import results_root

    root = _data_root(args)
    messages = []
    for name in _present(args.names, root):
        if dataset_spec(name).scanner is None:
            print(f"{name}: generated data, not checked")
            continue
        report = check_dataset(name, dataset_folder(name, root))
        hashes = report.hashes()
        checksum = data_checksum(hashes)
        changed = changed_data_message(name, hashes, checksum, results_root() / "folds") if len(hashes) else None
        if report.ok and not changed:
            remember_clean(report)
            print(f"{name}: OK, {len(report.samples)} images and their masks decoded and checked in "
                  f"{report.seconds:.1f} s; data checksum {checksum[:12]} ({report.folder})")
        if not report.ok:
            messages.append(faults_message(name, report.folder, report.faults))
        if changed:
            messages.append(changed)
    if messages:
        raise DataError("\n".join(messages))
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
    manifest = ensure_folds(args.name, table, n_folds=k, seed=args.seed, allow_new_split=args.new_split)
    print(json.dumps({"path": str(manifest.path), "sha256": manifest.sha256, "data_checksum": manifest.data_checksum}, indent=2))
    return 0


def _at_least(least: int, what: str):
    """An argparse type: an integer of at least ``least`` (the message names ``what``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{what} must be at least {least}, got {value}")
        return value

    return parse


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


def _on_off(value: str | None) -> bool | None:
    return None if value is None else value == "on"


def _bench_levers(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``run_bench`` that ``defectlib bench``'s flags set."""
    options = {k: v for k, v in (("inplace", _on_off(args.bottleneck_inplace)),
                                 ("per_path_norm", _on_off(args.per_path_norm))) if v is not None}
    return {"model_options": options, "channels_last": _on_off(args.channels_last),
            "fuse_bn": args.fuse_bn != "off", "compile": args.compile, "freezing": args.freezing, "amp": args.amp,
            "retain_freed_memory": {"retained": True, "system": False, None: None}[args.heap]}


def bench_file_stem(device: str, levers: dict, threads: int | None) -> str:
    """The default file name of a ``defectlib bench`` record: the device and the levers set,
    so a lever run never overwrites the baseline.

    Examples
    --------
    >>> bench_file_stem("cpu", {"channels_last": False, "fuse_bn": False, "model_options": {"inplace": False}}, 1)
    'cpu-channels-first-unfused-bn-threads1-inplace-off'
    """
    layout = {None: None, True: "channels-last", False: "channels-first"}[levers.get("channels_last")]
    heap = {None: None, True: "retained-heap", False: "system-heap"}[levers.get("retain_freed_memory")]
    tags = [t for t, on in ((layout, layout), ("unfused-bn", not levers.get("fuse_bn", True)),
                            ("compile", levers.get("compile")), ("freezing", levers.get("freezing")),
                            ("bf16", levers.get("amp")), (heap, heap), (f"threads{threads}", threads)) if on]
    tags += [f"{k.replace('_', '-')}-{'on' if v else 'off'}" for k, v in (levers.get("model_options") or {}).items()]
    return "-".join([device.split(":")[0], *tags])


def cmd_bench(args: argparse.Namespace) -> int:
    from .paths import results_root
    from .perf.bench import run_bench
    from .perf.chapter import profile_sizes

    sizes = profile_sizes(args.profile)
    if args.models:
        sizes = {m: sizes.get(m, []) for m in args.models}
    if args.size:
        sizes = {m: [list(s) for s in args.size] for m in sizes}
    device = args.device or ("cuda" if __import__("torch").cuda.is_available() else "cpu")
    levers = _bench_levers(args)
    out = Path(args.out) if args.out else results_root() / "bench" / f"{bench_file_stem(device, levers, args.threads)}.json"
    record = run_bench(out, sizes, device=device, threads=args.threads, train_repeats=args.repeats,
                       infer_repeats=2 * args.repeats, **levers)
    print(f"matmul peak: {record['matmul_peak_flops_per_s'] / 1e9:.1f} GFLOP/s ({device}, "
          f"{record['machine']['torch_threads']} threads)")
    on = [k for k in ("channels_last", "fuse_bn", "compile", "freezing", "amp") if record["rows"] and record["rows"][0][k]]
    print(f"levers on: {', '.join(on) or 'none'}")  # in effect, including a network's own (channels-last)
    header = f"{'network':<22}{'input':>10}{'params M':>10}{'GFLOPs':>9}{'train s':>9}{'infer ms':>10}{'peak MB':>9}{'inf %peak':>10}{'train %peak':>12}"
    print(header)
    for r in record["rows"]:
        print(f"{r['model']:<22}{r['input']:>10}{r['parameters'] / 1e6:>10.2f}{r['gflops_per_image']:>9.2f}"
              f"{r['train_step_s']:>9.3f}{r['inference_s'] * 1e3:>10.1f}{r['peak_memory_mb']:>9.0f}"
              f"{100 * r['inference_fraction_of_peak']:>10.1f}{100 * r['train_fraction_of_peak']:>12.1f}")
    for r in record["rows"]:
        if r.get("compile_inference_s") is not None:
            print(f"compile ({r['model']} {r['input']}): inference {r['compile_inference_s']:.1f} s, "
                  f"training {r['compile_train_s']:.1f} s (first call, not in the timings)")
    print(f"written: {out} ({record['wall_time_s']:.0f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="defectlib", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="datasets: check, summary, download, folds")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    root_help = "data root (default: $DEFECTLIB_DATA or ./data)"

    check = data_sub.add_parser("check", help="decode and check every file; name every fault (exit 2 if any)")
    check.add_argument("names", nargs="*", help="datasets (default: every real dataset found)")
    check.add_argument("--root", help=root_help)
    check.set_defaults(func=cmd_data_check)

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
    folds.add_argument("--k", type=_at_least(2, "the number of folds"), help="number of folds (default: the study's)")
    folds.add_argument("--seed", type=_at_least(0, "the seed"), default=0)
    folds.add_argument("--root", help=root_help)
    folds.add_argument("--new-split", action="store_true",
                       help="split data that differs from the dataset's existing folds manifests anew "
                            "(without it, that is an error naming the differences)")
    folds.set_defaults(func=cmd_data_folds)

    grid_cli.add_parser(sub)
    deploy_cli.add_parser(sub)

    book = sub.add_parser("book", help="execute every notebook with papermill and build the book")
    book.add_argument("--profile", default=DEFAULT_PROFILE, choices=list(PROFILE_NAMES))
    book.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append", default=[],
                      metavar=("NAME", "VALUE"),
                      help="override a notebook parameter in every notebook that declares it (repeatable)")
    book.add_argument("--path-output", help="where _build/ goes (default: the project root)")
    book.add_argument("--no-execute", action="store_true", help="build from already-staged notebooks")
    book.set_defaults(func=cmd_book)

    bench = sub.add_parser("bench", help="speed and memory of the study's networks (figures, JSON)")
    bench.add_argument("models", nargs="*", help="networks of defectlib.models.MODELS, e.g. seg000/proposed "
                                                 "(default: every network the profile trains)")
    bench.add_argument("--profile", default=DEFAULT_PROFILE, choices=list(PROFILE_NAMES),
                       help="measure at the input sizes this profile trains each network at")
    bench.add_argument("--size", type=_size, action="append", help="input HxW instead (repeatable)")
    bench.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    bench.add_argument("--repeats", type=int, default=5, help="timed training steps (inference: twice as many)")
    bench.add_argument("--threads", type=int, help="torch.set_num_threads (default: PyTorch's; the study trains at 1)")
    bench.add_argument("--channels-last", nargs="?", const="on", choices=["on", "off"], default=None,
                       help="force the channels-last memory format on every network (on, the bare flag) or "
                            "channels-first (off); default: each network's own (the proposed: channels-last)")
    bench.add_argument("--fuse-bn", choices=["on", "off"], default=None,
                       help="inference with BatchNorm folded into the convolutions, as the study predicts "
                            "(default: on); off: the module as it is")
    bench.add_argument("--compile", action="store_true",
                       help="torch.compile inference and the training loss (compile time reported apart)")
    bench.add_argument("--freezing", action="store_true", help="with --compile: inductor freezing for inference")
    bench.add_argument("--amp", action="store_true",
                       help="bfloat16 autocast for inference and the training loss (weights stay float32)")
    bench.add_argument("--bottleneck-inplace", choices=["on", "off"],
                       help="the proposed network's in-place bottleneck (a constructor argument; default on)")
    bench.add_argument("--per-path-norm", choices=["on", "off"],
                       help="the proposed network's bottleneck with one BatchNorm per path (default off)")
    bench.add_argument("--heap", choices=["retained", "system"], default=None,
                       help="retained: keep freed memory in the process (defectlib.perf.allocator); "
                            "system (default, as the study trains): the C library's default, which returns it")
    bench.add_argument("--out", help="JSON path (default: <results>/bench/<device>[-<levers>].json)")
    bench.set_defaults(func=cmd_bench)
    return parser


def os_error_message(exc: OSError) -> str:
    """``<file>: <what the system said>`` for an operating-system error.

    Examples
    --------
    >>> os_error_message(PermissionError(13, "Permission denied", "/r/folds/x.csv"))
    '/r/folds/x.csv: Permission denied'
    """
    if exc.filename is None:
        return str(exc)
    files = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
    return f"{files}: {exc.strerror}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DefectlibError as exc:
        print(f"defectlib: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only folder, a full disk: say which file
        print(f"defectlib: error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("defectlib: interrupted; finished results are kept, a re-run continues", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
