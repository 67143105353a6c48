"""Weight compression of Core ML components, swept and scored on what users hear."""

from speechport.quantize.emit import emit_variant
from speechport.quantize.results import QuantizeSummary, VariantResult
from speechport.quantize.strategies import CATALOGUE, PRESETS, Recipe, Strategy, parse_recipes
from speechport.quantize.sweep import quantize_sweep

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
