"""Speed and memory of the study's networks: figures, not timed tests.

For each network of :data:`defectlib.models.MODELS` and an input size, :func:`bench_model`
measures

* parameters, and FLOPs per image of one inference (``torch.utils.flop_counter``; a
  multiply-add counts as 2),
* the training step time at batch 1 (forward, the paper's loss, backward, Adam step) and the
  inference latency (``torch.inference_mode``, batch 1), as medians over repeated runs after
  warm-up,
* the peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the peak resident
  memory of a fresh child process that does only this measurement, minus its resident memory
  right after building the model (imports and the model's weights are not counted),
* achieved FLOP/s of inference and of training (training counted as 3× the forward FLOPs),
  and their fraction of the machine's measured peak, :func:`matmul_peak`.

:func:`run_bench` measures every (network, size) in a child process each, so the memory
figures are independent, and writes one JSON record atomically; ``defectlib bench`` is its
command line. :func:`study_sizes` lists the (network, size) pairs a profile trains.

Speed levers (a row records which were in effect); off unless the study itself does them:

* ``model_options``: constructor arguments of the network (:func:`defectlib.models.build_model`),
  e.g. the proposed network's ``inplace`` and ``per_path_norm``
  (:class:`~defectlib.models.seg000_proposed.MultiKernelBottleneck`);
* ``channels_last``: network and input in the channels-last memory format. ``None`` leaves
  each network in its own layout (the proposed network is channels-last);
* ``fuse_bn`` (on by default, as the study predicts): inference on
  :func:`~defectlib.models.fuse.inference_model`'s copy, BatchNorm folded into the
  convolutions; off measures the module as it is;
* ``compile`` / ``freezing``: ``torch.compile`` of inference and of the training loss; the
  first call of each is timed apart (``compile_inference_s``, ``compile_train_s``);
* ``amp``: bfloat16 autocast (:func:`defectlib.perf.precision.autocast`), weights float32;
* ``threads``: ``torch.set_num_threads`` (None: PyTorch's default);
* ``retain_freed_memory``: keep freed memory in the process (:mod:`defectlib.perf.allocator`);
  the study does not.
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .. import atomic
from ..errors import ConfigError, UnavailableError
from ..models import MODELS, DefectClassifier, build_model
from ..models.counting import count_parameters, flops_per_image
from ..models.seg000_proposed import LightweightSegNet, MultiKernelBottleneck
from . import allocator
from .precision import autocast

__all__ = [
    "Task",
    "TASKS",
    "bench_model",
    "compile_unavailable_reason",
    "matmul_peak",
    "network_name",
    "run_bench",
    "study_sizes",
]

Loss = Callable[[nn.Module, torch.Tensor], torch.Tensor]


class _SegAndClassifier(nn.Module):
    """Seed 000 inference: the segmentation network, then the classifier on its output."""

    def __init__(self, segnet: nn.Module) -> None:
        super().__init__()
        self.segnet = segnet
        self.classifier = DefectClassifier(in_channels=segnet.feature_channels + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, logits = self.segnet(x)
        return self.classifier(features, logits)


def _seg000_loss(module: _SegAndClassifier, x: torch.Tensor) -> torch.Tensor:
    """The first stage's step, the bulk of seed 000's training: the map against a target."""
    _, logits = module.segnet(x)
    return nn.functional.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))


def _rec004_loss(method: str) -> Loss:
    def loss(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        from ..training.rec004 import recognition_loss

        # A defective image whose every block is defective: DR's loss over the selected blocks,
        # the classifier's over the image.
        batch = {"label": torch.ones(len(x), dtype=torch.long, device=x.device),
                 "mask": torch.ones(len(x), 1, *x.shape[-2:], device=x.device)}
        return recognition_loss(module(x), batch, method=method, blocks_per_class=16)

    return loss


def _seg004_loss(local: bool) -> Loss:
    def loss(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        from ..training.seg004 import crop_loss

        h, w = x.shape[-2:]
        boxes = [(h // 4, w // 4, h // 2, w // 2)] * len(x) if local else None  # a centred half-side crop
        return crop_loss(module, x, torch.zeros(len(x), 1, h, w, device=x.device), boxes)

    return loss


@dataclass(frozen=True)
class Task:
    """How the bench runs the networks of one paper: what wraps the network for inference and
    which loss one training step minimises."""

    wrap: Callable[[nn.Module], nn.Module]
    loss: Callable[[str], Loss]
    in_channels: int = 1


def _identity(module: nn.Module) -> nn.Module:
    return module


#: Per paper (the prefix of a :data:`~defectlib.models.MODELS` name): how its networks run.
TASKS: dict[str, Task] = {
    "seg000": Task(_SegAndClassifier, lambda network: _seg000_loss),
    "rec004": Task(_identity, _rec004_loss),
    "seg004": Task(_identity, lambda network: _seg004_loss(network == "improved")),
}


def _split(name: str) -> tuple[str, str]:
    """``"seg000/proposed"`` → ``("seg000", "proposed")``, for a registered name only."""
    if name not in MODELS:
        raise ConfigError(f"unknown network {name!r}; choose one of: {', '.join(MODELS)}")
    paper, network = name.split("/", 1)
    return paper, network


def network_name(cfg) -> str:
    """The :data:`~defectlib.models.MODELS` name of the network a cell's config trains.

    Examples
    --------
    >>> from defectlib.experiments.rec004 import Rec004Config
    >>> network_name(Rec004Config.from_profile("smoke", method="resnet50"))
    'rec004/resnet50'
    """
    network = getattr(cfg, "model", None) or cfg.method
    return f"{cfg.EXPERIMENT}/{network}"


def study_sizes(cells: Iterable) -> dict[str, list[tuple[int, int]]]:
    """Per network (in :data:`~defectlib.models.MODELS`' order), the input sizes the cells train
    it at (sorted, each once).

    Examples
    --------
    >>> from defectlib.experiments.seg000 import Seg000Config
    >>> cells = [Seg000Config.from_profile("smoke", input_size=s) for s in ([64, 32], [128, 64], [64, 32])]
    >>> study_sizes(cells)
    {'seg000/proposed': [(64, 32), (128, 64)]}
    """
    sizes: dict[str, set[tuple[int, int]]] = {}
    for cfg in cells:
        sizes.setdefault(network_name(cfg), set()).add(tuple(int(v) for v in cfg.input_size))
    return {name: sorted(sizes[name]) for name in MODELS if name in sizes}


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


def _first_call_time(fn: Callable[[], object], device: str) -> float:
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


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
    clang++, c++ on the PATH. None does not promise success, only that nothing is missing.
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


def _check_levers(*, compile: bool, freezing: bool, threads: int | None, device: str) -> None:
    """Refuse lever combinations that cannot work, before anything is measured."""
    if freezing and not compile:
        raise ConfigError("freezing is an option of torch.compile: pass compile=True as well")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    if compile:
        reason = compile_unavailable_reason(device)
        if reason is not None:
            raise UnavailableError(f"cannot benchmark with compile=True: {reason}")


def _set_heap(retain_freed_memory: bool | None) -> None:
    if retain_freed_memory is None:
        return
    if retain_freed_memory:
        allocator.retain_freed_memory()
    elif allocator.heap_policy() == "retained":
        raise ConfigError("this process already retains freed memory (defectlib.perf.allocator) and cannot "
                          "undo it; measure with retain_freed_memory=False in a fresh process (run_bench does)")


def _block_option(model: nn.Module, option: str) -> bool | None:
    """The proposed network's bottleneck ``option`` as built (None: the network has none)."""
    values = {getattr(m, option) for m in model.modules() if isinstance(m, MultiKernelBottleneck)}
    return values.pop() if len(values) == 1 else None


def bench_model(
    name: str,
    input_size: Sequence[int],
    *,
    device: str = "cpu",
    train_repeats: int = 5,
    infer_repeats: int = 10,
    warmup: int = 2,
    model_options: Mapping[str, object] | None = None,
    channels_last: bool | None = None,
    fuse_bn: bool = True,
    compile: bool = False,
    freezing: bool = False,
    amp: bool = False,
    threads: int | None = None,
    retain_freed_memory: bool | None = None,
) -> dict:
    """Measure one network at one input size, in this process.

    Parameters
    ----------
    name
        A :data:`~defectlib.models.MODELS` name, e.g. ``"seg000/proposed"``.
    input_size
        ``(H, W)`` of the one-image batch.
    model_options
        Constructor arguments of the network (:func:`~defectlib.models.build_model`).
    channels_last, fuse_bn, compile, freezing, amp, threads, retain_freed_memory
        The speed levers of the module docstring. ``threads`` and ``retain_freed_memory``
        change settings of the whole process; ``retain_freed_memory=None`` leaves the heap as
        the process has it (in :func:`run_bench`'s fresh children: the C library's default).

    Returns
    -------
    dict
        One flat row of figures and the levers in effect. ``output_max_abs_diff`` is the
        largest absolute difference of the inference output from the unfused float32 network's.
        ``peak_memory_mb`` on the CPU is meaningful only in a process that measures nothing
        else (:func:`run_bench` runs each measurement in its own).
    """
    paper, network = _split(name)
    _check_levers(compile=compile, freezing=freezing, threads=threads, device=device)
    if threads is not None:
        torch.set_num_threads(threads)
    _set_heap(retain_freed_memory)

    task = TASKS[paper]
    torch.manual_seed(0)
    h, w = (int(v) for v in input_size)
    model = task.wrap(build_model(name, **dict(model_options or {})))
    loss_fn = task.loss(network)
    flops = flops_per_image(model, (h, w), in_channels=task.in_channels)
    segnets = [m for m in model.modules() if isinstance(m, LightweightSegNet)]
    if channels_last is None:  # the network's own layout
        channels_last = any(m.channels_last for m in segnets)
        model = model.to(device)
    else:
        for m in segnets:
            m.channels_last = bool(channels_last)
        model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand(1, task.in_channels, h, w, device=device).contiguous(memory_format=memory_format)
    model.eval()
    with torch.inference_mode():
        reference_output = model(x).float()
    if fuse_bn:
        from ..models.fuse import inference_model

        # A separate, fused copy, built before the memory baseline (its weights are not counted).
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
    compiled_loss = torch.compile(lambda inp: loss_fn(model, inp)) if compile else None

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = compiled_loss(x) if compiled_loss is not None else loss_fn(model, x)
        loss.backward()
        optimizer.step()

    compile_train_s = _first_call_time(step, device) if compile else None
    train_s = _median_time(step, repeats=train_repeats, warmup=warmup, device=device)
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else max(0, _peak_rss_bytes() - rss_before)
    return {
        "model": name,
        "experiment": paper,
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
        "bottleneck_inplace": _block_option(model, "inplace"),
        "per_path_norm": _block_option(model, "per_path_norm"),
        "output_max_abs_diff": output_diff,
        "compile_inference_s": compile_infer_s,
        "compile_train_s": compile_train_s,
        "heap": allocator.heap_policy(),
        "device": device,
        "threads": torch.get_num_threads(),
    }


def _child(kwargs: dict) -> dict:
    """:func:`bench_model` in a fresh interpreter (its own peak memory and heap policy)."""
    code = ("import json, sys; from defectlib.perf.bench import bench_model; "
            "print('BENCH' + json.dumps(bench_model(**json.loads(sys.argv[1]))))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({kwargs}):\n{out.stderr[-2000:]}")
    line = next(line for line in out.stdout.splitlines() if line.startswith("BENCH"))
    return json.loads(line[len("BENCH"):])


def _peak_at(threads: int | None, device: str) -> tuple[float, int]:
    """The matmul peak measured with ``threads`` (this process's setting restored), and the
    number of threads it ran with."""
    default = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return matmul_peak(device=device), torch.get_num_threads()
    finally:
        torch.set_num_threads(default)


def run_bench(
    out_path,
    sizes: Mapping[str, Sequence[Sequence[int]]],
    *,
    device: str = "cpu",
    threads: int | None = None,
    progress: bool = True,
    **levers,
) -> dict:
    """Measure every network at its sizes, each in its own child process.

    Parameters
    ----------
    out_path
        Where the JSON record goes (atomically); None: nowhere.
    sizes
        Network name → input sizes ``(H, W)`` (:func:`study_sizes` gives a profile's).
    threads
        Threads of every measurement and of the matmul peak.
    **levers
        Passed to :func:`bench_model` (``model_options``, ``channels_last``, ``fuse_bn``,
        ``compile``, ``freezing``, ``amp``, ``retain_freed_memory``, repeats).

    Returns
    -------
    dict
        The machine, its measured matmul peak, the code version, and one row per measurement
        (with ``inference_fraction_of_peak`` and ``train_fraction_of_peak``).
    """
    from tqdm.auto import tqdm

    from ..results import device_info, git_state, package_versions

    for name in sizes:
        _split(name)
    _check_levers(compile=levers.get("compile", False), freezing=levers.get("freezing", False),
                  threads=threads, device=device)
    started = time.time()
    peak, peak_threads = _peak_at(threads, device)
    jobs = [(name, size) for name, found in sizes.items() for size in found]
    rows = []
    for name, size in tqdm(jobs, desc="bench", disable=not progress):
        row = _child({"name": name, "input_size": [int(v) for v in size], "device": device, "threads": threads,
                      **levers})
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
