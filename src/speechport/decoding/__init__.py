"""Decoding algorithms on plain arrays and callables: numpy only, no model, no engine."""

from __future__ import annotations

from speechport.decoding.ctc import ctc_greedy
from speechport.decoding.registry import (
    DECODERS,
    DecodeSettings,
    DecodingAlgorithm,
    decoding_algorithm,
)
from speechport.decoding.transducer import rnnt_greedy, tdt_greedy
from speechport.decoding.types import Hypothesis, JointFn, PredictFn

__all__ = [
    "DECODERS",
    "DecodeSettings",
    "DecodingAlgorithm",
    "Hypothesis",
    "JointFn",
    "PredictFn",
    "ctc_greedy",
    "decoding_algorithm",
    "rnnt_greedy",
    "tdt_greedy",
]
