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


def to_plain(node: Any) -> Any:
    """Convert a stand-in config tree into plain Python data with interpolations resolved."""
    raw = _strip(node)
    return _resolve(raw, raw)


def _strip(node: Any) -> Any:
    if isinstance(node, InertRecord):
        state = node.state if isinstance(node.state, dict) else {}
        if "_content" in state:
            return _strip(state["_content"])
        if "_val" in state:
            return _strip(state["_val"])
        return None
    if isinstance(node, dict):
        return {str(k): _strip(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_strip(v) for v in node]
    return node


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


def _resolve(value: Any, root: Any, depth: int = 0) -> Any:
    if depth > 32:
        raise CheckpointError("config interpolations nest too deep (a cycle?)")
    if isinstance(value, dict):
        return {k: _resolve(v, root, depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, root, depth) for v in value]
    if isinstance(value, str):
        whole = _INTERPOLATION.fullmatch(value)
        if whole and ":" not in whole.group(1):
            return _resolve(_lookup(root, whole.group(1)), root, depth + 1)
        return _INTERPOLATION.sub(
            lambda m: (
                str(_resolve(_lookup(root, m.group(1)), root, depth + 1))
                if ":" not in m.group(1)
                else m.group(0)
            ),
            value,
        )
    return value
