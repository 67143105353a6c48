"""espeak-ng as a subprocess: IPA with tie characters for one phrase at a time.

Why a subprocess rather than the library through ctypes: the library keeps global state
(one voice, one output mode) and is not safe to call from several threads, a crash inside
it would take the host process down, and binding its C API ties speechport to one ABI.
The command line gives the same phonemes (``--ipa --tie``), its version is the version of
what runs, and a missing program is a plain, explainable error. A call costs ~20 ms, a few
per sentence.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

from speechport.errors import SpeechportError

TIE = "^"
INSTALL_HINT = (
    "install espeak-ng (Debian/Ubuntu: apt-get install espeak-ng; macOS: brew install "
    "espeak-ng), or pass phonemes instead of text (--phonemes)"
)


class G2PError(SpeechportError):
    """Text that cannot be turned into phonemes (espeak-ng missing or failing)."""


@dataclass(frozen=True)
class EspeakInfo:
    path: str
    version: str  # "1.51"


@cache
def find_espeak(program: str = "espeak-ng") -> EspeakInfo:
    """The installed espeak-ng and its version; a ``G2PError`` saying how to install it."""
    path = shutil.which(program)
    if path is None:
        raise G2PError(f"{program} is not installed; text needs it for phonemes", hint=INSTALL_HINT)
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise G2PError(f"{path} does not run ({exc})", hint=INSTALL_HINT) from None
    match = re.search(r"text-to-speech:\s*([0-9][0-9.]*)", done.stdout)
    return EspeakInfo(path=path, version=match.group(1) if match else "unknown")


class Espeak:
    """Phonemes of plain phrases (no punctuation) in espeak-ng's IPA for ``language``."""

    def __init__(self, language: str = "en-us", program: str = "espeak-ng") -> None:
        self.info = find_espeak(program)
        self.language = language

    def ipa(self, phrase: str) -> str:
        """espeak-ng's IPA of ``phrase`` (multi-letter phonemes joined by ``TIE``); the
        clauses espeak-ng splits it into are joined with a space."""
        command = [self.info.path, "-q", "--ipa", f"--tie={TIE}", "-v", self.language, "--stdin"]
        try:
            done = subprocess.run(
                command, input=phrase, capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise G2PError(f"espeak-ng failed on {phrase[:40]!r}: {exc}") from None
        if done.returncode != 0:
            reason = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
            raise G2PError(
                f"espeak-ng failed on {phrase[:40]!r}: {reason[0]}",
                hint=f"check that voice {self.language!r} is installed (espeak-ng --voices)",
            )
        return " ".join(line.strip() for line in done.stdout.splitlines() if line.strip())
