"""The ``tts`` section of a text-to-speech bundle's manifest: every field the host needs
to turn phonemes into audio with the bundle's fixed-size stages. Each field is checked on
its own; an error names the field and the manifest file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from speechport.errors import BundleError
from speechport.manifest import MANIFEST_NAME, Manifest


@dataclass(frozen=True)
class TtsSpec:
    vocab: dict[str, int]  # phoneme character -> token id (0 is the boundary token)
    voices: dict[str, str]  # voice name -> its style pack (.npy [rows, style_dim]) in the bundle
    default_voice: str
    sample_rate: int = 24000
    samples_per_frame: int = 600
    token_buckets: tuple[int, ...] = (128, 512)
    frame_buckets: tuple[int, ...] = (200, 600)
    max_phonemes: int = 510
    style_dim: int = 256
    harmonics: int = 9
    g2p: dict[str, str] = field(
        default_factory=lambda: {"engine": "espeak-ng", "language": "en-us", "version": "1.51"}
    )
    noise_inputs: tuple[str, ...] = ("noise",)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("token_buckets", "frame_buckets", "noise_inputs"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_manifest(cls, manifest: Manifest, path: str | Path | None = None) -> TtsSpec:
        where = None if path is None else Path(path) / MANIFEST_NAME
        data = manifest.tts
        if data is None:
            raise BundleError("text-to-speech manifest: no tts section", path=where)
        return cls.from_dict(data, where=where)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str | Path | None = None) -> TtsSpec:
        def fail(key: str, wanted: str) -> BundleError:
            return BundleError(
                f"tts.{key} must be {wanted}, got {data.get(key)!r:.80}",
                path=where,
                hint="rebuild the bundle with speechport convert",
            )

        def integer(key: str, least: int = 1) -> int:
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise fail(key, f"an integer >= {least}")
            return value

        def buckets(key: str) -> tuple[int, ...]:
            value = data.get(key)
            if (
                not isinstance(value, list)
                or not value
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
                or len(set(value)) != len(value)
            ):
                raise fail(key, "a list of distinct positive integers")
            return tuple(sorted(value))

        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise BundleError(
                f"tts: unknown field(s) {', '.join(unknown)}",
                path=where,
                hint="upgrade speechport",
            )
        for key in cls.__dataclass_fields__:
            if key not in data:
                raise BundleError(f"tts.{key} is missing", path=where)
        vocab = data["vocab"]
        if (
            not isinstance(vocab, dict)
            or not vocab
            or any(not isinstance(k, str) or len(k) != 1 for k in vocab)
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vocab.values())
        ):
            raise fail("vocab", "a mapping of single characters to token ids >= 1")
        voices = data["voices"]
        if (
            not isinstance(voices, dict)
            or not voices
            or any(not isinstance(k, str) or not isinstance(v, str) for k, v in voices.items())
        ):
            raise fail("voices", "a mapping of voice names to files in the bundle")
        for name, file in voices.items():
            if Path(file).is_absolute() or ".." in Path(file).parts:
                raise fail("voices", f"files inside the bundle (voice {name!r})")
        default = data["default_voice"]
        if default not in voices:
            raise fail("default_voice", f"one of the voices ({', '.join(voices)})")
        g2p = data["g2p"]
        if not isinstance(g2p, dict) or any(
            not isinstance(g2p.get(k), str) for k in ("engine", "language", "version")
        ):
            raise fail("g2p", "an object with engine, language and version strings")
        noise = data["noise_inputs"]
        if not isinstance(noise, list) or any(not isinstance(n, str) for n in noise):
            raise fail("noise_inputs", "a list of input names")
        spec = cls(
            vocab=dict(vocab),
            voices=dict(voices),
            default_voice=default,
            sample_rate=integer("sample_rate"),
            samples_per_frame=integer("samples_per_frame"),
            token_buckets=buckets("token_buckets"),
            frame_buckets=buckets("frame_buckets"),
            max_phonemes=integer("max_phonemes"),
            style_dim=integer("style_dim"),
            harmonics=integer("harmonics"),
            g2p=dict(g2p),
            noise_inputs=tuple(noise),
        )
        if max(spec.token_buckets) < 3:
            raise fail("token_buckets", "at least one bucket of 3 tokens or more")
        return spec
