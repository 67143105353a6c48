"""Model families: one module per upstream family; only they know architectures and
checkpoint formats."""

from __future__ import annotations

from speechport.errors import SpeechportError
from speechport.families.base import BundlePlan, Family, LoadedCheckpoint

FAMILIES = ("gigaam", "silero_vad")


def get_family(name: str) -> Family:
    """The family implementation registered under ``name``."""
    if name == "gigaam":
        from speechport.families.gigaam import GigaAMFamily

        return GigaAMFamily()
    if name in ("silero_vad", "silero-vad"):
        from speechport.families.silero_vad import SileroVadFamily

        return SileroVadFamily()
    raise SpeechportError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")


__all__ = ["FAMILIES", "BundlePlan", "Family", "LoadedCheckpoint", "get_family"]
