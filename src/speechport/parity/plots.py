"""PNG plots of a verify run: encoder error over time, joint top-k agreement, latency.

matplotlib is optional (``pip install speechport[convert]`` brings it): without it the
plots are skipped (the report's ``plots`` list is then empty).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from speechport.fsutil import atomic_write_bytes

MAX_FILES_PLOTTED = 4  # more lines than this make a plot unreadable; the JSON has them all
Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def figure(width: float = 9.0, height: float = 3.6) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def line_plot(series: Series, path: Path, *, title: str, ylabel: str, log: bool = False) -> Path:
    """One line per label over time (seconds)."""
    fig, ax = figure()
    for label, (times, values) in series.items():
        ax.plot(list(times), list(values), linewidth=0.9, label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8, loc="best")
    return save(fig, path)


def latency_bars(
    latency: Mapping[str, Mapping[str, Mapping[str, float]]], path: Path, *, title: str
) -> Path:
    """Warm median per component, one bar group per component and one bar per backend, with
    the p90 as an error bar; log scale (components differ by orders of magnitude)."""
    fig, ax = figure()
    backends = list(latency)
    components = sorted({c for per in latency.values() for c in per})
    width = 0.8 / max(len(backends), 1)
    for i, backend in enumerate(backends):
        xs, medians, errs = [], [], []
        for j, comp in enumerate(components):
            fig_ms = latency[backend].get(comp)
            if fig_ms is None:
                continue
            xs.append(j + i * width)
            medians.append(fig_ms["median_ms"])
            errs.append(max(fig_ms["p90_ms"] - fig_ms["median_ms"], 0.0))
        ax.bar(xs, medians, width=width, yerr=errs, capsize=3, label=backend)
    ax.set_xticks([j + width * (len(backends) - 1) / 2 for j in range(len(components))])
    ax.set_xticklabels(components, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("warm median, ms (bar: p90)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return save(fig, path)
