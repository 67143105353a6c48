"""Crafted inputs for tests/test_hostile_input.py: bombs, lying headers, odd files.

Every maker writes a small file (a few KB at most: a bomb's declared size is in its header,
not on disk) and returns its path.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np


def wav_header(rate: int, channels: int, bits: int, data_bytes: int) -> bytes:
    """A canonical PCM WAV header declaring ``data_bytes`` of samples."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def wav_file(path: Path, rate: int, channels: int = 1, frames: int = 1600, **kw: Any) -> Path:
    """A PCM-16 WAV of noise whose header says ``rate`` and ``channels``; ``declared``
    overrides the data size the header claims."""
    rng = np.random.default_rng(0)
    data = (rng.standard_normal(frames * channels) * 1000).astype("<i2").tobytes()
    declared = kw.get("declared", len(data))
    path.write_bytes(wav_header(rate, channels, 16, declared) + data)
    return path


def zip_checkpoint(path: Path, pickle_bytes: bytes, *, deflate: bool = True) -> Path:
    """A torch-style zip checkpoint whose ``archive/data.pkl`` holds ``pickle_bytes``."""
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method, compresslevel=9) as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        archive.writestr("archive/byteorder", "little")
    return path


def tar_header(name: str, size: int, typeflag: bytes = b"0") -> bytes:
    """One 512-byte ustar/GNU header declaring ``size`` bytes (the data need not follow)."""
    info = tarfile.TarInfo(name)
    info.size = 0
    info.type = typeflag
    block = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))[:512]
    block[124:136] = b"%011o\0" % size  # the declared size, whatever follows
    block[148:156] = b" " * 8
    checksum = sum(block)
    block[148:156] = b"%06o\0 " % checksum
    return bytes(block)


def nemo_with_declared_member(
    path: Path, name: str, size: int, *, compress: bool, typeflag: bytes = b"0"
) -> Path:
    """A .nemo (tar, gzipped or not) whose ``name`` member declares ``size`` bytes: a bomb
    in its header, a few hundred bytes on disk."""
    config = b"sample_rate: 16000\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        info = tarfile.TarInfo("./model_config.yaml")
        info.size = len(config)
        archive.addfile(info, io.BytesIO(config))
    raw = buffer.getvalue().rstrip(b"\0")
    raw += b"\0" * (-len(raw) % 512)
    raw += tar_header(f"./{name}", size, typeflag) + b"\0" * 4096
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def nemo_archive(path: Path, members: dict[str, bytes], *, compress: bool = False) -> Path:
    """A .nemo holding ``members`` (written by tarfile)."""
    with tarfile.open(path, "w:gz" if compress else "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def nested_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def write_manifest(bundle: Path, data: dict[str, Any]) -> Path:
    (bundle / "speechport.json").write_text(json.dumps(data))
    return bundle
