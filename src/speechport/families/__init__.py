"""Model families: one module per upstream family; only they know architectures and
checkpoint formats.

Importing this package imports no torch (the checkpoint readers are numpy-only); a family's
own module, which builds torch modules, is imported when the family is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from speechport.errors import SpeechportError

if TYPE_CHECKING:
    from speechport.families.base import Family


def _gigaam() -> Family:
    from speechport.families.gigaam import GigaAMFamily

    return GigaAMFamily()


def _parakeet() -> Family:
    from speechport.families.parakeet import ParakeetFamily

    return ParakeetFamily()


def _nemo_streaming() -> Family:
    from speechport.families.nemo_streaming import NemoStreamingFamily

    return NemoStreamingFamily()


def _zipformer_kws() -> Family:
    from speechport.families.zipformer_kws import ZipformerKwsFamily

    return ZipformerKwsFamily()


def _kokoro() -> Family:
    from speechport.families.kokoro import KokoroFamily

    return KokoroFamily()


def _silero_vad() -> Family:
    from speechport.families.silero_vad import SileroVadFamily

    return SileroVadFamily()


# Every family by its id (the name a manifest's ``family`` and ``speechport convert`` use),
# built on demand so that listing families imports no torch.
FAMILIES: dict[str, Callable[[], Family]] = {
    "gigaam": _gigaam,
    "parakeet": _parakeet,
    "nemo-streaming": _nemo_streaming,
    "silero-vad": _silero_vad,
    "zipformer-kws": _zipformer_kws,
    "kokoro": _kokoro,
}


# Ids manifests were written with before the registry settled on one spelling per family.
_FORMER_IDS = {"silero_vad": "silero-vad"}


def get_family(name: str) -> Family:
    """The family registered under ``name`` (or under the id a bundle written by an earlier
    speechport names)."""
    try:
        factory = FAMILIES[_FORMER_IDS.get(name, name)]
    except KeyError:
        raise SpeechportError(
            f"unknown model family {name!r}; known: {', '.join(FAMILIES)}"
        ) from None
    return factory()


__all__ = ["FAMILIES", "get_family"]
