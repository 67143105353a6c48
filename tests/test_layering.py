"""The import graph of speechport: no cycles, and the runtime side loads neither torch, onnx
nor the converter side when it is imported.

Only module-level imports count: an import inside a function is lazy by design, and one
under ``if TYPE_CHECKING:`` never runs. The source is parsed with ``ast``, nothing is
imported. The two tables below say which modules are on which side.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

# --- the tables -------------------------------------------------------------------------
# A name covers that module and everything below it; the root ``speechport`` covers only
# its ``__init__``. A name that does not exist (yet) covers nothing.
RUNTIME_SIDE = (
    "speechport",
    "speechport.api",
    "speechport.audio",
    "speechport.manifest",
    "speechport.errors",
    "speechport.tokenizer",
    "speechport.progress",
    "speechport.fsutil",
    "speechport.environment",
    "speechport.features",
    "speechport.decoding",
    "speechport.runtime",
    "speechport.coreml",
    "speechport.pipelines",
    "speechport.tasks",
    "speechport.text",
)
RUNTIME_EXCEPTIONS = ("speechport.features.torch_frontend", "speechport.runtime.torch_backend")
CONVERTER_SIDE = (
    "speechport.export",
    "speechport.families",
    "speechport.nn",
    "speechport.compression",
    "speechport.bench",
    "speechport.parity",
    "speechport.conversion",
)
# Plain data the runtime may read: the verify report's types and the figures they hold.
CONVERTER_EXCEPTIONS = ("speechport.parity.report", "speechport.parity.stats")
# Third-party packages (top-level names) the runtime side must not load: ``onnx`` is the
# converter's, ``onnxruntime`` the runtime's.
FORBIDDEN_ON_RUNTIME_SIDE = ("torch", "onnx", "matplotlib")

# Cycles allowed for now (none): the test fails on an entry that no longer is a cycle. Each
# is written starting at its alphabetically first module, every module importing the next
# and the last the first, e.g. ("speechport.a", "speechport.b") for a -> b -> a.
KNOWN_CYCLES: frozenset[tuple[str, ...]] = frozenset()
# -----------------------------------------------------------------------------------------

SRC = Path(__file__).resolve().parent.parent / "src"
ROOT = "speechport"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / ROOT).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(
    node: ast.AST, *, lazy: bool = False
) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not in a function body (unless
    ``lazy``: then those too), never under ``if TYPE_CHECKING:`` (its ``else`` does run)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not lazy:
            continue
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.orelse:
                yield from _module_level_imports(
                    ast.Module(body=[stmt], type_ignores=[]), lazy=lazy
                )
        else:
            yield from _module_level_imports(child, lazy=lazy)


def _imports(
    name: str, source: str, *, is_package: bool, modules: dict[str, Path], lazy: bool = False
) -> tuple[set[str], set[str]]:
    """(speechport modules, third-party top-level packages) that module ``name`` imports."""
    internal: set[str] = set()
    external: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]

    def add(target: str) -> None:
        if target.split(".")[0] != ROOT:
            external.add(target.split(".")[0])
            return
        while target not in modules and "." in target:  # an attribute, not a module
            target = target.rpartition(".")[0]
        internal.add(target)

    for node in _module_level_imports(ast.parse(source), lazy=lazy):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            add(submodule if submodule in modules else base)
    internal.discard(name)  # ``from speechport.x import y`` inside speechport.x itself
    return internal, external


def _graph(*, lazy: bool = False) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The import graph: module-level imports (``lazy``: imports inside functions too)."""
    modules = _modules()
    internal: dict[str, set[str]] = {}
    external: dict[str, set[str]] = {}
    for name, path in modules.items():
        internal[name], external[name] = _imports(
            name,
            path.read_text(encoding="utf-8"),
            is_package=path.name == "__init__.py",
            modules=modules,
            lazy=lazy,
        )
    return internal, external


def _covers(prefixes: tuple[str, ...], module: str) -> bool:
    return any(module == p or (p != ROOT and module.startswith(p + ".")) for p in prefixes)


def _runtime_side(module: str) -> bool:
    return _covers(RUNTIME_SIDE, module) and not _covers(RUNTIME_EXCEPTIONS, module)


def _converter_side(module: str) -> bool:
    return _covers(CONVERTER_SIDE, module) and not _covers(CONVERTER_EXCEPTIONS, module)


def _off_runtime_side(module: str) -> bool:
    """What a runtime-side module must not import: the converter side and torch-only code."""
    return not _runtime_side(module) and (
        _converter_side(module) or _covers(RUNTIME_EXCEPTIONS, module)
    )


def _parents(module: str) -> list[str]:
    """The packages whose ``__init__`` runs before ``module``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _cycles(graph: dict[str, set[str]], limit: int = 200) -> list[tuple[str, ...]]:
    """Every elementary cycle, each starting at its smallest module (up to ``limit``)."""
    found: list[tuple[str, ...]] = []
    for start in sorted(graph):
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        while stack and len(found) < limit:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ()), reverse=True):
                if nxt == start:
                    found.append(tuple(path))
                elif nxt > start and nxt not in path:
                    stack.append((nxt, [*path, nxt]))
    return sorted(found)


def _show(cycle: tuple[str, ...]) -> str:
    return " -> ".join([*cycle, cycle[0]])


def test_the_tables_name_modules_that_exist() -> None:
    """A typo in a table would silently exempt a module."""
    modules = _modules()
    may_be_absent: set[str] = set()
    for name in (*RUNTIME_SIDE, *RUNTIME_EXCEPTIONS, *CONVERTER_SIDE, *CONVERTER_EXCEPTIONS):
        assert name in modules or name in may_be_absent, f"{name} is not a module"
    for cycle in KNOWN_CYCLES:
        assert cycle[0] == min(cycle), f"write {cycle} starting at its smallest module"


def test_no_import_cycles() -> None:
    """No cycle, counting imports inside functions too: a lazy import defers loading, it
    does not make two modules independent."""
    internal, _ = _graph(lazy=True)
    cycles = _cycles(internal)
    new = [c for c in cycles if c not in KNOWN_CYCLES]
    gone = sorted(KNOWN_CYCLES - set(cycles))
    message = []
    if new:
        message.append("import cycles (imports inside functions included):")
        message += [f"  {_show(c)}" for c in new]
    if gone:
        message.append("no longer cycles, remove them from KNOWN_CYCLES:")
        message += [f"  {_show(c)}" for c in gone]
    assert not message, "\n".join(message)


def test_runtime_side_loads_no_torch_onnx_or_converter() -> None:
    """From every runtime-side module, follow module-level imports and name the first chain
    that imports a forbidden package, a converter-side module or a torch-only runtime module.
    The packages an import initialises are followed too, but a package reached only that
    way is not blamed for its side: an ``__init__`` that imports nothing loads nothing."""
    internal, external = _graph()
    problems: dict[tuple[str, str], list[list[str]]] = {}  # offending import -> chains
    for start in sorted(m for m in internal if _runtime_side(m)):
        seen = {start: [start]}
        queue = [start]
        while queue:
            module = queue.pop(0)
            chain = seen[module]
            direct = sorted(internal[module])
            bad = sorted(external[module] & set(FORBIDDEN_ON_RUNTIME_SIDE))
            bad += [m for m in direct if _off_runtime_side(m)]
            if bad:
                problems.setdefault((module, bad[0]), []).append([*chain, bad[0]])
                break
            packages = sorted({p for m in direct for p in _parents(m)} - set(direct))
            for nxt in [*direct, *packages]:
                if nxt not in seen:
                    seen[nxt] = [*chain, nxt]
                    queue.append(nxt)
    lines = []
    for (module, target), chains in sorted(problems.items()):
        shortest: list[str] = min(chains, key=len)
        lines.append(
            f"  {module} imports {target} (reached from {len(chains)}: {' -> '.join(shortest)})"
        )
    assert not lines, "runtime side imports at module level:\n" + "\n".join(lines)


def test_the_graph_sees_what_it_should() -> None:
    """The parser itself: relative and ``from package import submodule`` imports resolve to
    modules, lazy and ``TYPE_CHECKING`` imports are skipped."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "import torch.nn\n"
        "from . import vad\n"
        "from speechport.coreml import quiet\n"
        "from speechport.manifest import Manifest\n"
        "if TYPE_CHECKING:\n"
        "    import onnx\n"
        "else:\n"
        "    import numpy\n"
        "class A:\n"
        "    import yaml\n"
        "def f():\n"
        "    import matplotlib\n"
    )
    internal, external = _imports(
        "speechport.pipelines.probe", source, is_package=False, modules=_modules()
    )
    assert internal == {
        "speechport.pipelines.vad",
        "speechport.coreml.quiet",
        "speechport.manifest",
    }
    assert external == {"typing", "torch", "numpy", "yaml"}
