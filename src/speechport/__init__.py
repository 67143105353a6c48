"""speechport: take speech models onto devices.

Convert upstream checkpoints into self-describing bundles of Core ML and ONNX components,
prove them against the PyTorch reference, and run them with a small host-side loop.

>>> import speechport
>>> speechport.load("bundles/parakeet").transcribe("talk.wav").text
>>> speechport.load("bundles/silero-vad").segments("talk.wav")

``load`` opens a bundle as its task's runtime object (``Transcriber``,
``VoiceActivityDetector``); ``convert``, ``verify`` and ``quantize`` do what the CLI
commands of the same names do. Running a bundle needs neither torch nor the converters.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("speechport")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

from speechport.api import (
    ConvertOptions,
    QuantizeOptions,
    VerifyOptions,
    convert,
    load,
    quantize,
    verify,
)
from speechport.errors import SpeechportError
from speechport.parity.report import ParityReport
from speechport.pipelines.transcriber import (
    Segment,
    Transcriber,
    Transcript,
    WordTiming,
)
from speechport.pipelines.vad import SpeechSegment, VoiceActivityDetector
from speechport.version import __version__

__all__ = [
    "ConvertOptions",
    "ParityReport",
    "QuantizeOptions",
    "Segment",
    "SpeechSegment",
    "SpeechportError",
    "Transcriber",
    "Transcript",
    "VerifyOptions",
    "VoiceActivityDetector",
    "WordTiming",
    "__version__",
    "convert",
    "load",
    "quantize",
    "verify",
]
