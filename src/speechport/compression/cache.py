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
first (the same content). A sweep with worker processes has them make every package first
(``make_in``, the longest first) and scores a recipe once the packages it uses exist, so
no two of them make the same package.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import Executor, Future
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
from speechport.fsutil import path_size

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

    def make_in(
        self, pool: Executor, wanted: Sequence[tuple[Path, Strategy]], *, weight_threshold: int
    ) -> dict[tuple[Path, Strategy], Future[bool]]:
        """Submit making each of the ``wanted`` packages to ``pool`` (worker processes started
        by the sweep), the longest first (``longest_first``), so that the last to finish are
        short and the cores end together. Each future answers whether the package was made;
        one that could not be is left to the recipe that needs it, which reports why."""
        return {
            (source, strategy): pool.submit(_make, self, source, strategy, weight_threshold)
            for source, strategy in longest_first(wanted)
        }

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


def longest_first(wanted: Sequence[tuple[Path, Strategy]]) -> list[tuple[Path, Strategy]]:
    """``wanted`` in the order of the work making each takes, the most first (ties keep
    their order): k-means on ``2**bits`` centroids dominates (the test GigaAM's encoder: 5.3 s
    for 8 bits, 1.5 s for 6, 0.6 s for 4, 0.3 to 0.5 s for a linear strategy), times the
    package's size."""

    def work(pair: tuple[Path, Strategy]) -> int:
        source, strategy = pair
        return path_size(source) * strategy.clusters

    return sorted(wanted, key=work, reverse=True)


def _make(packages: PackageCache, source: Path, strategy: Strategy, weight_threshold: int) -> bool:
    """``make_in``'s task, in a worker process."""
    try:
        packages.compressed(source, strategy, weight_threshold=weight_threshold)
    except Exception:
        return False
    return True
