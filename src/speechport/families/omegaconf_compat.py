"""OmegaConf configs pickled inside checkpoints, read without OmegaConf and without its code.

Checkpoints such as GigaAM's pickle an ``omegaconf.DictConfig``. Its pickled form is a tree
of objects whose state holds ``_content`` (a dict or list of child nodes) or ``_val`` (a
leaf value). The classes below are inert stand-ins: the restricted unpickler builds them
instead of OmegaConf's, and `to_plain` turns the tree into dicts, lists and scalars,
resolving ``${a.b}`` interpolations against the root.
"""

from __future__ import annotations

import re
from typing import Any

from speechport.errors import CheckpointError
from speechport.families.torch_checkpoint import InertRecord, inert_class

_CLASS_NAMES = {
    "omegaconf.dictconfig": ["DictConfig"],
    "omegaconf.listconfig": ["ListConfig"],
    "omegaconf.base": ["ContainerMetadata", "Metadata", "Node", "Container"],
    "omegaconf.nodes": [
        "AnyNode",
        "StringNode",
        "IntegerNode",
        "FloatNode",
        "BooleanNode",
        "EnumNode",
        "BytesNode",
        "PathNode",
        "ValueNode",
        "InterpolationResultNode",
    ],
}


def omegaconf_globals() -> dict[tuple[str, str], Any]:
    """The ``(module, name) -> stand-in`` map to give the restricted unpickler."""
    table: dict[tuple[str, str], Any] = {}
    for module, names in _CLASS_NAMES.items():
        for name in names:
            table[(module, name)] = inert_class(name, module)
    return table


_INTERPOLATION = re.compile(r"\$\{([^${}]+)\}")
MAX_NODES = 200_000  # a real model config has a few hundred
MAX_TEXT = 1 << 20  # characters in one resolved string
MAX_DEPTH = 32  # nested interpolations


def to_plain(node: Any) -> Any:
    """Convert a stand-in config tree into plain Python data with interpolations resolved.

    A crafted config cannot hang or exhaust the loader: shared subtrees are converted once
    (a reference cycle is an error), and the node count, the resolved string length and
    the interpolation depth are bounded.
    """
    try:
        raw = _Stripper().strip(node)
        return _Resolver(raw).resolve(raw)
    except RecursionError as exc:
        raise CheckpointError("the checkpoint's config nests too deeply") from exc


class _Stripper:
    def __init__(self) -> None:
        self.done: dict[int, Any] = {}
        self.open: set[int] = set()
        self.nodes = 0

    def strip(self, node: Any) -> Any:
        if not isinstance(node, InertRecord | dict | list | tuple):
            return node
        key = id(node)
        if key in self.done:
            return self.done[key]
        if key in self.open:
            raise CheckpointError("the checkpoint's config contains a reference cycle")
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise CheckpointError(f"the checkpoint's config has more than {MAX_NODES} nodes")
        self.open.add(key)
        out: Any
        if isinstance(node, InertRecord):
            state = node.state if isinstance(node.state, dict) else {}
            if "_content" in state:
                out = self.strip(state["_content"])
            elif "_val" in state:
                out = self.strip(state["_val"])
            else:
                out = None
        elif isinstance(node, dict):
            out = {str(k): self.strip(v) for k, v in node.items()}
        else:
            out = [self.strip(v) for v in node]
        self.open.discard(key)
        self.done[key] = out
        return out


class _Resolver:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.cache: dict[str, Any] = {}
        self.containers: dict[int, Any] = {}  # shared subtrees are resolved once

    def resolve(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise CheckpointError("config interpolations nest too deep (a cycle?)")
        if isinstance(value, dict | list):
            key = id(value)
            if key not in self.containers:
                self.containers[key] = (
                    {k: self.resolve(v, depth) for k, v in value.items()}
                    if isinstance(value, dict)
                    else [self.resolve(v, depth) for v in value]
                )
            return self.containers[key]
        if not isinstance(value, str) or "${" not in value:
            return value
        whole = _INTERPOLATION.fullmatch(value)
        if whole and ":" not in whole.group(1):
            return self.reference(whole.group(1), depth)
        text = _INTERPOLATION.sub(
            lambda m: (
                str(self.reference(m.group(1), depth)) if ":" not in m.group(1) else m.group(0)
            ),
            value,
        )
        if len(text) > MAX_TEXT:
            raise CheckpointError("a config interpolation expands beyond 1 MB of text")
        return text

    def reference(self, dotted: str, depth: int) -> Any:
        if dotted not in self.cache:
            self.cache[dotted] = self.resolve(_lookup(self.root, dotted), depth + 1)
        return self.cache[dotted]


def _lookup(root: Any, dotted: str) -> Any:
    current = root
    for part in dotted.strip().split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise CheckpointError(
                f"config interpolation ${{{dotted}}} points at nothing",
                hint="the checkpoint's config is incomplete",
            )
    return current
