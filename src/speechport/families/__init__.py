"""Model families: one module per upstream family; only they know architectures and
checkpoint formats.

Importing this package imports no torch (the checkpoint readers are numpy-only); a family's
own module, which builds torch modules, is imported when the family is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from speechport.errors import SpeechportError

if TYPE_CHECKING:
    from speechport.families.base import Family

FAMILIES = ("gigaam", "parakeet", "silero-vad", "zipformer-kws")


def get_family(name: str) -> Family:
    """The family implementation registered under ``name`` (``silero_vad`` also accepted)."""
    if name == "gigaam":
        from speechport.families.gigaam import GigaAMFamily

        return GigaAMFamily()
    if name == "parakeet":
        from speechport.families.parakeet import ParakeetFamily

        return ParakeetFamily()
    if name in ("silero-vad", "silero_vad"):
        from speechport.families.silero_vad import SileroVadFamily

        return SileroVadFamily()
    if name in ("zipformer-kws", "zipformer_kws"):
        from speechport.families.zipformer_kws import ZipformerKwsFamily

        return ZipformerKwsFamily()
    raise SpeechportError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")


__all__ = ["FAMILIES", "get_family"]
