"""Plots of a quantization sweep: quality against size with the Pareto front, quality per
component, latency per component."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from speechport.parity import plots
from speechport.tasks import get_task

if TYPE_CHECKING:
    from speechport.compression.results import QuantizeSummary

PLOT_DIR = Path("plots")


def import_matplotlib() -> None:
    """Import what drawing takes (matplotlib's pyplot on Agg: half a second), so that a
    sweep does it while its worker processes run (nothing without matplotlib)."""
    if plots.available():
        import matplotlib

        matplotlib.use("Agg")  # as plots.figure chooses it
        import matplotlib.pyplot


def draw_sweep_plots(summary: QuantizeSummary, out: Path) -> list[Path]:
    """Every plot the summary has data for (none without matplotlib)."""
    if not plots.available():
        return []
    written: list[Path] = []
    target = out / PLOT_DIR
    scored = [v for v in summary.variants if v.quality() is not None]
    if scored:
        written.append(_pareto(summary, target / "quality_vs_size.png"))
    if any(c.quality is not None for v in summary.variants for c in v.components):
        written.append(_component_quality(summary, target / "component_quality.png"))
    latency = {
        v.name: {
            c.name: {"median_ms": c.latency_ms, "p90_ms": c.latency_ms}
            for c in v.components
            if c.latency_ms is not None
        }
        for v in summary.variants
    }
    if any(latency.values()):
        written.append(
            plots.latency_bars(
                latency,
                target / "latency.png",
                title=f"warm latency per component ({summary.engine or 'Core ML'})",
            )
        )
    return written


def _pareto(summary: QuantizeSummary, path: Path) -> Path:
    fig, ax = plots.figure(9.0, 5.0)
    front = set(summary.pareto)
    label = get_task(summary.task).quality_label
    for v in summary.variants:
        q = v.quality()
        if q is None:
            continue
        colour = "tab:green" if v.passed else "tab:red"
        ax.scatter([v.bytes / 1e6], [q], c=colour, s=40 if v.name in front else 18, zorder=3)
        ax.annotate(
            v.name, (v.bytes / 1e6, q), fontsize=7, xytext=(4, 3), textcoords="offset points"
        )
    line = [summary.variant(n) for n in summary.pareto]
    ax.plot(
        [v.bytes / 1e6 for v in line],
        [v.quality() for v in line],
        color="tab:blue",
        linewidth=1.0,
        label="Pareto front",
    )
    ax.set_xlabel("Core ML packages on disk (MB)")
    ax.set_ylabel(label)
    ax.set_title("end-to-end quality against size (green: passes the gate, red: fails)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return plots.save(fig, path)


def _component_quality(summary: QuantizeSummary, path: Path) -> Path:
    fig, ax = plots.figure(10.0, 4.5)
    roles = sorted(
        {c.role for v in summary.variants for c in v.components if c.quality is not None}
    )
    width = 0.8 / max(len(roles), 1)
    for i, role in enumerate(roles):
        xs, ys = [], []
        for j, v in enumerate(summary.variants):
            c = next((c for c in v.components if c.role == role), None)
            if c is not None and c.quality is not None:
                xs.append(j + i * width)
                ys.append(max(c.quality, 0.0))
        ax.bar(xs, ys, width=width, label=role)
    ax.set_xticks([j + width * (len(roles) - 1) / 2 for j in range(len(summary.variants))])
    ax.set_xticklabels([v.name for v in summary.variants], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("1 - ‖Δ‖/‖ref‖ (fp32 torch reference)")
    lowest = min((b.get_height() for b in ax.patches), default=0.0)
    ax.set_ylim(bottom=max(0.0, min(0.9, lowest - 0.05)), top=1.01)
    ax.set_title("per-component quality on the reference's own inputs (worst file)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="lower left", framealpha=0.9)
    return plots.save(fig, path)
