"""Tasks as plug-ins: the registry that maps a manifest's ``task`` to what runs, verifies,
reports and scores bundles of that task (see ``tasks/base.py``).

A new task is one module here with a ``Task`` subclass, and one line in ``TASKS``.
"""

from __future__ import annotations

from pathlib import Path

from speechport.errors import BundleError
from speechport.manifest import MANIFEST_NAME, Manifest
from speechport.tasks.asr import AsrTask
from speechport.tasks.base import DEFAULT_LIMITS, GateLimits, Task
from speechport.tasks.kws import KwsTask
from speechport.tasks.streaming_asr import StreamingAsrTask
from speechport.tasks.tts import TtsTask
from speechport.tasks.vad import VadTask

TASKS: dict[str, Task] = {
    task.name: task for task in (AsrTask(), StreamingAsrTask(), VadTask(), KwsTask(), TtsTask())
}


def get_task(name: str) -> Task:
    """The plug-in for task ``name``; a clear error naming the known tasks otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise BundleError(
            f"unknown task {name!r}; this speechport runs: {', '.join(TASKS)}",
            hint="upgrade speechport, or check the manifest's task",
        ) from None


def task_for(manifest: Manifest, path: str | Path | None = None) -> Task:
    """The plug-in of a bundle's task, after checking that its manifest (read from
    ``path``) has the sections the task needs; errors name the file."""
    try:
        task = get_task(manifest.task)
        task.check_manifest(manifest)
    except BundleError as exc:
        where = None if path is None else Path(path) / MANIFEST_NAME
        raise BundleError(exc.message, path=where, hint=exc.hint) from None
    return task


__all__ = ["DEFAULT_LIMITS", "TASKS", "GateLimits", "Task", "get_task", "task_for"]
