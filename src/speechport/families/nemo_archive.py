"""Read NeMo ``.nemo`` archives safely.

A ``.nemo`` file is a tar (plain or gzip) holding ``model_config.yaml``,
``model_weights.ckpt`` (a ``torch.save`` zip of the state dict) and the files the config
names with a ``nemo:`` prefix (the tokenizer). Reading one never extracts a member with
``tarfile``'s own extraction: every member name is checked first (no absolute path, no
``..``, no link, no device; regular files and directories only), and only the members
needed are copied, by their checked base name, into a private temporary directory that is
removed before `read_nemo_archive` returns, whatever happens. The config is parsed with
a bounded ``yaml.safe_load``; the weights with the restricted unpickler (no code runs).

Budgets (`speechport.limits`): sparse members are refused (a few hundred bytes of tar can
declare gigabytes of holes); members are listed one by one and their declared sizes summed
against the file's size (a plain tar holds every byte it declares; a gzipped one may
inflate `MAX_INFLATE_RATIO` times), so a gzip bomb is refused before it is inflated; at
most `MAX_ARCHIVE_MEMBERS` members; the config at most `MAX_YAML_BYTES`.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from speechport.errors import CheckpointError
from speechport.families.torch_checkpoint import load_torch_checkpoint
from speechport.fsutil import sha256_file
from speechport.limits import (
    MAX_ARCHIVE_MEMBERS,
    MAX_INFLATE_RATIO,
    MAX_MEMBER_BYTES,
    MAX_YAML_BYTES,
    MIN_INFLATE_BUDGET,
    LimitError,
    check_size,
    load_yaml,
    read_bounded,
)

CONFIG_NAME = "model_config.yaml"
WEIGHTS_NAME = "model_weights.ckpt"
NEMO_PREFIX = "nemo:"
_HINT = "pass a .nemo file written by NeMo's save_to (e.g. parakeet-tdt-0.6b-v3.nemo)"


@dataclass
class NemoArchive:
    """What a ``.nemo`` archive holds, read into memory."""

    path: Path
    config: dict[str, Any]
    state_dict: dict[str, np.ndarray]
    # Members the config refers to (``nemo:<name>``), by name, as bytes.
    files: dict[str, bytes] = field(default_factory=dict)
    sha256: str = ""

    def referenced(self, value: Any, what: str) -> bytes:
        """The bytes of the member a config value (``nemo:<name>``) names."""
        name = _member_name(str(value))
        if name not in self.files:
            raise CheckpointError(
                f"the config names {what} {value!r}, which the archive does not hold",
                path=self.path,
                component="tokenizer",
                hint=_HINT,
            )
        return self.files[name]


def read_nemo_archive(path: str | Path, *, wanted: tuple[str, ...] = ()) -> NemoArchive:
    """Read ``model_config.yaml``, ``model_weights.ckpt`` and every member the config
    references under the keys ``wanted`` (dotted paths, e.g. ``"tokenizer.model_path"``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            "file not found" if not path.exists() else "not a file",
            path=path,
            hint="check the --checkpoint path",
        )
    try:
        archive = tarfile.open(path, "r:*")  # noqa: SIM115 (closed by the with below)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CheckpointError(
            f"not a .nemo archive: it is not a tar file ({exc})", path=path, hint=_HINT
        ) from exc
    scratch = Path(tempfile.mkdtemp(prefix="speechport-nemo-"))
    try:
        with archive:
            members = _checked_members(path, archive)
            if CONFIG_NAME not in members:
                raise _missing(path, CONFIG_NAME, "the model config")
            if WEIGHTS_NAME not in members:
                raise _missing(path, WEIGHTS_NAME, "the weights")
            config_member = members[CONFIG_NAME]
            check_size(
                config_member.size,
                MAX_YAML_BYTES,
                what=CONFIG_NAME,
                path=path,
                error=CheckpointError,
            )
            config = _read_config(path, _read_member(path, archive, config_member))
            weights = scratch / WEIGHTS_NAME
            _copy_member(path, archive, members[WEIGHTS_NAME], weights)
            files: dict[str, bytes] = {}
            for key in wanted:
                value = _lookup(config, key)
                if not isinstance(value, str):
                    continue
                name = _member_name(value)
                if name in members:
                    files[name] = _read_member(path, archive, members[name])
        state_dict = _state_dict(path, weights)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return NemoArchive(path, config, state_dict, files, sha256_file(path))


def _checked_members(path: Path, archive: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Every member, checked; regular files by their base name."""
    out: dict[str, tarfile.TarInfo] = {}
    size = path.stat().st_size
    compressed = _is_compressed(path)
    budget = max(MIN_INFLATE_BUDGET, MAX_INFLATE_RATIO * size) if compressed else size
    declared = 0
    count = 0
    while True:
        try:
            member = archive.next()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise CheckpointError(
                f"the archive is corrupt or truncated ({exc})", path=path, hint=_HINT
            ) from exc
        if member is None:
            break
        count += 1
        if count > MAX_ARCHIVE_MEMBERS:
            raise CheckpointError(
                f"the archive holds more than {MAX_ARCHIVE_MEMBERS} members",
                path=path,
                hint="a .nemo holds a handful; the file is corrupt or crafted",
            )
        name = member.name
        if member.issparse():
            raise _unsafe(path, name, "is a sparse file (it may declare gigabytes of holes)")
        declared += max(member.size, 0)
        if declared > budget:
            raise CheckpointError(
                f"member {name!r} brings the declared contents to {declared} bytes, more than "
                + (
                    f"{MAX_INFLATE_RATIO} times the compressed file ({size} bytes) allows"
                    if compressed
                    else f"the file's own {size} bytes"
                ),
                path=path,
                hint="the file is corrupt or crafted (a decompression bomb?)",
            )
        parts = PurePosixPath(name).parts
        if name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute() or ":" in parts[:1]:
            raise _unsafe(path, name, "has an absolute path")
        if ".." in parts or "\\" in name:
            raise _unsafe(path, name, "points outside the archive ('..')")
        if member.issym() or member.islnk():
            raise _unsafe(path, name, f"is a link (to {member.linkname!r})")
        if member.isdir():
            continue
        if not member.isfile():
            raise _unsafe(path, name, "is a device, FIFO or other special file")
        base = PurePosixPath(name).name
        if base in out:
            raise _unsafe(path, name, f"duplicates {out[base].name!r}")
        out[base] = member
    return out


def _unsafe(path: Path, name: str, why: str) -> CheckpointError:
    return CheckpointError(
        f"refusing an unsafe archive: member {name!r} {why}; nothing was extracted",
        path=path,
        hint="NeMo's save_to never writes such members: the file is corrupt or was "
        "tampered with; download it again from its source",
    )


def _missing(path: Path, name: str, what: str) -> CheckpointError:
    return CheckpointError(
        f"the archive has no {name} ({what})",
        path=path,
        hint=f"{_HINT}; a .nemo without {name} is incomplete",
    )


def _read_member(path: Path, archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    if handle is None:  # pragma: no cover - members are checked to be regular files
        raise _unsafe(path, member.name, "cannot be read")
    with handle:
        try:
            return read_bounded(
                handle,
                MAX_MEMBER_BYTES,
                what=f"member {member.name!r}",
                path=path,
                error=CheckpointError,
            )
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise CheckpointError(
                f"member {member.name!r} is truncated ({exc})", path=path, hint=_HINT
            ) from exc


def _copy_member(
    path: Path, archive: tarfile.TarFile, member: tarfile.TarInfo, target: Path
) -> None:
    handle = archive.extractfile(member)
    if handle is None:  # pragma: no cover - members are checked to be regular files
        raise _unsafe(path, member.name, "cannot be read")
    try:
        with handle, target.open("wb") as out:
            shutil.copyfileobj(handle, out, 1 << 20)
    except (tarfile.TarError, EOFError) as exc:
        raise CheckpointError(
            f"member {member.name!r} is truncated ({exc})", path=path, hint=_HINT
        ) from exc


def _is_compressed(path: Path) -> bool:
    """Whether the tar is compressed (gzip, bzip2 or xz magic)."""
    with path.open("rb") as handle:
        head = handle.read(6)
    return head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ"))


def _read_config(path: Path, data: bytes) -> dict[str, Any]:
    import yaml

    try:
        config = load_yaml(data, what=CONFIG_NAME, path=path)
    except LimitError as exc:
        raise CheckpointError(exc.message, path=path, component="config", hint=exc.hint) from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{CONFIG_NAME} is not valid YAML ({exc})", path=path, component="config", hint=_HINT
        ) from exc
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{CONFIG_NAME} is not a mapping", path=path, component="config", hint=_HINT
        )
    return config


def _state_dict(path: Path, weights: Path) -> dict[str, np.ndarray]:
    try:
        raw = load_torch_checkpoint(weights)
    except CheckpointError as exc:
        raise CheckpointError(
            f"{WEIGHTS_NAME}: {exc.message}", path=path, component="state_dict", hint=exc.hint
        ) from exc
    if isinstance(raw, dict) and "state_dict" in raw:
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in raw.items()
    ):
        raise CheckpointError(
            f"{WEIGHTS_NAME} is not a mapping of names to tensors",
            path=path,
            component="state_dict",
            hint=_HINT,
        )
    return dict(raw)


def _member_name(value: str) -> str:
    """``nemo:abc_tokenizer.model`` (or a path NeMo wrote before packing) -> base name."""
    if value.startswith(NEMO_PREFIX):
        value = value[len(NEMO_PREFIX) :]
    return PurePosixPath(value.replace("\\", "/")).name


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node
