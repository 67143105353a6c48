"""numpy's BLAS thread count, in one place.

OpenBLAS splits even a small product over every core and waits for them all, and its
threads spin after each call. On the small products of a decoding step (a 640 x 2560
matrix-vector product took 3.6 ms on two threads against 0.38 ms on one, on a 2-core
machine with other work running) and of the MIL interpreter on a sweep's shapes (the
test GigaAM's attention product, (4, 150, 24) by (4, 24, 150): 0.14 ms on one thread,
5.8 ms on two, on a busy machine) one thread is faster, and figures no longer depend on the
number of cores: OpenBLAS sums in another order on several threads.

- ``one_blas_thread()``: one thread inside a block, the count restored after (a decoding
  loop that runs the numpy kernels wraps its window; switching costs a few microseconds);
- ``blas_on_one_thread()``: one thread for the rest of the process, or until the returned
  limiter is restored (a quantize sweep and its worker processes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _blas_libraries() -> list[Any]:
    """threadpoolctl's controllers of the BLAS libraries numpy loaded (none without it)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a dependency; without it BLAS keeps its threads
        return []
    return list(ThreadpoolController().select(user_api="blas").lib_controllers)


_BLAS = _blas_libraries()


def blas_threads() -> list[int]:
    """The thread count of each BLAS library numpy loaded (not those other packages load
    later, e.g. SciPy's own OpenBLAS)."""
    return [lib.get_num_threads() for lib in _BLAS]


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread inside the block, its thread count restored after."""
    before = blas_threads()
    for lib, threads in zip(_BLAS, before, strict=True):
        if threads != 1:
            lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, threads in zip(_BLAS, before, strict=True):
            if threads != 1:
                lib.set_num_threads(threads)


def blas_on_one_thread() -> Any:
    """Every BLAS library loaded now limited to one thread until the returned limiter is
    restored (``None`` without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency
        return None
    return threadpool_limits(limits=1, user_api="blas")
