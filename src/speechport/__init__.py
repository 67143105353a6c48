"""speechport: take speech models onto devices.

Convert upstream checkpoints into self-describing bundles of Core ML and ONNX components,
prove them against the PyTorch reference, and run them with a small host-side loop.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("speechport")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
