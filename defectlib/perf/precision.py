"""bfloat16 autocast for the bench, and whether a device computes in bfloat16 natively.

The study trains and predicts in float32. The bench's ``amp`` lever measures what bfloat16
autocast would change. A CPU without bfloat16 instructions (neither AVX-512 BF16 nor AMX)
still runs autocast, but emulated, converting to and from float32 around every operation,
which is typically slower than float32; :func:`autocast` then warns once.
"""

from __future__ import annotations

import functools
import warnings

import torch

__all__ = ["autocast", "native_bfloat16", "warn_if_emulated"]


def native_bfloat16(device="cpu") -> bool | None:
    """Whether ``device`` has bfloat16 arithmetic in hardware (``None``: cannot tell).

    On a CPU: AVX-512 BF16 or AMX tiles, as PyTorch detects them; on CUDA:
    ``torch.cuda.is_bf16_supported()``.

    Examples
    --------
    >>> native_bfloat16("cpu") in (True, False, None)
    True
    >>> native_bfloat16("meta") is None
    True
    """
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
            f"bfloat16 autocast on a {kind.upper()} without bfloat16 instructions (no AVX-512 BF16 or AMX) "
            "runs emulated, typically slower than float32 (defectlib.perf.precision)",
            RuntimeWarning,
            stacklevel=3,
        )


def autocast(device, enabled: bool):
    """``torch.autocast`` in bfloat16 on ``device``'s type when ``enabled``.

    Convolutions and matrix products run in bfloat16, reductions and losses in float32; the
    weights and the optimiser stay float32. Warns once where bfloat16 is emulated
    (:func:`warn_if_emulated`).

    Examples
    --------
    >>> with autocast("cpu", True):
    ...     y = torch.nn.Linear(4, 2)(torch.ones(1, 4))
    >>> y.dtype
    torch.bfloat16
    >>> with autocast("cpu", False):
    ...     y = torch.nn.Linear(4, 2)(torch.ones(1, 4))
    >>> y.dtype
    torch.float32
    """
    kind = torch.device(device).type
    if enabled:
        warn_if_emulated(kind)
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=bool(enabled))
