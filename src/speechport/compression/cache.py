"""Compressed packages made once per sweep and shared by its recipes and worker processes.

A sweep compresses the same component with the same strategy more than once: a mixed
recipe (``mixed-pal8``: encoder and joint ``pal8-kmeans``) asks for what the plain
strategy's variant already made, and every iOS 18 strategy first raises the same
component to iOS 18. ``PackageCache`` keeps each such package in a folder of the sweep's
output (``OUT/.packages``), keyed by the component's package and the strategy (and the
weight threshold), and answers later requests with that package, which the variant then
hard-links. Compression is deterministic (k-means on one thread), so a reused package is
the one a fresh compression would write.

Worker processes share the folder: an entry is written in a temporary folder beside it and
renamed into place, so it is complete once it exists; two workers that make the same
entry at the same time both write a whole one, and the second rename fails and leaves the
first (the same content). The sweep orders its recipes so that a mixed recipe usually
comes after the plain ones whose packages it reuses.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from speechport.compression.apply import (
    Compressed,
    compress_package,
    needed_spec_version,
    raise_package,
    read_spec,
)
from speechport.compression.strategies import Strategy
from speechport.runtime.blas import blas_on_one_thread

RECORD = "compressed.json"


@dataclass
class PackageCache:
    """Packages derived from a bundle's Core ML components during one sweep, under
    ``root``."""

    root: Path
    specs: dict[Path, Any] = field(default_factory=dict, repr=False)  # per process

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "specs": {}}  # protobuf messages stay in their process

    def compressed(
        self, source: Path, strategy: Strategy, *, weight_threshold: int
    ) -> tuple[Path, Compressed]:
        """The package of ``source`` compressed by ``strategy`` and what compressing it did
        (``seconds``: what making it took, raising it to iOS 18 included, whether made now
        or by an earlier recipe)."""
        entry = self.root / source.name / f"{strategy.name}-w{weight_threshold}"
        found = _read(entry)
        if found is None:
            raised, raise_seconds = self._raised(source, strategy)
            with _Building(entry) as tmp:
                done = compress_package(
                    source,
                    tmp / source.name,
                    strategy,
                    weight_threshold=weight_threshold,
                    raised=raised,
                )
                done = Compressed(
                    seconds=done.seconds + raise_seconds,
                    retargeted=done.retargeted,
                    compressed_tensors=done.compressed_tensors,
                    spec_version=done.spec_version,
                )
                (tmp / RECORD).write_text(json.dumps(asdict(done)), encoding="utf-8")
            found = _read(entry)
            assert found is not None
        return entry / source.name, found

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def use_for_temporary_files(self) -> None:
        """Make this process's temporary files (coremltools writes a temporary package for
        every model it opens, removed only when the model object is collected) under the
        cache, which the sweep clears: a worker process ends without collecting them, and
        a stopped one cannot."""
        scratch = self.root / "tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        tempfile.tempdir = str(scratch)

    @contextlib.contextmanager
    def making_ahead(
        self, wanted: Sequence[tuple[Path, Strategy]], *, weight_threshold: int
    ) -> Iterator[None]:
        """Make the ``wanted`` packages, in order, in a process of its own while the block
        runs (a sweep scores its baseline meanwhile, on one core); at the block's end that
        process is stopped and what it had not finished is left to the recipes."""
        if not wanted:
            yield
            return
        context: Any = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        maker = context.Process(
            target=_make_all, args=(self, list(wanted), weight_threshold), daemon=True
        )
        maker.start()
        try:
            yield
        finally:
            if maker.is_alive():
                maker.terminate()  # its unfinished entry is a temporary folder, cleared later
            maker.join()

    def _raised(self, source: Path, strategy: Strategy) -> tuple[Path | None, float]:
        """``source`` raised to the target ``strategy``'s ops need (``None`` if it need not
        be) and the seconds raising it took."""
        spec = self.specs.get(source)
        if spec is None:
            spec = self.specs[source] = read_spec(source)
        version = needed_spec_version(spec, strategy)
        if version is None:
            return None, 0.0
        entry = self.root / source.name / f"spec{version}"
        record = entry / RECORD
        if not record.is_file():
            with _Building(entry) as tmp:
                start = time.perf_counter()
                raise_package(source, tmp / source.name, version)
                seconds = time.perf_counter() - start
                (tmp / RECORD).write_text(json.dumps({"seconds": seconds}), encoding="utf-8")
        seconds = float(json.loads(record.read_text(encoding="utf-8"))["seconds"])
        return entry / source.name, seconds


class _Building:
    """A temporary folder beside ``entry`` that is renamed to it on success (unless another
    process got there first) and removed in any case."""

    def __init__(self, entry: Path) -> None:
        self.entry = entry
        self.tmp = Path()

    def __enter__(self) -> Path:
        self.entry.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.entry.name}.", dir=self.entry.parent))
        return self.tmp

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        try:
            if kind is None:
                from speechport import interrupts

                interrupts.check()  # a swallowed Ctrl-C must not publish a partial entry
                try:
                    self.tmp.rename(self.entry)
                except OSError:
                    if not self.entry.is_dir():  # not a race lost to another worker
                        raise
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _read(entry: Path) -> Compressed | None:
    record = entry / RECORD
    if not record.is_file():
        return None
    return Compressed(**json.loads(record.read_text(encoding="utf-8")))


def _make_all(
    packages: PackageCache, wanted: list[tuple[Path, Strategy]], weight_threshold: int
) -> None:
    """``making_ahead``'s process: stopped by SIGTERM without a word; a package it cannot
    make is left to the recipe that needs it, which reports why."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the sweep handles Ctrl-C and stops this
    packages.use_for_temporary_files()
    blas_on_one_thread()
    for source, strategy in wanted:
        try:
            packages.compressed(source, strategy, weight_threshold=weight_threshold)
        except Exception:
            return
