"""The plots of a verify report, written into the bundle's ``verify/`` folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from speechport.verify import plots
from speechport.verify.components import TOP_K

if TYPE_CHECKING:
    from speechport.verify.parity import ParityReport

PLOT_DIR = Path("verify")
MAX_FILES_PLOTTED = 4  # more lines than this make a plot unreadable; the JSON has them all


def draw_plots(report: ParityReport, bundle: Path) -> list[Path]:
    """Draw every plot the report has data for; returns their paths (none without
    matplotlib)."""
    if not plots.available():
        return []
    out = bundle / PLOT_DIR
    written: list[Path] = []
    if report.task == "vad":
        series = {}
        for f in report.files[: MAX_FILES_PLOTTED * max(len(report.engines), 1)]:
            step = f.details["seconds_per_chunk"]
            for form, d in f.details["paths"].items():
                diffs = [max(x, 1e-9) for x in d["abs_prob_diff"]]
                times = [i * step for i in range(len(diffs))]
                series[f"{f.backend} {form} · {Path(f.audio).name}"] = (times, diffs)
        written.append(
            plots.line_plot(
                series,
                out / "vad_prob_diff.png",
                title="|Δ speech probability| against the torch reference, per chunk",
                ylabel="|Δp| (floor 1e-9)",
                log=True,
            )
        )
    else:
        l2, topk = {}, {}
        for entry in report.components[: MAX_FILES_PLOTTED * max(len(report.engines), 1)]:
            label = f"{entry['backend']} · {Path(entry['audio']).name}"
            for c in entry["components"]:
                if c["role"] == "encoder":
                    first = next(iter(c["outputs"].values()))
                    values = [max(x, 1e-9) for x in first["l2_per_frame"]]
                    l2[label] = (c["times"], values)
                if "top1" in c:
                    topk[label] = (c["times"], c[f"top{TOP_K}"])
        if l2:
            written.append(
                plots.line_plot(
                    l2,
                    out / "encoder_l2.png",
                    title="Encoder: ‖Δ‖ / ‖reference‖ per frame",
                    ylabel="relative L2 (floor 1e-9)",
                    log=True,
                )
            )
        if topk:
            written.append(
                plots.line_plot(
                    topk,
                    out / "joint_topk.png",
                    title=f"Joint (CTC: per frame): share of the reference's top-{TOP_K} classes",
                    ylabel=f"top-{TOP_K} overlap",
                )
            )
    if report.latency:
        written.append(
            plots.latency_bars(
                report.latency,
                out / "latency.png",
                title="Latency per component (warm median; reference: torch)",
            )
        )
    return written
