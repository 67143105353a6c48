"""Errors that name the file, the component and what to do.

Every failure a user can cause (a bad checkpoint, unreadable audio, a broken bundle) is a
`SpeechportError`; the CLI prints its message and exits with status 2 instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class SpeechportError(Exception):
    """A failure with a cause the user can act on.

    The message is composed as ``<path>: <component>: <what happened>. <what to do>``,
    leaving out the parts that are unknown.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        component: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.component = component
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        parts = [p for p in (self.path, self.component) if p]
        text = ": ".join([*parts, self.message])
        if self.hint:
            hint = self.hint[:1].upper() + self.hint[1:]
            text = f"{text.rstrip('.')}. {hint}"
        return text


class AudioError(SpeechportError):
    """Audio that cannot be read, is empty, or holds invalid samples."""


class CheckpointError(SpeechportError):
    """A checkpoint that is missing, corrupt, unsafe, or of another model."""


class BundleError(SpeechportError):
    """A bundle directory whose manifest or files do not hold together."""


class ExportError(SpeechportError):
    """A component that could not be converted to a target format."""


class BackendError(SpeechportError):
    """An inference engine that is missing or cannot run a component."""


class GateError(SpeechportError):
    """A bundle that ran but did not meet its parity gate (``verify``, ``convert --verify``)."""
