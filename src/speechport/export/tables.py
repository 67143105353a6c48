"""Markdown tables of verify figures for model cards (no task dispatch here: the tasks'
card sections call these)."""

from __future__ import annotations

from speechport.parity.report import FileComponents
from speechport.parity.stats import TensorStats


def component_table(entries: list[FileComponents]) -> list[str]:
    """Per component and backend, the worst figures over every file."""
    rows: dict[tuple[str, str, str], list[TensorStats]] = {}
    agreement: dict[tuple[str, str], list[float]] = {}
    for entry in entries:
        for c in entry.components:
            for out, figures in c.outputs.items():
                rows.setdefault((c.component, out, entry.backend), []).append(figures)
            if c.top1_agreement is not None:
                agreement.setdefault((c.component, entry.backend), []).append(c.top1_agreement)
    if not rows:
        return []
    lines = [
        "",
        "Per component, on the reference's inputs (worst over all files; relative L2 is "
        "per frame):",
        "",
        "| component | output | backend | max abs | max rel | cosine | worst rel L2 | exact |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (comp, out, backend), stats in rows.items():
        worst_l2 = max((max(s.l2_per_frame, default=0.0) for s in stats), default=0.0)
        lines.append(
            f"| {comp} | `{out}` | {backend} | {max(s.max_abs for s in stats):.2e} | "
            f"{max(s.max_rel for s in stats):.2e} | {min(s.cosine for s in stats):.6f} | "
            f"{worst_l2:.2e} | {'yes' if all(s.exact for s in stats) else 'no'} |"
        )
    for (comp, backend), shares in agreement.items():
        lines.append("")
        lines.append(
            f"{comp} ({backend}): argmax equal to the reference's on "
            f"{100 * min(shares):.2f}% of calls (worst file)."
        )
    return lines
