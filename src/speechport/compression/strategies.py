"""Weight-compression strategies for Core ML components, and recipes that mix them.

A *strategy* is one ``coremltools.optimize.coreml`` configuration (linear quantization or
palettization with its granularity). A *recipe* says which strategy each component gets;
components it does not name keep the bundle's weights. ``--strategies`` takes catalogue
names (``int8-channel``) and mixed recipes written ``encoder=pal8-kmeans+joint=pal8-kmeans``
(roles or component names; ``=none`` keeps a component as it is).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from speechport.errors import SpeechportError

# coremltools' own default: tensors with fewer elements stay as they are.
DEFAULT_WEIGHT_THRESHOLD = 2048
IOS18 = "iOS18"


@dataclass(frozen=True)
class Strategy:
    """One compression of a component's weights."""

    name: str
    method: str  # "linear" | "palettize"
    bits: int
    options: tuple[tuple[str, Any], ...]
    description: str

    @property
    def target(self) -> str | None:
        """The deployment target the compressed ops need (``None``: the bundle's own)."""
        granularity = dict(self.options).get("granularity")
        if granularity in ("per_block", "per_grouped_channel") or (
            self.bits == 4 and (self.method == "linear")
        ):
            return IOS18
        return None

    @property
    def clusters(self) -> int:
        """The centroids k-means looks for (``2**bits`` for a k-means palette, else 1): what
        dominates the work of making the compression."""
        return 1 << self.bits if dict(self.options).get("mode") == "kmeans" else 1

    def config(self, weight_threshold: int) -> Any:
        """The ``OptimizationConfig`` for coremltools."""
        import coremltools.optimize.coreml as cto

        options = dict(self.options)
        if self.method == "linear":
            op: Any = cto.OpLinearQuantizerConfig(weight_threshold=weight_threshold, **options)
        else:
            op = cto.OpPalettizerConfig(
                nbits=self.bits, weight_threshold=weight_threshold, **options
            )
        return cto.OptimizationConfig(global_config=op)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "method": self.method,
            "bits": self.bits,
            "options": dict(self.options),
            "target": self.target,
            "description": self.description,
        }


def _linear(name: str, dtype: str, granularity: str, description: str, **extra: Any) -> Strategy:
    bits = 4 if dtype == "int4" else 8
    options = {"mode": "linear_symmetric", "dtype": dtype, "granularity": granularity, **extra}
    return Strategy(name, "linear", bits, tuple(options.items()), description)


def _palettize(name: str, bits: int, mode: str, group_size: int | None = None) -> Strategy:
    options: dict[str, Any] = {"mode": mode}
    where = "per tensor"
    if group_size is not None:
        options.update(granularity="per_grouped_channel", group_size=group_size)
        where = f"per group of {group_size} output channels"
    else:
        options["granularity"] = "per_tensor"
    lut = f"{1 << bits}-entry"
    how = "k-means" if mode == "kmeans" else "uniform"
    description = f"{bits}-bit palettization, {lut} {how} look-up table {where}"
    return Strategy(name, "palettize", bits, tuple(options.items()), description)


CATALOGUE: dict[str, Strategy] = {
    s.name: s
    for s in (
        _linear(
            "int8-channel",
            "int8",
            "per_channel",
            "int8 linear (symmetric), a scale per output channel",
        ),
        _linear(
            "int8-tensor", "int8", "per_tensor", "int8 linear (symmetric), one scale per tensor"
        ),
        _linear(
            "int8-block32",
            "int8",
            "per_block",
            "int8 linear, a scale per block of 32 input channels (iOS 18)",
            block_size=32,
        ),
        _linear(
            "int4-block32",
            "int4",
            "per_block",
            "int4 linear, a scale per block of 32 input channels (iOS 18)",
            block_size=32,
        ),
        _linear("int4-tensor", "int4", "per_tensor", "int4 linear, one scale per tensor (iOS 18)"),
        _palettize("pal8-kmeans", 8, "kmeans"),
        _palettize("pal6-kmeans", 6, "kmeans"),
        _palettize("pal4-kmeans", 4, "kmeans"),
        _palettize("pal8-uniform", 8, "uniform"),
        _palettize("pal6-uniform", 6, "uniform"),
        _palettize("pal4-uniform", 4, "uniform"),
        _palettize("pal8-kmeans-g16", 8, "kmeans", group_size=16),
        _palettize("pal6-kmeans-g16", 6, "kmeans", group_size=16),
        _palettize("pal4-kmeans-g16", 4, "kmeans", group_size=16),
    )
}

# Named mixed recipes. mixed-pal8: encoder and joint palettized to 8 bits, the decoder (an
# LSTM step, latency-bound and small) in fp16, as shipped Core ML keyword spotters do.
PRESETS: dict[str, str] = {"mixed-pal8": "encoder=pal8-kmeans+joint=pal8-kmeans"}

BASELINE = "baseline"
# Components of these kinds are front ends whose few weights are the signal processing itself
# (a mel filterbank, an STFT basis): compressing them saves nothing worth having and changes
# every feature (int8 costs the tiny Parakeet Preprocessor 7 % of its output's L2). They are
# compressed only when named.
FRONT_END_KINDS = frozenset({"frontend"})


@dataclass(frozen=True)
class Recipe:
    """What each component gets; ``per_component`` maps a role to its strategy."""

    name: str
    per_component: dict[str, Strategy] = field(default_factory=dict)

    @property
    def is_baseline(self) -> bool:
        return not self.per_component

    @property
    def target(self) -> str | None:
        return IOS18 if any(s.target == IOS18 for s in self.per_component.values()) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "components": {role: s.to_dict() for role, s in self.per_component.items()},
            "target": self.target,
        }


def strategy(name: str) -> Strategy:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise SpeechportError(
            f"unknown strategy {name!r}",
            hint=f"choose from {', '.join(CATALOGUE)} (or a preset: {', '.join(PRESETS)})",
        ) from None


def parse_recipes(
    text: str | None,
    *,
    roles: Sequence[str],
    names: dict[str, str],
    only: Iterable[str] | None = None,
    front_ends: Iterable[str] = (),
) -> list[Recipe]:
    """The recipes of ``--strategies`` for a bundle whose Core ML components have ``roles``
    (``names`` maps a component name to its role). A plain strategy applies to every
    component in ``only`` (default: all but the ``front_ends``, the roles of components of
    a kind in ``FRONT_END_KINDS``). The baseline (the bundle as it is) comes first."""
    skipped = set(front_ends)
    selected = (
        [r for r in roles if r not in skipped]
        if only is None
        else [_role(c, roles, names) for c in only]
    )
    items = [t.strip() for t in (text or ",".join([*CATALOGUE, *PRESETS])).split(",")]
    recipes = [Recipe(BASELINE)]
    seen = {BASELINE}
    for item in items:
        if not item or item == BASELINE:
            continue
        spec = PRESETS.get(item, item)
        if "=" in spec:
            per: dict[str, Strategy] = {}
            for part in spec.split("+"):
                component, _, value = part.partition("=")
                role = _role(component.strip(), roles, names)
                if value.strip() != "none":
                    per[role] = strategy(value.strip())
            recipe = Recipe(item, per)
        else:
            chosen = strategy(spec)
            recipe = Recipe(item, dict.fromkeys(selected, chosen))
        if item in seen:
            continue
        seen.add(item)
        recipes.append(recipe)
    return recipes


def _role(component: str, roles: Sequence[str], names: dict[str, str]) -> str:
    if component in roles:
        return component
    if component in names:
        return names[component]
    raise SpeechportError(
        f"no Core ML component {component!r} in this bundle",
        hint=f"components: {', '.join(roles)} (or by name: {', '.join(names)})",
    )
