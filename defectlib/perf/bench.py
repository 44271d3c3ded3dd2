"""Speed and memory of every model of the study: figures, not timed tests.

For each model and input size :func:`bench_model` measures

* parameters, and FLOPs per image of one inference (``torch.utils.flop_counter``; a
  multiply-add counts as 2),
* the training step time at batch 1 (forward, loss, backward, Adam step) and the inference
  latency (``torch.inference_mode``, batch 1), as medians over repeated runs after warm-up,
* the peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the peak resident
  memory of a fresh child process that does only this measurement, minus its resident memory
  right after building the model (so imports and the model's own weights are not counted),
* achieved FLOP/s of inference and of training (training counted as 3× the forward FLOPs, the
  usual forward + backward estimate), and their fraction of the machine's *measured* peak:
  :func:`matmul_peak` times a large float32 matrix product in the same run.

:func:`run_bench` measures every (model, size) in a child process each (so the memory figures
are independent) and writes one JSON file atomically. ``defectlib bench`` is its command line.

The models are the registry :data:`BENCH_MODELS`: a name maps to a function building the
module and its training loss for one input, so a new experiment adds its models here.

Speed levers, off by default unless the model or the study turns one on itself; every row
records which were in effect:

* ``channels_last``: model and input in the channels-last memory format (training and
  inference). ``None`` (the default) leaves each model in its own layout: the proposed
  network is channels-last (:class:`~defectlib.models.lightweight.LightweightSegNet`), the
  baselines channels-first; True / False force one layout on every model;
* ``fuse_bn`` (default on, as the study predicts): inference on
  :func:`~defectlib.models.fuse.inference_model`'s copy, BatchNorm folded into the convolutions
  and parameters channels-last, the copy every prediction function of :mod:`defectlib.training`
  runs on (training is unaffected: it needs the BatchNorms); off measures the module as it is;
* ``compile``: ``torch.compile`` of the inference module and of the training loss (forward and
  loss; the backward is compiled by AOTAutograd, the optimizer step is not). The first call of
  each is timed on its own (``compile_inference_s``, ``compile_train_s``: compilation plus one
  run) and excluded from the warm-up and the timed runs; ``freezing`` adds inductor's freezing
  (constant-folded, pre-packed weights) to the inference compile;
* ``threads``: ``torch.set_num_threads`` before measuring (None: PyTorch's default);
* ``bottleneck_inplace``: :attr:`MultiKernelBottleneck.inplace
  <defectlib.models.lightweight.MultiKernelBottleneck.inplace>` (None: the class default), the
  proposed network's output-identical in-place bottleneck forward;
* ``per_path_norm``: :attr:`MultiKernelBottleneck.per_path_norm
  <defectlib.models.lightweight.MultiKernelBottleneck.per_path_norm>` (None: the class default,
  off), one BatchNorm per depthwise path as the paper draws it instead of one over their
  concatenation (the same function; what the shared one buys);
* ``retain_freed_memory`` (default on, as the study trains): glibc keeps freed memory in the
  process instead of returning it to the kernel (:mod:`defectlib.allocator`), so a training
  step does not fault in and zero fresh pages for its activations; off leaves the C library's
  default. Every measurement runs in a fresh child process, so the two never mix.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from . import allocator, atomic
from .errors import ConfigError, UnavailableError
from .models.counting import count_parameters, flops_per_image
from .training.two_stage import autocast

__all__ = [
    "BENCH_MODELS",
    "BenchModel",
    "bench_model",
    "matmul_peak",
    "run_bench",
    "default_sizes",
    "compile_unavailable_reason",
]


@dataclass(frozen=True)
class BenchModel:
    """A model of the study as the benchmark sees it.

    ``build()`` returns ``(module, loss_fn)``: ``module(x)`` is the inference pass on a
    ``(1, in_channels, H, W)`` image, ``loss_fn(module, x)`` the training loss of one step.
    """

    build: Callable[[], tuple[nn.Module, Callable[[nn.Module, torch.Tensor], torch.Tensor]]]
    in_channels: int
    experiment: str
    description: str


class _SegAndClassifier(nn.Module):
    """Seed 000 inference: segmentation network, then the classifier on its output."""

    def __init__(self, segnet: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.segnet, self.classifier = segnet, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, logits = self.segnet(x)
        return self.classifier(features, logits)


def _seg000(name: str):
    def build():
        from .models import DefectClassifier, build_segnet

        segnet = build_segnet(name)
        model = _SegAndClassifier(segnet, DefectClassifier(in_channels=segnet.feature_channels + 1))

        def loss_fn(module: _SegAndClassifier, x: torch.Tensor) -> torch.Tensor:
            # The stage-1 step, the bulk of seed 000's training: map vs an (empty) target.
            _, logits = module.segnet(x)
            return nn.functional.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))

        return model, loss_fn

    return build


def _recognition(method: str):
    def build():
        from .models.recognition import RECOGNITION_MODELS
        from .training.recognition import recognition_loss

        model = RECOGNITION_MODELS[method](find_weights=False)

        def loss_fn(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
            # One defective image whose every block is defective: DR's loss over the selected
            # blocks (the classifier's over the image), as in a training step.
            batch = {"label": torch.ones(len(x), dtype=torch.long, device=x.device),
                     "mask": torch.ones(len(x), 1, *x.shape[-2:], device=x.device)}
            return recognition_loss(module(x), batch, method=method, blocks_per_class=16)

        return model, loss_fn

    return build


def _seg004(name: str):
    def build():
        from .models.seg004 import build_seg004
        from .training.seg004 import crop_loss

        model = build_seg004(name, find_weights=False)
        local = name == "improved"  # the improved net trains on a centred crop of half each side

        def loss_fn(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
            h, w = x.shape[-2:]
            boxes = [(h // 4, w // 4, h // 2, w // 2)] * len(x) if local else None
            return crop_loss(module, x, torch.zeros(len(x), 1, h, w, device=x.device), boxes)

        return model, loss_fn

    return build


BENCH_MODELS: dict[str, BenchModel] = {
    "proposed": BenchModel(_seg000("proposed"), 1, "seg000", "proposed segmentation net + classifier"),
    "deeplabv3plus": BenchModel(_seg000("deeplabv3plus"), 1, "seg000", "DeepLabv3+ (ResNet-50) at 1/8 + classifier"),
    "unet": BenchModel(_seg000("unet"), 1, "seg000", "U-Net (ResNet-34) at 1/8 + classifier"),
    "dr": BenchModel(_recognition("dr"), 1, "rec004", "DR: fully convolutional ResNet-50 block detector"),
    "resnet50": BenchModel(_recognition("resnet50"), 1, "rec004", "ResNet-50 image classifier"),
    "seg004-deeplabv3plus": BenchModel(_seg004("deeplabv3plus"), 1, "seg004",
                                       "DeepLabv3+ (ResNet-50, full resolution), seed 004"),
    "seg004-improved": BenchModel(_seg004("improved"), 1, "seg004",
                                  "improved DeepLabv3+ (local branch, no ASPP), seed 004"),
}


def default_sizes() -> dict[str, list[tuple[int, int]]]:
    """Input sizes per experiment: every profile's (except smoke; seed 004's segmentation has
    one per dataset), plus seed 000 at 704×256 (the issue's training-step target)."""
    from .experiments.rec004 import Rec004Config
    from .experiments.seg000 import Seg000Config
    from .experiments.seg004 import INPUT_SIZES

    real = [k for k in Seg000Config.PROFILES if k != "smoke"]
    seg000 = {tuple(Seg000Config.PROFILES[k]["input_size"]) for k in real} | {(704, 256)}
    rec004 = {tuple(Rec004Config.PROFILES[k]["input_size"]) for k in real}
    seg004 = {tuple(size) for k in real for d, size in INPUT_SIZES[k].items() if d != "synthetic"}
    return {"seg000": sorted(seg000), "rec004": sorted(rec004), "seg004": sorted(seg004)}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_time(fn: Callable[[], object], *, repeats: int, warmup: int, device: str) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(*, n: int = 2048, repeats: int = 5, device: str = "cpu", dtype=torch.float32) -> float:
    """Measured FLOP/s of an ``n × n`` matrix product (``2 n³`` FLOPs), the median of ``repeats``.

    Examples
    --------
    >>> matmul_peak(n=64, repeats=1) > 0
    True
    """
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = _median_time(lambda: a @ b, repeats=repeats, warmup=1, device=device)
    return 2 * n**3 / seconds


def _rss_bytes() -> int:
    """Current resident memory of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


def compile_unavailable_reason(device: str = "cpu") -> str | None:
    """Why ``torch.compile`` (inductor) cannot work for ``device`` here, or None if it can.

    On the CPU inductor writes C++ and needs a compiler: ``$CXX`` if set, else one of g++,
    clang++, c++ on the PATH. (None does not promise success, only that nothing is missing.)
    """
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if device.startswith("cpu"):
        cxx = os.environ.get("CXX")
        candidates = [cxx] if cxx else ["g++", "clang++", "c++"]
        if not any(shutil.which(c) for c in candidates):
            return (f"torch.compile on the CPU (inductor) needs a C++ compiler; none of {candidates} is on "
                    "the PATH (install g++, or set CXX)")
    return None


def _first_call_time(fn: Callable[[], object], device: str) -> float:
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def bench_model(
    name: str,
    input_size: Sequence[int],
    *,
    device: str = "cpu",
    train_repeats: int = 5,
    infer_repeats: int = 10,
    warmup: int = 2,
    channels_last: bool | None = None,
    fuse_bn: bool = True,
    compile: bool = False,
    freezing: bool = False,
    threads: int | None = None,
    bottleneck_inplace: bool | None = None,
    amp: bool = False,
    per_path_norm: bool | None = None,
    retain_freed_memory: bool = True,
) -> dict:
    """Measure one model at one input size (in this process). Returns a flat dict of figures.

    ``peak_memory_mb`` on the CPU is only meaningful in a process that measures nothing else
    (:func:`run_bench` takes care of that); with ``compile`` it includes the compiler's own
    memory. The levers (``channels_last``, ``fuse_bn``,
    ``compile``, ``freezing``, ``threads``, ``bottleneck_inplace``, ``per_path_norm``) are
    described in the module docstring; ``threads``, ``bottleneck_inplace`` and ``per_path_norm``
    change process-wide settings. ``amp`` runs
    inference and the training loss under ``torch.autocast`` in bfloat16 (weights and optimiser
    stay float32). ``output_max_abs_diff`` is the largest absolute difference of the inference
    output from that of the plain float32 model: what the levers cost in exactness.
    """
    if name not in BENCH_MODELS:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(BENCH_MODELS)}")
    if freezing and not compile:
        raise ConfigError("freezing is an option of torch.compile: pass compile=True as well")
    if compile:
        reason = compile_unavailable_reason(device)
        if reason is not None:
            raise UnavailableError(f"cannot benchmark with compile=True: {reason}")
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if retain_freed_memory:
        allocator.retain_freed_memory()
    elif allocator.heap_policy() == "retained":
        raise ConfigError("this process already retains freed memory (defectlib.allocator) and cannot undo "
                          "it; measure with retain_freed_memory=False in a fresh process (run_bench does)")
    from .models.lightweight import LightweightSegNet, MultiKernelBottleneck

    if bottleneck_inplace is not None:
        MultiKernelBottleneck.inplace = bool(bottleneck_inplace)
    if per_path_norm is not None:
        MultiKernelBottleneck.per_path_norm = bool(per_path_norm)

    spec = BENCH_MODELS[name]
    torch.manual_seed(0)
    h, w = (int(v) for v in input_size)
    model, loss_fn = spec.build()
    flops = flops_per_image(model, (h, w), in_channels=spec.in_channels)
    segnets = [m for m in model.modules() if isinstance(m, LightweightSegNet)]
    if channels_last is None:  # the model's own layout
        channels_last = any(m.channels_last for m in segnets)
        model = model.to(device)
    else:
        for m in segnets:
            m.channels_last = bool(channels_last)
        model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand(1, spec.in_channels, h, w, device=device).contiguous(memory_format=memory_format)
    model.eval()
    with torch.inference_mode():
        reference_output = model(x).float()
    if fuse_bn:
        from .models.fuse import inference_model

        # A separate, fused copy (built before the memory baseline: weights are not counted).
        infer_module: nn.Module = inference_model(model, channels_last=channels_last, fuse_bn=True)
    else:
        infer_module = model
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rss_before = _rss_bytes()

    if compile:
        infer_module = torch.compile(infer_module, options={"freezing": True} if freezing else None)

    def infer():
        with torch.inference_mode(), autocast(device, amp):
            return infer_module(x)

    compile_infer_s = _first_call_time(infer, device) if compile else None
    infer_s = _median_time(infer, repeats=infer_repeats, warmup=warmup, device=device)
    output_diff = float((infer().float() - reference_output).abs().max())

    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    if compile:
        compiled_loss = torch.compile(lambda inp: loss_fn(model, inp))
    else:
        compiled_loss = None

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = compiled_loss(x) if compiled_loss is not None else loss_fn(model, x)
        loss.backward()
        optimizer.step()

    compile_train_s = _first_call_time(step, device) if compile else None
    train_s = _median_time(step, repeats=train_repeats, warmup=warmup, device=device)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = max(0, _peak_rss_bytes() - rss_before)
    return {
        "model": name,
        "experiment": spec.experiment,
        "description": spec.description,
        "input": f"{h}×{w}",
        "height": h,
        "width": w,
        "parameters": count_parameters(model),
        "gflops_per_image": flops / 1e9,
        "train_step_s": train_s,
        "inference_s": infer_s,
        "images_per_s": 1.0 / infer_s,
        "peak_memory_mb": peak / 2**20,
        "inference_flops_per_s": flops / infer_s,
        "train_flops_per_s": 3 * flops / train_s,
        "channels_last": channels_last,
        "fuse_bn": fuse_bn,
        "compile": compile,
        "freezing": freezing,
        "amp": amp,
        "output_max_abs_diff": output_diff,
        "compile_inference_s": compile_infer_s,
        "compile_train_s": compile_train_s,
        "bottleneck_inplace": MultiKernelBottleneck.inplace,
        "per_path_norm": MultiKernelBottleneck.per_path_norm,
        "heap": allocator.heap_policy(),
        "device": device,
        "threads": torch.get_num_threads(),
    }


def _child(args: list[str]) -> dict:
    """Run :func:`bench_model` in a fresh interpreter (its own peak-memory figure)."""
    code = (
        "import json, sys; from defectlib.bench import bench_model; "
        "a = json.loads(sys.argv[1]); print('BENCH' + json.dumps(bench_model(**a)))"
    )
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({args}):\n{out.stderr[-2000:]}")
    line = next(line for line in out.stdout.splitlines() if line.startswith("BENCH"))
    return json.loads(line[len("BENCH"):])


def run_bench(
    out_path,
    *,
    models: Sequence[str] | None = None,
    sizes: dict[str, list[tuple[int, int]]] | None = None,
    device: str = "cpu",
    channels_last: bool | None = None,
    threads: int | None = None,
    progress: bool = True,
    **kwargs,
) -> dict:
    """Measure every model at its experiment's sizes, each in its own child process, and write
    ``out_path`` (JSON, atomically; ``None``: do not write): the machine, its measured matmul
    peak, one row per measurement. Returns the record.

    ``kwargs`` go to :func:`bench_model` (``fuse_bn``, ``compile``, ``freezing``, ``amp``,
    ``bottleneck_inplace``, ``per_path_norm``, ``retain_freed_memory``, repeats). With ``threads`` the matmul peak is measured with that
    many threads as well (this process's setting is restored afterwards)."""
    from tqdm.auto import tqdm

    from .results import device_info, git_state, package_versions

    models = list(models or BENCH_MODELS)
    unknown = [m for m in models if m not in BENCH_MODELS]
    if unknown:
        raise KeyError(f"unknown model(s) {unknown}; choose from {', '.join(BENCH_MODELS)}")
    if kwargs.get("freezing") and not kwargs.get("compile"):
        raise ConfigError("freezing is an option of torch.compile: pass compile=True as well")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    if kwargs.get("compile"):
        reason = compile_unavailable_reason(device)
        if reason is not None:  # fail here, not in every child
            raise UnavailableError(f"cannot benchmark with compile=True: {reason}")
    sizes = sizes or default_sizes()
    started = time.time()
    default_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        peak = matmul_peak(device=device)
        peak_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(default_threads)
    jobs = [(m, s) for m in models for s in sizes.get(BENCH_MODELS[m].experiment, [])]
    rows = []
    for name, size in tqdm(jobs, desc="bench", disable=not progress):
        args = {"name": name, "input_size": list(size), "device": device, "channels_last": channels_last,
                "threads": threads, **kwargs}
        row = _child([json.dumps(args)])
        row["inference_fraction_of_peak"] = row["inference_flops_per_s"] / peak
        row["train_fraction_of_peak"] = row["train_flops_per_s"] / peak
        rows.append(row)
    record = {
        "matmul_peak_flops_per_s": peak,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "torch_threads": peak_threads},
        "device": device_info(),
        "git": git_state(),
        "packages": package_versions(),
        "wall_time_s": time.time() - started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rows": rows,
    }
    if out_path is not None:
        atomic.write_json(out_path, record)
    return record
