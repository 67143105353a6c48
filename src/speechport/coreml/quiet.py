"""Silence coremltools' import-time warnings; shared by the interpreter, the Core ML backend
and the converter (only ``logging``, so any side may import it)."""

from __future__ import annotations

import logging


def quiet_coremltools() -> None:
    """coremltools logs at import that its native predictor is missing (always true off
    macOS) and that this torch version is untested; neither concerns speechport."""
    logging.getLogger("coremltools").setLevel(logging.ERROR)
