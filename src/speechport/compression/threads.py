"""Thread pools during a sweep: numpy's BLAS on one thread in every process of it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """numpy's BLAS on one thread while a sweep builds and scores its variants.

    The interpreter's products on a sweep's shapes are small, and OpenBLAS's thread pool
    costs more than it gives there, most of all when the cores are shared: the fixture
    encoder's attention product ((4, 150, 24) by (4, 24, 150)) took 0.14 ms on one thread
    and 5.8 ms on two on a busy 2-core machine, and each worker of ``--jobs`` would
    otherwise bring a pool of its own. A sweep's parallelism is its worker processes. Its
    figures are then the same for any number of cores or jobs; OpenBLAS sums in another
    order on several threads, so they can differ from a ``verify`` run's in the last
    digits (the fixture's baseline encoder: quality 0.99783 here, 0.99793 on two threads).
    """
    limits = blas_on_one_thread()
    try:
        yield
    finally:
        if limits is not None:
            limits.restore_original_limits()


def blas_on_one_thread() -> Any:
    """numpy's BLAS limited to one thread until the returned limiter is restored (``None``
    without threadpoolctl, installed with scikit-learn in the convert extra)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=1, user_api="blas")
