"""Evaluation: error rates, datasets, benchmarks."""
