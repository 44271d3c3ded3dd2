"""Whether a device computes in bfloat16 natively, and a warning where it does not.

The ``cpu`` profile trains seed 000's baselines and all of seed 004 under bfloat16 autocast
(:func:`defectlib.training.two_stage.autocast`) because it made their training steps 1.4-1.6×
faster on the study's CPU, an AMD EPYC with AVX-512 BF16. A CPU without bfloat16
instructions (neither AVX-512 BF16 nor AMX) still runs bfloat16 autocast, but oneDNN then
converts to and from float32 around every operation: on a 2-core Intel Xeon without either,
a DeepLabv3+ training step at 352×128 under bfloat16 took 0.9-1.0 s, against 0.35-0.56 s in
float32 on the same machine and 0.19 s under bfloat16 on the study's CPU (two runs of
``defectlib bench``; the performance chapter shows the records kept). There, pass
``amp=False`` to the grid notebooks and the performance chapter (their ``amp`` parameter) to train
in float32.
"""

from __future__ import annotations

import functools
import warnings

__all__ = ["native_bfloat16", "warn_if_emulated"]


def native_bfloat16(device="cpu") -> bool | None:
    """Whether ``device`` has bfloat16 arithmetic in hardware (``None``: cannot tell).

    On a CPU: AVX-512 BF16 or AMX tiles, as PyTorch detects them; on CUDA:
    ``torch.cuda.is_bf16_supported()``.

    Examples
    --------
    >>> native_bfloat16("cpu") in (True, False, None)
    True
    """
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind != "cpu":
        return None
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    probes = [probe for probe in probes if probe is not None]
    if not probes:
        return None
    return any(bool(probe()) for probe in probes)


@functools.lru_cache(maxsize=None)
def warn_if_emulated(kind: str) -> None:
    """Warn (once per device type and process) when bfloat16 on ``kind`` is not native."""
    if native_bfloat16(kind) is False:
        warnings.warn(
            f"bfloat16 autocast on a {kind.upper()} without bfloat16 instructions (no AVX-512 BF16 or AMX): "
            "it runs emulated, typically several times slower than float32 (defectlib.precision); "
            "pass amp=False to the grid and performance notebooks (or defectlib book -p amp False) to train in float32",
            RuntimeWarning,
            stacklevel=3,
        )
