"""Compress one Core ML package with one strategy (coremltools.optimize.coreml)."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechport.compression.strategies import IOS18, Strategy
from speechport.errors import SpeechportError

_SPEC_VERSION = {IOS18: 9}  # Core ML specification version of each deployment target


@dataclass(frozen=True)
class Compressed:
    """What compressing a package did."""

    seconds: float
    retargeted: bool  # the program was raised to iOS 18 for the strategy's ops
    compressed_tensors: int  # constexpr (decompress-at-load) ops in the result
    spec_version: int


def compress_package(
    source: Path,
    target: Path,
    strategy: Strategy,
    *,
    weight_threshold: int,
    raised: Path | None = None,
) -> Compressed:
    """Write ``source`` compressed by ``strategy`` to ``target`` (through a temporary path).

    Strategies whose ops exist only from iOS 18 on (per-block, grouped-channel, int4) raise
    a program made for an earlier target to iOS 18 first; the result then needs iOS 18 /
    macOS 15, which the summary and the emitted manifest record. ``raised``: ``source``
    already raised to the strategy's target by ``raise_package`` (a sweep raises each
    component once and compresses that for every iOS 18 strategy); the result is the same.
    """
    import coremltools as ct
    import coremltools.optimize.coreml as cto

    start = time.perf_counter()
    with _lean_coremltools() as validate:
        model = ct.models.MLModel(str(raised or source), skip_model_load=True)
        retargeted = raised is not None
        wanted = needed_spec_version(model.get_spec(), strategy)
        if wanted is not None:
            model = _retarget(model, wanted)
            retargeted = True
        compress = (
            cto.linear_quantize_weights if strategy.method == "linear" else cto.palettize_weights
        )
        try:
            with _one_thread_kmeans():
                result = compress(model, strategy.config(weight_threshold))
        except (ValueError, TypeError, AssertionError) as exc:
            raise SpeechportError(
                f"coremltools could not apply {strategy.name} ({exc})",
                path=source,
                hint="leave this strategy or component out (--strategies, --components)",
            ) from exc
        validate(result)
        _save(result, target)
    spec = result.get_spec()
    ops = op_types(spec)
    return Compressed(
        seconds=time.perf_counter() - start,
        retargeted=retargeted,
        compressed_tensors=sum(n for op, n in ops.items() if op.startswith("constexpr_")),
        spec_version=int(spec.specificationVersion),
    )


def import_compression() -> None:
    """Import what ``compress_package`` uses (coremltools' compression, scikit-learn's
    k-means when installed), as a sweep's worker process starts."""
    import coremltools.optimize.coreml  # noqa: F401

    with contextlib.suppress(ImportError):
        import sklearn.cluster  # noqa: F401
        import threadpoolctl  # noqa: F401


def needed_spec_version(spec: Any, strategy: Strategy) -> int | None:
    """The specification version a program (``spec``) must be raised to for ``strategy``'s
    ops (``None``: it can take them as it is)."""
    wanted = _SPEC_VERSION.get(strategy.target or "", 0)
    return wanted if spec.specificationVersion < wanted else None


def read_spec(source: Path) -> Any:
    """The model specification of a package (no weights read)."""
    import coremltools as ct

    with _quiet():
        return ct.models.MLModel(str(source), skip_model_load=True).get_spec()


def raise_package(source: Path, target: Path, spec_version: int) -> None:
    """Write ``source`` declared for ``spec_version`` (the same program) to ``target``, as
    ``compress_package`` raises it before compressing."""
    import coremltools as ct

    with _lean_coremltools() as validate:
        model = _retarget(ct.models.MLModel(str(source), skip_model_load=True), spec_version)
        validate(model)
        _save(model, target)


def _save(model: Any, target: Path) -> None:
    """``model.save`` to ``target`` through a temporary sibling and a rename."""
    partial = target.with_name(f".partial-{target.name}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        model.save(str(partial))
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def op_types(spec: Any) -> Counter[str]:
    """How many ops of each type the program's main function holds."""
    counts: Counter[str] = Counter()

    def walk(block: Any) -> None:
        for op in block.operations:
            counts[op.type] += 1
            for inner in op.blocks:
                walk(inner)

    main = spec.mlProgram.functions["main"]
    walk(main.block_specializations[main.opset])
    return counts


def _retarget(model: Any, spec_version: int) -> Any:
    """The same program declared for a later target (no pass applied). coremltools has no
    public call for this; its compression entry point (``_apply_graph_pass``) does exactly
    this load-at-version-and-save before applying its passes."""
    from coremltools.models import utils as model_utils

    return model_utils._apply_graph_pass(model, [], spec_version=spec_version, skip_model_load=True)


@contextlib.contextmanager
def _one_thread_kmeans() -> Iterator[None]:
    """scikit-learn's k-means (coremltools palettizes tensors under 10k weights, and every
    group of a grouped palettization, with it) on one OpenMP thread. Its centroids depend on
    the thread count (partial sums), so one thread gives the same tables on every machine
    and in every worker process of a sweep; on tensors this small a pool also costs more
    than it saves (the test GigaAM's encoder, pal6-kmeans-g16: 2.6x less CPU)."""
    try:
        import sklearn.cluster  # noqa: F401  (loads its OpenMP runtime, so the limit reaches it)
        from threadpoolctl import threadpool_limits
    except ImportError:  # no scikit-learn: coremltools uses no k-means of it either
        yield
        return
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@contextlib.contextmanager
def _lean_coremltools() -> Iterator[Callable[[Any], None]]:
    """coremltools quiet and without the work nobody uses (``_checked_once``,
    ``_programs_not_printed``, ``_lean_propagation``); yields the program check to run once
    on the final model."""
    with _quiet(), _checked_once() as validate, _programs_not_printed(), _lean_propagation():
        yield validate


@contextlib.contextmanager
def _checked_once() -> Iterator[Callable[[Any], None]]:
    """coremltools' pass pipeline without its check of the whole program after each of its
    ~90 passes (``Program.validate``, which only raises on a malformed program: about 40 %
    of a compression's CPU time on the test GigaAM's encoder). Every pass leaves the program it
    left before. Yields the check, to run once on the final model's program."""
    try:
        from coremltools.converters.mil.mil.program import Program
    except ImportError:  # a layout of coremltools without it: keep its checks
        yield _no_model_check
        return
    check = Program.__dict__.get("validate")
    if check is None:
        yield _no_model_check
        return

    def validate(model: Any) -> None:
        program = getattr(model, "_mil_program", None)
        if program is not None:
            check(program)

    Program.validate = _no_check
    try:
        yield validate
    finally:
        Program.validate = check


@contextlib.contextmanager
def _programs_not_printed() -> Iterator[None]:
    """coremltools formats the whole program into debug messages before and after each pass
    pipeline and inside some passes, whether or not debug messages are shown (about 12 % of
    a linear compression's CPU time on the test GigaAM's encoder). Unless coremltools' logger
    shows them, a program and a function print as a one-line placeholder inside the block
    (they are printed for messages only: no pass reads the text)."""
    try:
        from coremltools.converters.mil.mil.block import Function
        from coremltools.converters.mil.mil.program import Program
    except ImportError:  # a layout of coremltools without them: print them
        yield
        return
    saved = {cls: cls.__dict__.get("__str__") for cls in (Program, Function)}
    if logging.getLogger("coremltools").isEnabledFor(logging.DEBUG) or None in saved.values():
        yield
        return
    Program.__str__ = _program_placeholder
    Function.__str__ = _function_placeholder
    try:
        yield
    finally:
        for cls, method in saved.items():
            cls.__str__ = method


@contextlib.contextmanager
def _lean_propagation() -> Iterator[None]:
    """On leaving any block (every pass does), coremltools recomputes for each var of the
    program the outputs of ``constexpr_*`` ops it depends on (which a pass may not replace
    away), through two method calls and a checked property per var: about a quarter of a
    linear compression's CPU time on the test GigaAM's encoder. Inside the block the same sets
    are computed, in the same order, in one loop (``_propagate``)."""
    try:
        from coremltools.converters.mil.mil.block import Block
    except ImportError:  # a layout of coremltools without it: its own
        yield
        return
    original = Block.__dict__.get("_propagate_nonreplaceable_vars")
    if original is None:
        yield
        return
    Block._propagate_nonreplaceable_vars = _propagate
    try:
        yield
    finally:
        Block._propagate_nonreplaceable_vars = original


def _propagate(block: Any) -> None:
    """Each op output's set: empty after a ``shape`` op, itself for a ``constexpr_*`` op's,
    else the union of the sets of the op's inputs (nested blocks first, ops in order)."""
    for op in block.operations:
        for inner in op.blocks:
            _propagate(inner)
        outputs = op.outputs
        if outputs is None:
            continue
        kind = op.op_type
        if kind == "shape":
            for var in outputs:
                var._nonreplaceable_vars_upstream = set()
        elif kind.startswith("constexpr_"):
            for var in outputs:
                var._nonreplaceable_vars_upstream = {var}
        else:
            upstream = [v._nonreplaceable_vars_upstream for v in op.get_flattened_inputs()]
            for var in outputs:
                var._nonreplaceable_vars_upstream = set().union(*upstream)


def _program_placeholder(self: Any, print_attr: bool = False) -> str:
    return f"<MIL program, functions {', '.join(self.functions)}>"


def _function_placeholder(self: Any) -> str:
    return f"<MIL function {self.name}>"


def _no_check(self: Any, check_essential_scope: bool = False) -> None:
    return None


def _no_model_check(model: Any) -> None:
    return None


@contextlib.contextmanager
def _quiet() -> Any:
    """coremltools prints progress bars and warnings of its own; speechport reports
    progress itself."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
