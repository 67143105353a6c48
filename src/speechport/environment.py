"""Where something ran: library versions and the host, for provenance and reports."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from speechport.version import __version__


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    """Python's and speechport's versions, and those of ``packages`` that are installed."""
    versions = {"python": platform.python_version(), "speechport": __version__}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def host_info() -> dict[str, Any]:
    """The machine: OS, architecture, processor and logical CPU count."""
    return {
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS says; else every
    CPU), at least one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
