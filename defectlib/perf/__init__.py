"""Speed and cost of the study, walled off from it.

Nothing in :mod:`defectlib.data`, :mod:`~defectlib.models`, :mod:`~defectlib.training`,
:mod:`~defectlib.experiments` or :mod:`~defectlib.results` imports this package; it imports
them.

:mod:`~defectlib.perf.bench`
    Speed and memory of every network of :data:`defectlib.models.MODELS` (``defectlib bench``).
:mod:`~defectlib.perf.chapter`
    The bench as cached experiments for the performance chapter, and the proposed network's
    speed levers.
:mod:`~defectlib.perf.cost`
    The compute time a profile's runs recorded, and what is left.
:mod:`~defectlib.perf.allocator`
    Keep freed memory in the process (a CPU speed lever).
:mod:`~defectlib.perf.precision`
    bfloat16 autocast, and whether a device has it natively.
"""
