"""Full-size architectures with seeded random weights, for benchmarks (no download).

``RANDOM_MODELS`` names the transcription models ``bench compare`` builds when it is given no
bundle: GigaAM v3 RNN-T and CTC (e2e, 1024 SentencePiece pieces) and a Parakeet-TDT of the
118M class. Each is built at its real size (``full``) or shrunk to a few layers of a few
channels (``tiny``: the same code path for tests), and with one of two emission settings:

- ``worst``: the random weights as they are. Blank is one class among a thousand, so nearly
  every decoding step emits a token (a transducer emits up to its per-frame limit);
- ``realistic``: the output bias of blank raised so that about ``REALISTIC_TOKENS_PER_SECOND``
  tokens per second of synthetic speech win over blank, as a trained model emits. The shift is
  found by bisection on greedy decoding's token rate over a calibration clip
  (``set_emission``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch only where a model is built
    import torch

    from speechport.families.base import BundlePlan, LoadedCheckpoint

RANDOM_WEIGHTS = Path("random-weights")
SIZES = ("full", "tiny")
EMISSIONS = ("realistic", "worst")
REALISTIC_TOKENS_PER_SECOND = 4.0
CALIBRATION_SECONDS = 8.0
# tiny: what the encoder and the heads shrink to (the front end and vocabulary stay)
_TINY_WIDTH, _TINY_LAYERS, _TINY_HEADS = 64, 2, 2


def random_gigaam(variant: str, *, seed: int = 0, size: str = "full") -> LoadedCheckpoint:
    """GigaAM v3 ``variant`` at ``size`` (``full_size_config``, or shrunk for ``tiny``) with
    random weights; e2e variants have no vocabulary (a benchmark gives them a tokenizer if it
    decodes)."""
    import torch

    from speechport.families.base import LoadedCheckpoint
    from speechport.families.gigaam import GigaAMConfig, build_model, full_size_config

    sizes: dict[str, int] = {}
    if size == "tiny":
        sizes = dict(
            d_model=_TINY_WIDTH,
            n_layers=_TINY_LAYERS,
            n_heads=_TINY_HEADS,
            ff_expansion_factor=2,
            hidden=_TINY_WIDTH,
        )
    upstream = full_size_config(variant, **sizes)
    config = GigaAMConfig.from_upstream(upstream)
    torch.manual_seed(seed)
    model, _ = build_model(config, None)
    return LoadedCheckpoint("gigaam", variant, model, config, RANDOM_WEIGHTS, None, "-")


def parakeet_tdt_118m_config() -> dict[str, Any]:
    """A ``model_config.yaml``-shaped config of the 118M Parakeet-TDT class (the size of
    parakeet-tdt_ctc-110m's transducer branch): 80 mels, FastConformer d_model 512, 17
    layers, 8 heads, ff 2048, conv kernel 9, dw_striding x8 with 256 channels, a one-layer
    LSTM predictor of 640, a joint of 640, 1024 tokens + blank, durations 0..4."""
    from speechport.families.parakeet.config import full_size_config

    config = full_size_config("tdt")
    config["preprocessor"]["features"] = 80
    config["encoder"].update(feat_in=80, d_model=512, n_layers=17)
    config["decoder"]["vocab_size"] = 1024
    config["decoder"]["prednet"]["pred_rnn_layers"] = 1
    config["joint"]["jointnet"]["encoder_hidden"] = 512
    config["joint"]["num_classes"] = 1024
    return config


def random_parakeet_tdt(work: Path, *, seed: int = 0, size: str = "full") -> LoadedCheckpoint:
    """The 118M Parakeet-TDT architecture (``parakeet_tdt_118m_config``, or shrunk for
    ``tiny``) with random weights and a SentencePiece tokenizer of its size (trained in
    ``work``)."""
    import torch

    from speechport.families.base import LoadedCheckpoint
    from speechport.families.parakeet import ParakeetCheckpoint, ParakeetConfig, build_model

    upstream = parakeet_tdt_118m_config()
    if size == "tiny":
        upstream["encoder"].update(
            d_model=_TINY_WIDTH,
            n_layers=_TINY_LAYERS,
            n_heads=_TINY_HEADS,
            ff_expansion_factor=2,
            subsampling_conv_channels=_TINY_WIDTH,
        )
        upstream["decoder"]["prednet"]["pred_hidden"] = _TINY_WIDTH
        upstream["joint"]["jointnet"].update(
            encoder_hidden=_TINY_WIDTH, pred_hidden=_TINY_WIDTH, joint_hidden=_TINY_WIDTH
        )
    config = ParakeetConfig.from_nemo(upstream)
    torch.manual_seed(seed)
    model, _ = build_model(config, None)
    tokenizer = bench_tokenizer(work, config.vocab_size)
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(tokenizer))
    tokens = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    checkpoint = ParakeetCheckpoint(config, tokens, tokenizer.read_bytes())
    return LoadedCheckpoint(
        "parakeet", config.variant, model, checkpoint, RANDOM_WEIGHTS, None, "-"
    )


def bench_tokenizer(root: Path, pieces: int) -> Path:
    """A SentencePiece model with ``pieces`` pieces, trained on generated text (a benchmark
    needs a tokenizer of the real size, not a real tokenizer)."""
    import sentencepiece as spm

    path = root / f"bench_tokenizer_{pieces}"
    if path.with_suffix(".model").is_file():
        return path.with_suffix(".model")
    rng = np.random.default_rng(0)
    letters = [chr(c) for c in range(ord("а"), ord("я") + 1)]
    sentences = [
        " ".join("".join(rng.choice(letters, size=int(rng.integers(2, 9)))) for _ in range(12))
        for _ in range(4000)
    ]
    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(sentences),
        model_prefix=str(path),
        vocab_size=pieces,
        model_type="unigram",
        byte_fallback=True,
        minloglevel=2,
        hard_vocab_limit=True,
    )
    return path.with_suffix(".model")


# --- The models bench compare builds -------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """What the emission setting works on: the encoder frames as the decoding algorithm takes
    them (``[T, D]``; CTC: the logits), the prediction network and joint as numpy callables
    (None for CTC), the output bias the logits end in, and blank's index there."""

    frames: np.ndarray
    predict: Callable[[int, Any], tuple[np.ndarray, Any]] | None
    joint: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
    initial_state: Any
    bias: torch.Tensor
    blank: int


@dataclass(frozen=True)
class RandomModel:
    """One architecture ``bench compare`` can build: ``build(work, size, seed)`` gives the
    loaded random model, ``plan`` its bundle and ``head`` the decoding parts on an encoder
    output ``[1, D, T]`` (every model's encoder module is its ``encoder``)."""

    name: str
    description: str
    build: Callable[[Path, str, int], LoadedCheckpoint]
    plan: Callable[[LoadedCheckpoint], BundlePlan]
    head: Callable[[Any, Any], Head]


def _gigaam_e2e(variant: str) -> Callable[[Path, str, int], LoadedCheckpoint]:
    def build(work: Path, size: str, seed: int) -> LoadedCheckpoint:
        loaded = random_gigaam(variant, seed=seed, size=size)
        tokenizer = bench_tokenizer(work, loaded.config.num_classes - 1)
        return dataclasses.replace(loaded, tokenizer_path=tokenizer)

    return build


def _plan_gigaam(loaded: LoadedCheckpoint) -> BundlePlan:
    from speechport.families.gigaam.bundle import plan_bundle

    return plan_bundle(loaded, window_seconds=30.0)


def _plan_parakeet(loaded: LoadedCheckpoint) -> BundlePlan:
    from speechport.families.parakeet.bundle import plan_bundle

    return plan_bundle(loaded)


def _transducer_head(decoder: Any, joint: Any, encoded: Any, blank: int) -> Head:
    """The predictor and the joint (its encoder projection done for all frames) in numpy."""
    import torch

    layers, hidden = decoder.lstm.num_layers, decoder.lstm.hidden_size
    zeros = torch.zeros(layers, 1, hidden)
    projected = joint.enc(encoded[0].T).numpy()

    def predict(token: int, state: Any) -> tuple[np.ndarray, Any]:
        dec, h, c = decoder(torch.tensor([[token]]), *state)
        return joint.pred(dec[0, 0]).numpy(), (h, c)

    def scores(enc_t: np.ndarray, dec: np.ndarray) -> np.ndarray:
        logits: np.ndarray = joint.joint_net(torch.from_numpy(enc_t + dec)).numpy()
        return logits

    return Head(projected, predict, scores, (zeros, zeros), joint.joint_net[-1].bias, blank)


def _gigaam_rnnt_head(model: Any, encoded: Any) -> Head:
    return _transducer_head(model.head.decoder, model.head.joint, encoded, model.config.blank_id)


def _gigaam_ctc_head(model: Any, encoded: Any) -> Head:
    conv = model.head.decoder_layers[0]
    logits = conv(encoded)[0].T.numpy()
    return Head(logits, None, None, None, conv.bias, model.config.blank_id)


def _parakeet_head(model: Any, encoded: Any) -> Head:
    return _transducer_head(model.decoder, model.joint, encoded, model.config.blank_id)


def _parakeet_build(work: Path, size: str, seed: int) -> LoadedCheckpoint:
    return random_parakeet_tdt(work, seed=seed, size=size)


RANDOM_MODELS: dict[str, RandomModel] = {
    m.name: m
    for m in (
        RandomModel(
            "gigaam-rnnt",
            "GigaAM v3 e2e RNN-T (d_model 768, 16 layers, 1024 pieces)",
            _gigaam_e2e("v3_e2e_rnnt"),
            _plan_gigaam,
            _gigaam_rnnt_head,
        ),
        RandomModel(
            "gigaam-ctc",
            "GigaAM v3 e2e CTC (d_model 768, 16 layers, 1024 pieces)",
            _gigaam_e2e("v3_e2e_ctc"),
            _plan_gigaam,
            _gigaam_ctc_head,
        ),
        RandomModel(
            "parakeet-tdt",
            "Parakeet-TDT 118M class (d_model 512, 17 layers, LSTM 640, 1024 pieces)",
            _parakeet_build,
            _plan_parakeet,
            _parakeet_head,
        ),
    )
}


def set_emission(
    model: RandomModel,
    loaded: LoadedCheckpoint,
    plan: BundlePlan,
    emission: str,
    calibration: np.ndarray,
    *,
    tokens_per_second: float = REALISTIC_TOKENS_PER_SECOND,
) -> tuple[float, float]:
    """Apply ``emission`` to ``loaded``'s weights (``realistic``: raise blank's output bias;
    ``worst``: leave them); returns the shift added to blank's bias and the tokens per
    second greedy decoding of ``calibration`` (samples at the bundle's rate) emits with it.
    The shift is found by bisection on that rate, decoding with the bundle's algorithm
    (``speechport.decoding``) on the torch model's outputs."""
    import torch

    from speechport.decoding import DecodeSettings, decoding_algorithm
    from speechport.features import build_frontend

    assert plan.decoding is not None
    d = plan.decoding
    algorithm = decoding_algorithm(d.algorithm)
    settings = DecodeSettings(d.blank_id, d.max_symbols_per_frame, d.durations)
    frontend = build_frontend(plan.frontend)
    features = torch.from_numpy(np.ascontiguousarray(frontend(calibration), dtype=np.float32))
    length = torch.tensor([features.shape[1]], dtype=torch.int32)
    seconds = calibration.size / plan.sample_rate
    loaded.model.eval()
    encoder: Any = loaded.model.encoder
    with torch.no_grad():
        encoded, encoded_len = encoder(features[None], length)
        frames = int(encoded_len.reshape(-1)[0])
        head = model.head(loaded.model, encoded[:, :, :frames])

        def rate(shift: float) -> float:
            raised = np.zeros(head.bias.shape[0], dtype=np.float32)
            raised[head.blank] = shift
            if head.joint is None:  # CTC: the logits are the frames
                out = algorithm.search(head.frames + raised, frames, settings, None, None, None)
            else:
                joint = head.joint

                def shifted(enc_t: np.ndarray, dec: np.ndarray) -> np.ndarray:
                    return joint(enc_t, dec) + raised

                out = algorithm.search(
                    head.frames, frames, settings, head.predict, shifted, head.initial_state
                )
            return len(out.token_ids) / seconds

        if emission == "worst":
            return 0.0, rate(0.0)
        low, high = 0.0, 1.0
        while rate(high) > tokens_per_second and high < 1e4:
            low, high = high, 2 * high
        for _ in range(12):
            middle = (low + high) / 2
            low, high = (middle, high) if rate(middle) > tokens_per_second else (low, middle)
        achieved = rate(high)
        head.bias[head.blank] += high
        return high, achieved
