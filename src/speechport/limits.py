"""Budgets for everything speechport inflates, parses or copies out of a user's file.

A small crafted file can otherwise claim a machine: a deflate bomb for a pickle, a gzip bomb
or a sparse member in a tar, a YAML document of hundreds of megabytes, JSON nested deeper
than the interpreter's stack. Each budget is a named constant, checked *before* the budget
is spent (declared sizes first, then a bounded read that never asks for more than the budget
plus one byte), and a refusal names the file and the budget. The values leave a wide margin
over the largest real model (full-size Parakeet-TDT-0.6B and GigaAM v3: pickles under 1 MB,
configs under 100 KB, tokens.json under 1 MB).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from speechport.errors import SpeechportError

# The pickle stream of a torch zip checkpoint (``data.pkl``; tensor data is counted apart).
# Every opcode of a pickle can build an object, so even this many bytes can build a few GB
# of empty containers; real ones are under 1 MB.
MAX_PICKLE_BYTES = 16 << 20
# Compressed members (tensor data in a zip, the members of a gzipped tar) may inflate to at
# most this many times the file's size, and to at least MIN_INFLATE_BUDGET in all.
MAX_INFLATE_RATIO = 64
MIN_INFLATE_BUDGET = 256 << 20
# Members of a .nemo tar (its entries are listed in memory before anything is read).
MAX_ARCHIVE_MEMBERS = 10_000
# A small member read into memory from an archive (a tokenizer model, a byte-order mark).
MAX_MEMBER_BYTES = 64 << 20
# A YAML config (``model_config.yaml``): PyYAML parses about 0.5 MB/s, so this is seconds.
MAX_YAML_BYTES = 4 << 20
# YAML nodes, aliases counted at every use (a "billion laughs" document is small but huge).
MAX_YAML_NODES = 1_000_000
# A JSON file of a bundle (the manifest, tokens.json, parity.json).
MAX_JSON_BYTES = 64 << 20
# Nesting of a JSON or YAML document (real ones nest under 10 levels).
MAX_JSON_DEPTH = 64


class LimitError(SpeechportError):
    """A file that would take more than its budget to read."""


def read_bounded(
    handle: IO[bytes],
    limit: int,
    *,
    what: str,
    path: str | Path,
    error: type[SpeechportError] = LimitError,
) -> bytes:
    """At most ``limit`` bytes from ``handle``; refuse (without reading more than one byte
    past the limit) when there are more."""
    data = handle.read(limit + 1)
    if len(data) > limit:
        raise error(
            f"{what} is larger than the {_size(limit)} allowed",
            path=path,
            hint="the file is corrupt or crafted (a decompression bomb?)",
        )
    return data


def check_size(
    size: int,
    limit: int,
    *,
    what: str,
    path: str | Path,
    error: type[SpeechportError] = LimitError,
) -> None:
    """Refuse a declared size over ``limit`` before reading anything."""
    if size > limit:
        raise error(
            f"{what} declares {_size(size)}, more than the {_size(limit)} allowed",
            path=path,
            hint="the file is corrupt or crafted (a decompression bomb?)",
        )


def read_json(path: Path, *, what: str, error: type[SpeechportError] = SpeechportError) -> Any:
    """A JSON file, checked for size (`MAX_JSON_BYTES`) and nesting (`MAX_JSON_DEPTH`);
    unreadable or malformed JSON raises ``error`` naming the file."""
    try:
        with path.open("rb") as handle:
            raw = read_bounded(handle, MAX_JSON_BYTES, what=what, path=path)
    except OSError as exc:
        raise error(f"cannot read {what} ({exc.strerror})", path=path) from exc
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        data = None
        deep = True
    except (ValueError, UnicodeDecodeError) as exc:
        raise error(f"{what} is not valid JSON ({exc})", path=path) from exc
    else:
        deep = depth_exceeds(data, MAX_JSON_DEPTH)
    if deep:
        raise error(
            f"{what} nests deeper than {MAX_JSON_DEPTH} levels",
            path=path,
            hint="the file is corrupt or crafted",
        )
    return data


def depth_exceeds(data: Any, limit: int) -> bool:
    """Whether lists and dicts nest more than ``limit`` deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    seen: set[int] = set()
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = list(node.values())
        elif isinstance(node, list | tuple):
            children = list(node)
        else:
            continue
        if depth > limit:
            return True
        if id(node) in seen:  # YAML aliases share nodes: visit each once
            continue
        seen.add(id(node))
        stack += [(child, depth + 1) for child in children]
    return False


def load_yaml(data: bytes, *, what: str, path: str | Path) -> Any:
    """``yaml.safe_load`` of at most `MAX_YAML_BYTES`, `MAX_YAML_NODES` nodes (aliases
    counted at every use) and `MAX_JSON_DEPTH` levels; YAMLError for malformed text."""
    import yaml

    check_size(len(data), MAX_YAML_BYTES, what=what, path=path)
    text = data.decode("utf-8")

    class BoundedLoader(yaml.SafeLoader):
        nodes = 0
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            BoundedLoader.nodes += 1
            if self.check_event(yaml.AliasEvent):
                event: Any = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
                anchor = self.anchors.get(event.anchor)
                if anchor is not None:
                    BoundedLoader.nodes += _node_count(anchor)
            if BoundedLoader.nodes > MAX_YAML_NODES:
                raise LimitError(
                    f"{what} holds more than {MAX_YAML_NODES} YAML nodes (aliases counted)",
                    path=path,
                    hint="the file is corrupt or crafted (a billion-laughs document?)",
                )
            BoundedLoader.depth += 1
            try:
                if BoundedLoader.depth > MAX_JSON_DEPTH:
                    raise LimitError(f"{what} nests deeper than {MAX_JSON_DEPTH} levels", path=path)
                return super().compose_node(parent, index)
            finally:
                BoundedLoader.depth -= 1

    return yaml.load(text, Loader=BoundedLoader)  # a SafeLoader subclass: no tags run


def _node_count(node: Any) -> int:
    """Nodes under a composed YAML node (iterative)."""
    import yaml

    count, stack = 0, [node]
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            break
        if isinstance(item, yaml.SequenceNode):
            stack += item.value
        elif isinstance(item, yaml.MappingNode):
            for key, value in item.value:
                stack += [key, value]
    return count


def _size(num_bytes: int) -> str:
    if num_bytes >= 1 << 20:
        return f"{num_bytes / (1 << 20):.0f} MiB"
    if num_bytes >= 1 << 10:
        return f"{num_bytes / (1 << 10):.0f} KiB"
    return f"{num_bytes} bytes"
