"""Benchmarks that print figures: decode loop, Core ML encoder, conversion, quantization."""
