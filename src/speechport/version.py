"""The installed speechport's version (the package metadata's; a source tree without
installation reads as ``0.0.0+local``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("speechport")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"
