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

import numpy as np

from speechport.manifest import is_length
from speechport.parity.report import TOP_K, ComponentResult
from speechport.parity.stats import TensorStats, compare, merge, topk_agreement
from speechport.pipelines.transcriber import Transcriber, predictor_for
from speechport.runtime.base import Component


def asr_component_parity(
    reference: Transcriber, candidate: Transcriber, audio: np.ndarray
) -> list[ComponentResult]:
    """Compare every component of ``candidate`` with ``reference`` on ``audio``."""
    decoding = reference.decoding
    algorithm = reference.algorithm
    enc_ref_c = reference.bundle.of_kind("encoder")
    enc_got_c = candidate.bundle.of_kind("encoder")
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
        ref_tm = algorithm.time_major(want[0])
        got_tm = algorithm.time_major(got[0])
        enc_stats.append(compare(ref_tm[:valid], got_tm[:valid], frames=True))
        shift = reference.frame_shift(window.end - window.start, valid)
        offset = window.start / sr
        enc_times += [offset + t * shift for t in range(valid)]
        if not algorithm.transducer:
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
        n_durations = len(decoding.durations) if algorithm.transducer else 0
        joint_ref = reference.bundle.of_kind("joint")
        joint_got = candidate.bundle.of_kind("joint")
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
    encoder = ComponentResult(
        enc_ref_c.spec.name,
        enc_ref_c.spec.role,
        enc_ref_c.spec.kind,
        len(enc_stats),
        {out_names[0]: merge(enc_stats), out_names[1]: merge(len_stats)},
        failures=length_failures,
        times=enc_times,
    )
    if not algorithm.transducer:
        encoder.top1, encoder.topk = top1, topk
        return [encoder, *extras.results()]
    decoder_spec = reference.bundle.of_kind("decoder_step").spec
    joint_spec = reference.bundle.of_kind("joint").spec
    decoder = ComponentResult(
        decoder_spec.name,
        decoder_spec.role,
        decoder_spec.kind,
        dec_calls,
        {k: merge(v) for k, v in dec.items()},
    )
    joint = ComponentResult(
        joint_spec.name,
        joint_spec.role,
        joint_spec.kind,
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
    ref_c = reference.bundle.of_kind("decoder_step")
    got_c = candidate.bundle.of_kind("decoder_step")
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
    """The components decoding does not call but a bundle ships (a front end, a fused front
    end and encoder, decision heads, a fused decoder and joint), checked on the same inputs
    as the ones it does: audio windows, the reference's encodings and decoder rollout.
    Components are picked by kind; the keys below are roles (one per component)."""

    AUDIO_KINDS = ("frontend", "frontend_encoder")
    PAIR_KINDS = ("joint_decision_frame", "decoder_joint")

    def __init__(self, reference: Transcriber, candidate: Transcriber) -> None:
        ref, got = reference.bundle.components, candidate.bundle.components
        self.roles = [r for r in ref if r in got]
        self.ref, self.got = ref, got
        self.stats: dict[str, dict[str, list[TensorStats]]] = {}
        self.calls: dict[str, int] = {}
        self.failures: dict[str, list[str]] = {}

    def _of_kind(self, kinds: tuple[str, ...]) -> list[tuple[str, Component, Component]]:
        """(role, reference, candidate) of every shared component whose kind is in
        ``kinds``."""
        return [(r, self.ref[r], self.got[r]) for r in self.roles if self.ref[r].spec.kind in kinds]

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
        for role, ref, _ in self._of_kind(self.AUDIO_KINDS):
            shape = ref.spec.inputs[0].shape
            padded = np.zeros(shape, dtype=np.float32)
            padded.reshape(-1)[: samples.size] = samples
            length = np.array([samples.size], dtype=np.int32)
            self._add(role, [padded, length], valid_axis=-1, where=where)

    def decisions(self, encoded: np.ndarray, valid: int, dec_ref: list[np.ndarray]) -> None:
        """The whole-window decision head, once per decoder context of the rollout."""
        for role, ref, got in self._of_kind(("joint_decision",)):
            for dec_k in dec_ref:
                want, have = (c(encoded, dec_k[None, :]) for c in (ref, got))
                self.calls[role] = self.calls.get(role, 0) + 1
                for t, a, b in zip(ref.spec.outputs, want, have, strict=True):
                    stats = compare(a[0][:valid], b[0][:valid])
                    self.stats.setdefault(role, {}).setdefault(t.name, []).append(stats)

    def pairs(
        self,
        encoded_tm: np.ndarray,
        pairs: list[tuple[int, int]],
        dec_ref: list[np.ndarray],
        context_tokens: list[int],
        states_before: list[tuple[np.ndarray, ...]],
    ) -> None:
        """Per-frame heads on every (frame, context) pair decoding visits: the one-frame
        decision head on (encoding, decoder output); the fused decoder and joint on
        (encoding, the context's last token, the state before it)."""
        for role, ref, _ in self._of_kind(self.PAIR_KINDS):
            spec = ref.spec
            for t, k in pairs:
                enc_t = encoded_tm[t][None, :]
                if spec.kind == "joint_decision_frame":
                    inputs = [enc_t, dec_ref[k][None, :]]
                else:
                    token = np.array([[context_tokens[k]]], dtype=np.int32)
                    inputs = [enc_t, token, *states_before[k]]
                if len(inputs) != len(spec.inputs):
                    break
                self._add(role, inputs, valid_axis=None, where=f"frame {t}")

    def results(self) -> list[ComponentResult]:
        return [
            ComponentResult(
                self.ref[role].spec.name,
                role,
                self.ref[role].spec.kind,
                self.calls[role],
                {name: merge(v) for name, v in self.stats[role].items()},
                failures=self.failures.get(role, []),
            )
            for role in self.roles
            if role in self.stats
        ]


def streaming_encoder_parity(
    calls: list[tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]],
    candidate: Component,
    *,
    frame_seconds: float,
) -> list[ComponentResult]:
    """A streaming encoder chunk by chunk on the reference's own inputs (window, caches):
    its frames over the valid ones, every next cache, and the lengths, which must be
    exact."""
    spec = candidate.spec
    names = [t.name for t in spec.outputs]
    stats: dict[str, list[TensorStats]] = {}
    failures: list[str] = []
    times: list[float] = []
    frames_before = 0
    for k, (inputs, want) in enumerate(calls):
        got = candidate(*inputs)
        valid = int(want[1].reshape(-1)[0])
        for name, a, b in zip(names, want, got, strict=True):
            if name == names[0]:
                compared = compare(a[0].T[:valid], b[0].T[:valid], frames=True)
            else:
                compared = compare(a, b)
            if is_length(name) and not compared.exact:
                failures.append(
                    f"{spec.name} {name} is {int(np.asarray(b).reshape(-1)[0])}, the reference "
                    f"{int(np.asarray(a).reshape(-1)[0])} (chunk {k})"
                )
            stats.setdefault(name, []).append(compared)
        times += [(frames_before + t) * frame_seconds for t in range(valid)]
        frames_before += valid
    return [
        ComponentResult(
            spec.name,
            spec.role,
            spec.kind,
            len(calls),
            {name: merge(v) for name, v in stats.items()},
            failures=failures,
            times=times,
        )
    ]
