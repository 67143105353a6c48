"""Weight compression of Core ML components, swept and scored on what users hear."""

from speechport.compression.emit import emit_variant
from speechport.compression.results import QuantizeSummary, VariantResult
from speechport.compression.strategies import CATALOGUE, PRESETS, Recipe, Strategy, parse_recipes
from speechport.compression.sweep import quantize_sweep

__all__ = [
    "CATALOGUE",
    "PRESETS",
    "QuantizeSummary",
    "Recipe",
    "Strategy",
    "VariantResult",
    "emit_variant",
    "parse_recipes",
    "quantize_sweep",
]
