"""Per-component parity of an ASR bundle on inputs derived from real speech.

Each component gets the *reference's* inputs, so a difference is that component's own, not
one carried in from upstream of it:

- the encoder gets the features of every window of the audio; its float output is compared
  frame by frame over the valid frames, and its length output must be exact;
- the decoder step is rolled out along the reference's own tokens (blank first), the
  candidate carrying its own state as it does at run time;
- the joint (or the CTC head's per-frame distribution) is called on every (frame, decoder
  output) pair that greedy decoding visits; its outputs are compared as log-probabilities
  (see ``_normalized``) and its top-k classes are compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from speechport.manifest import is_length
from speechport.pipelines.transcriber import Transcriber, predictor_for
from speechport.verify.stats import TensorStats, compare, merge, topk_agreement

TOP_K = 5


@dataclass
class ComponentParity:
    """One component of one backend against the reference, over one audio file."""

    component: str
    role: str
    calls: int
    outputs: dict[str, TensorStats]
    failures: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # seconds, per compared frame or pair
    top1: list[bool] = field(default_factory=list)
    topk: list[float] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "component": self.component,
            "role": self.role,
            "calls": self.calls,
            "passed": self.passed,
            "failures": self.failures,
            "outputs": {k: v.to_dict() for k, v in self.outputs.items()},
        }
        if self.times:
            out["times"] = self.times
        if self.top1:
            out["top1_agreement"] = float(np.mean(self.top1))
            out[f"top{TOP_K}_agreement"] = float(np.mean(self.topk))
            out["top1"] = self.top1
            out[f"top{TOP_K}"] = self.topk
        return out


def _time_major(encoder_out: np.ndarray, algorithm: str) -> np.ndarray:
    """Encoder output as [frames, features]: CTC log-probs are [1, T, V], encodings [1, D, T]."""
    return encoder_out[0] if algorithm == "ctc_greedy" else encoder_out[0].T


def asr_component_parity(
    reference: Transcriber, candidate: Transcriber, audio: np.ndarray
) -> list[ComponentParity]:
    """Compare every component of ``candidate`` with ``reference`` on ``audio``."""
    decoding = reference.decoding
    algorithm = decoding.algorithm
    enc_ref_c = reference.bundle.component("encoder")
    enc_got_c = candidate.bundle.component("encoder")
    out_names = [t.name for t in enc_ref_c.spec.outputs]
    sr = reference.sample_rate
    enc_stats: list[TensorStats] = []
    len_stats: list[TensorStats] = []
    length_failures: list[str] = []
    enc_times: list[float] = []
    dec: dict[str, list[TensorStats]] = {}
    dec_calls = 0
    joint_stats: list[TensorStats] = []
    pair_times: list[float] = []
    top1: list[bool] = []
    topk: list[float] = []
    extras = _Extras(reference, candidate)
    for window in reference.plan(audio):
        samples = audio[window.start : window.end]
        inputs = reference.encoder_inputs(samples)
        if inputs is None:
            continue
        extras.audio_components(samples, where=f"window at {window.start / sr:.2f} s")
        want = enc_ref_c(*inputs)
        got = enc_got_c(*inputs)
        valid = int(want[1].reshape(-1)[0])
        len_stats.append(compare(want[1], got[1]))
        if not len_stats[-1].exact:
            length_failures.append(
                f"{enc_ref_c.spec.name} {out_names[1]} is {int(got[1].reshape(-1)[0])}, the "
                f"reference {valid} (window at {window.start / sr:.2f} s, "
                f"{int(inputs[1].reshape(-1)[0])} feature frames)"
            )
        ref_tm = _time_major(want[0], algorithm)
        got_tm = _time_major(got[0], algorithm)
        enc_stats.append(compare(ref_tm[:valid], got_tm[:valid], frames=True))
        shift = reference.frame_shift(window.end - window.start, valid)
        offset = window.start / sr
        enc_times += [offset + t * shift for t in range(valid)]
        if algorithm == "ctc_greedy":
            for t in range(valid):
                agree, share = topk_agreement(ref_tm[t], got_tm[t], TOP_K)
                top1.append(agree)
                topk.append(share)
            continue
        hypothesis, _ = reference.decode_encoded(want)
        dec_ref, states_before, dec_w = _rollout(reference, candidate, hypothesis.token_ids)
        dec_calls += len(dec_ref)
        for name, s in dec_w.items():
            dec.setdefault(name, []).append(s)
        pairs = _joint_pairs(hypothesis.frames, valid)
        n_durations = len(decoding.durations) if algorithm == "tdt_greedy" else 0
        joint_ref = reference.bundle.component("joint")
        joint_got = candidate.bundle.component("joint")
        logits_ref, logits_got = [], []
        for t, k in pairs:
            enc_t, dec_k = ref_tm[t][None, :], dec_ref[k][None, :]
            a = _normalized(joint_ref(enc_t, dec_k)[0].reshape(-1), n_durations)
            b = _normalized(joint_got(enc_t, dec_k)[0].reshape(-1), n_durations)
            logits_ref.append(a)
            logits_got.append(b)
            agree, share = topk_agreement(a, b, TOP_K)
            top1.append(agree)
            topk.append(share)
            pair_times.append(offset + t * shift)
        if pairs:
            joint_stats.append(compare(np.stack(logits_ref), np.stack(logits_got), frames=True))
        blank = decoding.blank_id
        context_tokens = [blank, *hypothesis.token_ids]
        extras.decisions(want[0], valid, dec_ref)
        extras.pairs(ref_tm, pairs, dec_ref, context_tokens, states_before)
    encoder = ComponentParity(
        enc_ref_c.spec.name,
        "encoder",
        len(enc_stats),
        {out_names[0]: merge(enc_stats), out_names[1]: merge(len_stats)},
        failures=length_failures,
        times=enc_times,
    )
    if algorithm == "ctc_greedy":
        encoder.top1, encoder.topk = top1, topk
        return [encoder, *extras.results()]
    decoder_spec = reference.bundle.component("decoder").spec
    joint_spec = reference.bundle.component("joint").spec
    decoder = ComponentParity(
        decoder_spec.name, "decoder", dec_calls, {k: merge(v) for k, v in dec.items()}
    )
    joint = ComponentParity(
        joint_spec.name,
        "joint",
        len(top1),
        {joint_spec.outputs[0].name: merge(joint_stats)},
        times=pair_times,
        top1=top1,
        topk=topk,
    )
    return [encoder, decoder, joint, *extras.results()]


def _rollout(
    reference: Transcriber, candidate: Transcriber, tokens: list[int]
) -> tuple[list[np.ndarray], list[tuple[np.ndarray, ...]], dict[str, TensorStats]]:
    """Feed blank then ``tokens`` to both decoders, each threading its own state. Returns
    the reference's decoder outputs and states before each step (one per context length)
    and the statistics per output (the decoder output and every state)."""
    ref_c = reference.bundle.component("decoder")
    got_c = candidate.bundle.component("decoder")
    predict_ref, state_ref = predictor_for(ref_c)
    predict_got, state_got = predictor_for(got_c)
    blank = reference.decoding.blank_id
    dec_ref: list[np.ndarray] = []
    dec_got: list[np.ndarray] = []
    states_ref: list[tuple[np.ndarray, ...]] = []
    states_got: list[tuple[np.ndarray, ...]] = []
    before: list[tuple[np.ndarray, ...]] = []
    for token in [blank, *tokens]:
        before.append(state_ref)
        out_ref, state_ref = predict_ref(token, state_ref)
        out_got, state_got = predict_got(token, state_got)
        dec_ref.append(np.asarray(out_ref).reshape(-1))
        dec_got.append(np.asarray(out_got).reshape(-1))
        states_ref.append(state_ref)
        states_got.append(state_got)
    spec = ref_c.spec
    dec_name = next(t.name for t in spec.outputs if t.name not in {p.output for p in spec.state})
    stats = {dec_name: compare(np.stack(dec_ref), np.stack(dec_got), frames=True)}
    for i, pair in enumerate(spec.state):
        a = np.stack([s[i].reshape(-1) for s in states_ref])
        b = np.stack([s[i].reshape(-1) for s in states_got])
        stats[pair.output] = compare(a, b, frames=True)
    return dec_ref, before, stats


def _joint_pairs(frames: list[int], valid: int) -> list[tuple[int, int]]:
    """The (frame, tokens emitted so far) pairs greedy transducer decoding evaluates: on frame
    t, one call per token emitted there plus the final blank."""
    emitted_before = 0
    pairs: list[tuple[int, int]] = []
    counts = np.bincount(np.asarray(frames, dtype=np.int64), minlength=valid) if frames else None
    for t in range(valid):
        here = int(counts[t]) if counts is not None and t < counts.size else 0
        pairs += [(t, emitted_before + j) for j in range(here + 1)]
        emitted_before += here
    return pairs


def _normalized(logits: np.ndarray, n_durations: int) -> np.ndarray:
    """Log-softmax over the token classes (and, for TDT, separately over the durations).

    Joints may return raw logits or log-probabilities (the upstream ONNX layouts do the
    latter); decoding only takes argmaxes, which both keep, so outputs are compared in the
    normalised form they share.
    """
    x = logits.astype(np.float64)
    split = x.size - n_durations
    parts = [x[:split], x[split:]] if n_durations else [x]
    out = []
    for part in parts:
        shifted = part - part.max()
        out.append(shifted - np.log(np.exp(shifted).sum()))
    return np.concatenate(out)


class _Extras:
    """The components decoding does not call but a bundle ships (a Preprocessor, a fused
    MelEncoder, decision heads, onnx-asr's decoder+joint), checked on the same inputs as
    the ones it does: audio windows, the reference's encodings and decoder rollout."""

    AUDIO_ROLES = ("preprocessor", "mel_encoder")
    PAIR_ROLES = ("joint_decision_frame", "decoder_joint")

    def __init__(self, reference: Transcriber, candidate: Transcriber) -> None:
        ref, got = reference.bundle.components, candidate.bundle.components
        self.roles = [r for r in ref if r in got]
        self.ref, self.got = ref, got
        self.stats: dict[str, dict[str, list[TensorStats]]] = {}
        self.calls: dict[str, int] = {}
        self.failures: dict[str, list[str]] = {}

    def _add(self, role: str, inputs: list[np.ndarray], valid_axis: int | None, where: str) -> None:
        """Call both; compare every output (trimmed to the valid frames along
        ``valid_axis`` when the first output's length says how many); lengths must be
        exact."""
        want, got = self.ref[role](*inputs), self.got[role](*inputs)
        spec = self.ref[role].spec
        names = [t.name for t in spec.outputs]
        lengths = [int(w.reshape(-1)[0]) for n, w in zip(names, want, strict=True) if is_length(n)]
        self.calls[role] = self.calls.get(role, 0) + 1
        for name, a, b in zip(names, want, got, strict=True):
            if valid_axis is not None and not is_length(name) and lengths:
                a = np.take(a, range(lengths[0]), axis=valid_axis)
                b = np.take(b, range(lengths[0]), axis=valid_axis)
            stats = compare(a, b)
            if is_length(name) and not stats.exact:
                self.failures.setdefault(role, []).append(
                    f"{spec.name} {name} is {int(b.reshape(-1)[0])}, the reference "
                    f"{int(a.reshape(-1)[0])} ({where})"
                )
            self.stats.setdefault(role, {}).setdefault(name, []).append(stats)

    def audio_components(self, samples: np.ndarray, *, where: str) -> None:
        for role in self.AUDIO_ROLES:
            if role not in self.roles:
                continue
            shape = self.ref[role].spec.inputs[0].shape
            padded = np.zeros(shape, dtype=np.float32)
            padded.reshape(-1)[: samples.size] = samples
            length = np.array([samples.size], dtype=np.int32)
            self._add(role, [padded, length], valid_axis=-1, where=where)

    def decisions(self, encoded: np.ndarray, valid: int, dec_ref: list[np.ndarray]) -> None:
        """The whole-window decision head, once per decoder context of the rollout."""
        if "joint_decision" not in self.roles:
            return
        for dec_k in dec_ref:
            want, got = (
                c(encoded, dec_k[None, :])
                for c in (self.ref["joint_decision"], self.got["joint_decision"])
            )
            spec = self.ref["joint_decision"].spec
            self.calls["joint_decision"] = self.calls.get("joint_decision", 0) + 1
            for t, a, b in zip(spec.outputs, want, got, strict=True):
                stats = compare(a[0][:valid], b[0][:valid])
                self.stats.setdefault("joint_decision", {}).setdefault(t.name, []).append(stats)

    def pairs(
        self,
        encoded_tm: np.ndarray,
        pairs: list[tuple[int, int]],
        dec_ref: list[np.ndarray],
        context_tokens: list[int],
        states_before: list[tuple[np.ndarray, ...]],
    ) -> None:
        """Per-frame heads on every (frame, context) pair decoding visits: the one-frame
        decision head on (encoding, decoder output); onnx-asr's decoder+joint on (encoding,
        the context's last token, the state before it)."""
        for role in self.PAIR_ROLES:
            if role not in self.roles:
                continue
            spec = self.ref[role].spec
            for t, k in pairs:
                enc_t = encoded_tm[t][None, :]
                if role == "joint_decision_frame":
                    inputs = [enc_t, dec_ref[k][None, :]]
                else:
                    token = np.array([[context_tokens[k]]], dtype=np.int32)
                    inputs = [enc_t, token, *states_before[k]]
                if len(inputs) != len(spec.inputs):
                    break
                self._add(role, inputs, valid_axis=None, where=f"frame {t}")

    def results(self) -> list[ComponentParity]:
        return [
            ComponentParity(
                self.ref[role].spec.name,
                role,
                self.calls[role],
                {name: merge(v) for name, v in self.stats[role].items()},
                failures=self.failures.get(role, []),
            )
            for role in self.roles
            if role in self.stats
        ]
