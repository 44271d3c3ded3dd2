"""defectlib.allocator: freed memory stays in the process, so a training step that reuses it
costs no page faults. Measured in fresh interpreters: the setting cannot be undone in one."""

import doctest
import json
import statistics
import subprocess
import sys

import pytest

from defectlib import allocator

_PROBE = """
import json, resource, sys
import torch
if sys.argv[1] == "retained":
    from defectlib.allocator import retain_freed_memory
    assert retain_freed_memory()
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU6(),
                          torch.nn.Conv2d(16, 16, 3, padding=1, groups=16), torch.nn.BatchNorm2d(16),
                          torch.nn.ReLU6(), torch.nn.Conv2d(16, 1, 1))
x = torch.rand(1, 3, 512, 256)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
steps = []
for i in range(8):  # a training step: every activation and gradient is a fresh 8 MB block
    before = faults()
    net.zero_grad(set_to_none=True)
    net(x).square().mean().backward()
    steps.append(faults() - before)
print(json.dumps(steps))
"""


def _faults(policy: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", _PROBE, policy], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(allocator._glibc() is None, reason="needs glibc (Linux)")
def test_retained_heap_reuses_freed_memory_without_page_faults():
    system, retained = _faults("system"), _faults("retained")
    # The C library's default returns the freed blocks: every step faults its memory in again.
    assert statistics.median(system[2:]) > 1000
    # Retained: after the first steps they reuse the same memory (an odd step may still grow it).
    assert statistics.median(retained[2:]) < statistics.median(system[2:]) / 10


def test_policy_is_reported_and_idempotent():
    first = allocator.retain_freed_memory()
    assert allocator.retain_freed_memory() == first
    assert allocator.heap_policy() == ("retained" if first else "system")


def test_doctests():
    result = doctest.testmod(allocator, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
