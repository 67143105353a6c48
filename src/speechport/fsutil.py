"""Filesystem helpers: write to a temporary path, then rename, so nothing half-written stays."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from speechport.errors import SpeechportError


@contextmanager
def atomic_directory(
    target: Path, *, overwrite: bool = False, marker: str = "speechport.json"
) -> Iterator[Path]:
    """Yield a fresh temporary directory that becomes ``target`` only if the block succeeds.

    The temporary directory sits beside ``target`` (same filesystem, so the final rename is
    atomic). On any exception it is removed and ``target`` is left exactly as it was.
    ``overwrite`` replaces an existing ``target`` only if it is empty or holds ``marker``
    (a bundle): never a directory of someone's other files.
    """
    target = Path(target)
    if target.exists():
        if not overwrite:
            raise SpeechportError(
                "output directory already exists",
                path=target,
                hint="choose another --out or pass --force to replace it",
            )
        if not target.is_dir() or (any(target.iterdir()) and not (target / marker).is_file()):
            raise SpeechportError(
                f"refusing to replace: it is not a bundle (no {marker}) and not empty",
                path=target,
                hint="choose another --out; --force only replaces bundles",
            )
    created = _make_parents(target.parent)
    remove_stale_partials(target)
    try:
        tmp = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-", dir=target.parent)
        )
    except OSError as exc:
        _remove_empty(created)
        raise SpeechportError(
            f"cannot write the output here ({exc.strerror})",
            path=target.parent,
            hint="choose a writable place for the output",
        ) from exc
    try:
        yield tmp
        from speechport import interrupts

        interrupts.check()  # a swallowed Ctrl-C must not replace the old output
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise
    if target.exists():
        trash = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.old-{os.getpid()}-", dir=target.parent)
        )
        target.rename(trash / target.name)
        tmp.rename(target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        tmp.rename(target)


def check_writable(target: Path) -> None:
    """Refuse, before any work, an output that could not be written: its parent cannot be
    created, is a file, or takes no new entries (read-only, no permission). Leaves nothing."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise SpeechportError("the output exists and is a file, not a directory", path=target)
    created = _make_parents(target.parent)
    try:
        Path(tempfile.mkdtemp(prefix=f".{target.name}.probe-", dir=target.parent)).rmdir()
    except OSError as exc:
        raise SpeechportError(
            f"cannot write the output here ({exc.strerror})",
            path=target.parent,
            hint="choose a writable place for the output",
        ) from exc
    finally:
        _remove_empty(created)


_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?:partial|old)-(?P<pid>\d+)-[^/]*$")


def remove_stale_partials(target: Path) -> list[Path]:
    """Remove the ``.NAME.partial-PID-*`` (and ``.NAME.old-PID-*``) directories beside
    ``target`` that a killed run (SIGKILL, power loss) left: those whose process is gone.
    Returns what was removed; a note goes to stderr."""
    removed: list[Path] = []
    try:
        siblings = list(Path(target).parent.iterdir())
    except OSError:
        return removed
    for item in siblings:
        match = _PARTIAL.match(item.name)
        if not match or match["name"] != target.name or not item.is_dir():
            continue
        if _alive(int(match["pid"])):
            continue
        shutil.rmtree(item, ignore_errors=True)
        if not item.exists():
            removed.append(item)
            print(f"speechport: removed {item} (left by a run that was killed)", file=sys.stderr)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _make_parents(directory: Path) -> list[Path]:
    """``mkdir -p`` that returns the directories it created (deepest last)."""
    missing: list[Path] = []
    probe = directory
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpeechportError(
            f"cannot create the output's parent directory ({exc.strerror})", path=directory
        ) from exc
    if not directory.is_dir():
        raise SpeechportError("the output's parent is not a directory", path=directory)
    return list(reversed(missing))


def _remove_empty(created: list[Path]) -> None:
    """Remove the directories a failed write created, deepest first, if still empty."""
    for directory in reversed(created):
        try:
            directory.rmdir()
        except OSError:
            return


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary sibling and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp_name).replace(path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def path_size(path: Path) -> int:
    """Size in bytes of a file, or of every file under a directory (an ``.mlpackage``)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human_size(num_bytes: int) -> str:
    """``1536`` -> ``'1.5 KB'``; decimal units, as file browsers show them."""
    size = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")
