"""Read ``torch.save`` zip checkpoints without running code from them.

A PyTorch checkpoint is a zip archive holding ``<root>/data.pkl`` (a pickle of the object
tree) and ``<root>/data/<key>`` (the raw bytes of every tensor storage). Unpickling with
the standard machinery can execute arbitrary code, so this module unpickles through an
allowlist: containers, tensor rebuilds and storage markers, plus whatever stand-in classes
the caller names (e.g. OmegaConf configs mapped to inert records). Any other global in the
pickle is refused with an error naming it. Tensors come back as numpy arrays, memory-mapped
from the archive where it is stored uncompressed, so torch is not needed to read weights.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from speechport.errors import CheckpointError
from speechport.limits import (
    MAX_INFLATE_RATIO,
    MAX_PICKLE_BYTES,
    MIN_INFLATE_BUDGET,
    check_size,
    read_bounded,
)

# Storage classes as they appear in the pickle -> numpy dtype of their elements.
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),  # widened to float32 after reading
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}

_ZIP_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")


class _Sealed:
    """Base of the objects the allowlist hands to the unpickler. Pickle's BUILD opcode would
    otherwise write attributes into them (even into a frozen dataclass), and a crafted file
    could change how the rest of the load, or a later load, reads tensors."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError("the pickle tries to modify a built-in loader object")


class _StorageType(_Sealed):
    __slots__ = ("name",)
    name: str

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)

    @property
    def dtype(self) -> np.dtype:
        return _STORAGE_DTYPES[self.name]


class TypeMarker(_Sealed):
    """An allowed but inert global, such as ``typing.Any`` inside OmegaConf metadata."""

    __slots__ = ("qualname",)
    qualname: str

    def __init__(self, qualname: str) -> None:
        object.__setattr__(self, "qualname", qualname)


class _Call(_Sealed):
    """An allowed function, sealed against BUILD."""

    __slots__ = ("function",)
    function: Callable[..., Any]

    def __init__(self, function: Callable[..., Any]) -> None:
        object.__setattr__(self, "function", function)

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)


class InertRecord:
    """Stands in for an allowed class (a config node, a TorchScript module): keeps whatever
    state the pickle gives it and runs nothing."""

    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state = {"_args": args, **kwargs}

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict_state, slot_state)
            merged: dict[str, Any] = {}
            for part in state:
                if isinstance(part, dict):
                    merged.update(part)
            state = merged
        self.state = state

    def get(self, name: str) -> Any:
        """An attribute from the pickled state (``KeyError`` names what exists)."""
        if not isinstance(self.state, dict) or name not in self.state:
            have = sorted(self.state) if isinstance(self.state, dict) else []
            raise KeyError(f"{type(self).__name__} has no {name!r} (has {have})")
        return self.state[name]


def inert_class(name: str, module: str) -> type[InertRecord]:
    """A fresh `InertRecord` subclass carrying the pickled class's name."""
    return type(name, (InertRecord,), {"__module__": module, "__qualname__": name})


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _rebuild_tensor(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    *_ignored: Any,
) -> np.ndarray:
    """A tensor view of a storage, checked: indices are non-negative integers, the view
    stays inside the storage and holds no more elements than it (no broadcast or
    overlapping views, which could turn a few bytes into gigabytes)."""
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise ValueError("a tensor must be built on a storage")
    size, stride = tuple(size), tuple(stride)
    values = (storage_offset, *size, *stride)
    if len(size) != len(stride) or not all(_is_index(v) for v in values):
        raise ValueError(
            f"invalid tensor geometry: offset {storage_offset}, size {size}, stride {stride}"
        )
    count = int(np.prod(size, dtype=np.int64)) if size else 1
    if count == 0:
        return np.zeros(size, dtype=storage.dtype)
    last = storage_offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True))
    if last >= storage.size or count > storage.size:
        raise ValueError("tensor view reaches past its storage or repeats its elements")
    if not size:
        return np.array(storage[storage_offset], dtype=storage.dtype)
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:],
        shape=size,
        strides=tuple(st * storage.dtype.itemsize for st in stride),
        writeable=False,
    )
    return np.ascontiguousarray(view)


def _first(data: Any, *_ignored: Any) -> Any:
    return data


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """A fresh allowlist for one load (so nothing one file does can reach another)."""
    return {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("collections", "defaultdict"): collections.defaultdict,
        ("builtins", "dict"): dict,
        ("builtins", "list"): list,
        ("builtins", "tuple"): tuple,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "int"): int,
        ("builtins", "long"): int,  # Python 2 name, still written by protocol-2 pickles
        ("builtins", "float"): float,
        ("builtins", "str"): str,
        ("builtins", "bool"): bool,
        ("torch._utils", "_rebuild_tensor_v2"): _Call(_rebuild_tensor),
        ("torch._utils", "_rebuild_parameter"): _Call(_first),
        ("torch._utils", "_rebuild_parameter_with_state"): _Call(_first),
        ("typing", "Any"): TypeMarker("typing.Any"),
        # TorchScript archives store int/float/bool lists through these helpers.
        ("torch.jit._pickle", "build_intlist"): list,
        ("torch.jit._pickle", "build_doublelist"): list,
        ("torch.jit._pickle", "build_boollist"): list,
        ("torch.jit._pickle", "build_tensorlist"): list,
        **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
    }


class _ArchiveReader:
    """Random access to the members of a torch zip archive."""

    def __init__(self, path: Path, archive: zipfile.ZipFile) -> None:
        self.path = path
        self.archive = archive
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError(
                "not a PyTorch checkpoint: the zip archive holds no single data.pkl",
                path=path,
                hint="pass the .ckpt/.pt file written by torch.save",
            )
        self.pickle_name = pickles[0]
        self.root = self.pickle_name[: -len("data.pkl")]
        self._storages: dict[str, np.ndarray] = {}
        self.big_endian = self._byteorder() == "big"
        # Deflated members are inflated in memory; bound the total against zip bombs.
        self._inflate_budget = max(MIN_INFLATE_BUDGET, MAX_INFLATE_RATIO * path.stat().st_size)

    def _byteorder(self) -> str:
        name = f"{self.root}byteorder"
        if name not in self.archive.namelist():
            return "little"
        with self.archive.open(name) as member:
            raw = read_bounded(
                member, 16, what=f"member {name}", path=self.path, error=CheckpointError
            )
        order = raw.decode("ascii", errors="replace").strip()
        if order not in ("little", "big"):
            raise CheckpointError(f"unknown byte order {order!r} in the archive", path=self.path)
        return order

    def storage(self, key: str, storage_type: _StorageType, numel: Any) -> np.ndarray:
        if not _is_index(numel):
            raise CheckpointError(f"tensor storage {key!r} has an invalid size", path=self.path)
        cache_key = f"{key}:{storage_type.name}"
        if cache_key not in self._storages:
            self._storages[cache_key] = self._read_storage(key, storage_type, numel)
        return self._storages[cache_key]

    def _read_storage(self, key: str, storage_type: _StorageType, numel: int) -> np.ndarray:
        dtype = storage_type.dtype
        if self.big_endian:
            dtype = dtype.newbyteorder(">")
        name = f"{self.root}data/{key}"
        try:
            info = self.archive.getinfo(name)
        except KeyError as exc:
            raise CheckpointError(
                f"tensor storage {key!r} is missing from the archive",
                path=self.path,
                hint="the file is truncated or corrupt; download it again",
            ) from exc
        nbytes = numel * dtype.itemsize
        if info.file_size < nbytes:
            raise CheckpointError(
                f"tensor storage {key!r} holds {info.file_size} bytes, {nbytes} expected",
                path=self.path,
                hint="the file is truncated or corrupt; download it again",
            )
        array: np.ndarray
        if info.compress_type == zipfile.ZIP_STORED:
            array = np.memmap(
                self.path, dtype=dtype, mode="c", offset=self._data_offset(info), shape=(numel,)
            )
        else:
            self._inflate_budget -= nbytes
            if self._inflate_budget < 0:
                raise CheckpointError(
                    "compressed tensor data inflates far beyond the file's size",
                    path=self.path,
                    hint="the file may be a zip bomb; torch.save writes tensors uncompressed",
                )
            with self.archive.open(name) as member:
                array = np.frombuffer(bytearray(member.read(nbytes)), dtype=dtype)
        if self.big_endian:
            array = np.asarray(array).astype(dtype.newbyteorder("="))
        if storage_type.name == "BFloat16Storage":
            array = (np.asarray(array, dtype=np.uint32) << 16).view(np.float32)
        return np.asarray(array)

    def _data_offset(self, info: zipfile.ZipInfo) -> int:
        with self.path.open("rb") as handle:
            handle.seek(info.header_offset)
            header = _ZIP_LOCAL_HEADER.unpack(handle.read(_ZIP_LOCAL_HEADER.size))
        name_len: int = header[9]
        extra_len: int = header[10]
        return info.header_offset + _ZIP_LOCAL_HEADER.size + name_len + extra_len


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(
        self,
        data: bytes,
        reader: _ArchiveReader,
        allowed: Mapping[tuple[str, str], Any],
        inert_prefixes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(io.BytesIO(data))
        self._reader = reader
        self._allowed = allowed
        self._inert_prefixes = inert_prefixes
        self._inert: dict[tuple[str, str], type[InertRecord]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":
            module = "builtins"
        if module.startswith(self._inert_prefixes) and self._inert_prefixes:
            key = (module, name)
            if key not in self._inert:
                self._inert[key] = inert_class(name, module)
            return self._inert[key]
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"refused to unpickle {module}.{name}: only tensors, plain containers and "
                "known config classes may appear in a checkpoint",
                path=self._reader.path,
                hint="the file may be unsafe or is not a checkpoint speechport knows; "
                "nothing from it was executed",
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(
                f"unexpected persistent id {pid!r} in the pickle", path=self._reader.path
            )
        storage_type, key, _location, numel = pid[1], pid[2], pid[3], pid[4]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(
                f"unsupported storage type {storage_type!r}", path=self._reader.path
            )
        return self._reader.storage(str(key), storage_type, numel)


def load_torch_checkpoint(
    path: str | Path,
    *,
    extra_globals: Mapping[tuple[str, str], Callable[..., Any] | object] | None = None,
    inert_prefixes: tuple[str, ...] = (),
) -> Any:
    """Unpickle a ``torch.save`` zip checkpoint (or a TorchScript archive) safely; tensors
    become numpy arrays.

    ``extra_globals`` maps ``(module, name)`` found in the pickle to the harmless object to
    use instead (typically an inert record class for a config type). Classes in modules
    starting with one of ``inert_prefixes`` (e.g. ``"__torch__."``, the classes of a
    TorchScript archive, whose code is never loaded) become `InertRecord` subclasses.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError("file not found", path=path, hint="check the --checkpoint path")
    if not path.is_file():
        raise CheckpointError("not a file", path=path, hint="pass the checkpoint file itself")
    allowed = _allowed_globals()
    allowed.update(extra_globals or {})
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(
            "not a PyTorch zip checkpoint (corrupt, truncated, or written by another tool)",
            path=path,
            hint="pass the file written by torch.save; legacy non-zip checkpoints are not read",
        ) from exc
    with archive:
        reader = _ArchiveReader(path, archive)
        what = f"the pickle {reader.pickle_name}"
        try:
            info = archive.getinfo(reader.pickle_name)
            check_size(
                info.file_size, MAX_PICKLE_BYTES, what=what, path=path, error=CheckpointError
            )
            with archive.open(info) as member:
                data = read_bounded(
                    member, MAX_PICKLE_BYTES, what=what, path=path, error=CheckpointError
                )
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
            raise CheckpointError(
                "cannot read the pickle inside the checkpoint",
                path=path,
                hint="the file is truncated or corrupt; download it again",
            ) from exc
        try:
            return _RestrictedUnpickler(data, reader, allowed, inert_prefixes).load()
        except CheckpointError:
            raise
        except Exception as exc:  # any malformed pickle: a clear error, not a traceback
            raise CheckpointError(
                f"the checkpoint's pickle is malformed ({type(exc).__name__}: {exc})",
                path=path,
                hint="the file is truncated or corrupt; download it again",
            ) from exc
