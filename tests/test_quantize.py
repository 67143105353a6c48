"""``speechport quantize`` on the tiny GigaAM RNN-T fixture (fp16 Core ML, 6 s window).

What is asserted: every catalogue strategy yields a bundle that runs under the interpreter,
with sizes equal to the files on disk and the compression recorded in its manifest; the
scores separate a good variant from a damaging one on tokens, not only on L2; the emitted
bundle stands alone and passes ``verify``; a failing variant is not emitted; a compressed
package a sweep shares between recipes (or makes in its worker processes) is coremltools'
own and scores as a freshly made one.
"""

from __future__ import annotations

import gc
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from speechport.cli import main
from speechport.compression import CATALOGUE, parse_recipes, quantize_sweep
from speechport.compression.cache import PackageCache
from speechport.compression.layout import PACKAGES_DIR
from speechport.compression.results import SUMMARY_FILE, QuantizeSummary
from speechport.compression.strategies import BASELINE, IOS18
from speechport.errors import GateError, SpeechportError
from speechport.fsutil import path_size
from speechport.manifest import read_manifest
from speechport.parity.report import AsrFileResult, ParityReport
from speechport.parity.run import verify_bundle
from tests.helpers import GIGAAM, BundleCache, checkpoint

AUDIO = sorted((GIGAAM / "audio").glob("clip*.wav"))[:2]  # two clips keep the sweep quick
THRESHOLD = 256  # the fixture's tensors are small; coremltools' 2048 would skip most


@pytest.fixture(scope="module")
def bundle(bundle_cache: BundleCache) -> Path:
    return bundle_cache.get(
        "gigaam",
        checkpoint("v3_rnnt"),
        "rnnt",
        formats="coreml,onnx",
        precision="fp16",
        window_seconds=6.0,
    )


@pytest.fixture(scope="module")
def system_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the sweep below (and its worker processes) had their temporary files."""
    return tmp_path_factory.mktemp("system_tmp")


@pytest.fixture(scope="module")
def scored(
    bundle: Path, system_tmp: Path, tmp_path_factory: pytest.TempPathFactory
) -> QuantizeSummary:
    """A sweep on two clips: a careful strategy, an aggressive one, a mixed recipe;
    the careful one emitted."""
    saved, tempfile.tempdir = tempfile.tempdir, str(system_tmp)
    try:
        return quantize_sweep(
            bundle,
            tmp_path_factory.mktemp("sweep"),
            strategies="int8-channel,int4-tensor,mixed-pal8",
            audio=AUDIO,
            weight_threshold=THRESHOLD,
            latency_runs=2,
            emit="int8-channel",
            jobs=2,
        )
    finally:
        tempfile.tempdir = saved
        gc.collect()  # the models this process opened remove their temporary packages


@pytest.mark.slow
def test_worker_processes_leave_no_temporary_packages(
    scored: QuantizeSummary, system_tmp: Path
) -> None:
    """coremltools writes a temporary package for every model it opens and removes it
    when the object is collected, which a worker process never does: the workers' temporary
    files go under the sweep's package cache, which the sweep removes."""
    assert sorted(p.name for p in system_tmp.iterdir()) == []


@pytest.mark.slow
def test_every_strategy_runs_and_sizes_are_the_files(bundle: Path, tmp_path: Path) -> None:
    summary = quantize_sweep(bundle, tmp_path, weight_threshold=THRESHOLD)
    names = [v.name for v in summary.variants]
    assert names == [BASELINE, *CATALOGUE, "mixed-pal8"]
    untouched: set[tuple[str, str]] = set()
    for v in summary.variants:
        root = Path(v.bundle)
        manifest = read_manifest(root)
        for c in v.components:
            assert c.latency_ms is not None, f"{v.name} {c.name} did not run"
            assert c.bytes == path_size(root / c.path)
            assert c.baseline_bytes == path_size(bundle / c.path)
            recorded = manifest.components[c.role].files["coreml"].compression
            if c.compressed_tensors:
                assert recorded == c.strategy
                assert c.strategy is not None
                assert c.retargeted == (CATALOGUE[c.strategy].target == IOS18)
                assert c.bytes < c.baseline_bytes
            else:
                assert recorded is None and not c.retargeted
                assert c.bytes == c.baseline_bytes
                if c.strategy is not None:
                    untouched.add((v.name, c.role))
                    assert c.note == f"no tensor fits {c.strategy}; left as it was"
        assert v.bytes == sum(path_size(root / c.path) for c in v.components)
        compression = manifest.provenance["compression"]
        assert (compression is None) == (v.name == BASELINE)
    # The decoder's LSTM weights have 48 input channels: no block of 32 fits, so per-block
    # strategies leave it as it was (and do not raise it to iOS 18 for nothing).
    assert untouched == {("int8-block32", "decoder"), ("int4-block32", "decoder")}
    by_name = {v.name: v for v in summary.variants}
    # Fewer bits, smaller files; the tiny model's small tensors stay fp16 and keep every
    # ratio below its nominal 2x / 2.67x / 4x (the full-size benchmark shows those).
    assert 1.6 < by_name["int8-channel"].ratio < 2.0
    assert 2.0 < by_name["pal6-kmeans"].ratio < 2.67
    assert 2.9 < by_name["pal4-kmeans"].ratio < 4.0
    assert by_name["pal4-uniform"].bytes < by_name["pal6-uniform"].bytes
    assert by_name["pal6-uniform"].bytes < by_name["pal8-uniform"].bytes
    summary_file = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert [v["name"] for v in summary_file["variants"]] == names
    assert summary_file["variants"][1]["bytes"] == summary.variants[1].bytes


@pytest.mark.slow
def test_scores_separate_good_from_bad(scored: QuantizeSummary) -> None:
    v = {x.name: x for x in scored.variants}
    assert scored.engine.startswith("speechport MIL interpreter")
    for good in (BASELINE, "int8-channel", "mixed-pal8"):
        assert v[good].token_exact_files == 2, good
        assert v[good].token_agreement == 1.0
        assert v[good].cer == 0.0
        assert v[good].passed is True
    bad = v["int4-tensor"]
    assert bad.passed is False
    assert bad.token_exact_files == 0
    assert bad.token_agreement is not None and bad.token_agreement < 0.5
    assert bad.cer is not None and bad.cer > 0.3
    assert any("CER" in f for f in bad.failures)
    quality = {x.name: {c.role: c.quality or 0.0 for c in x.components} for x in scored.variants}
    assert quality[BASELINE]["encoder"] > 0.99  # fp16 against the fp32 reference
    assert quality["int8-channel"]["encoder"] > 0.98
    assert quality["int4-tensor"]["encoder"] < 0.7
    # mixed-pal8 keeps the decoder as it was: same figure as the baseline's
    assert quality["mixed-pal8"]["decoder"] == quality[BASELINE]["decoder"]
    assert scored.ranking[-1] == "int4-tensor"
    assert scored.ranking[0] == "int8-channel"  # smallest of the token-exact ones
    assert set(scored.pareto) == {"int4-tensor", "int8-channel"}
    assert sorted(scored.plots) == [
        "plots/component_quality.png",
        "plots/latency.png",
        "plots/quality_vs_size.png",
    ]


TIMINGS = {"convert_seconds", "latency_ms", "rtfx", "bundle"}


def _figures(value: object) -> object:
    """A summary's content without what depends on the clock or the output folder."""
    if isinstance(value, dict):
        return {k: _figures(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [_figures(v) for v in value]
    return value


@pytest.mark.slow
def test_workers_give_the_figures_one_process_gives(
    bundle: Path, scored: QuantizeSummary, tmp_path: Path
) -> None:
    """The sweep above ran its variants in two worker processes; one process gives the
    same scores, ranking and failures. The failing variant stopped at its first file."""
    alone = quantize_sweep(
        bundle,
        tmp_path,
        strategies="int8-channel,int4-tensor,mixed-pal8",
        audio=AUDIO,
        weight_threshold=THRESHOLD,
        latency_runs=1,
        jobs=1,
    )
    assert [_figures(v.to_dict()) for v in alone.variants] == [
        _figures(v.to_dict()) for v in scored.variants
    ]
    assert (alone.ranking, alone.pareto) == (scored.ranking, scored.pareto)
    bad = scored.variant("int4-tensor")
    assert bad.stopped == "gate failed at file 1/2" and bad.files == 1
    assert all(v.stopped is None and v.files == 2 for v in scored.variants if v.passed)
    from speechport.render import ranking_table

    (row,) = [line for line in ranking_table(scored) if " int4-tensor " in line]
    assert row.endswith("FAIL (stopped: gate failed at file 1/2)")


@pytest.mark.slow
def test_emitted_bundle_stands_alone_and_passes_verify(
    scored: QuantizeSummary, capsys: pytest.CaptureFixture[str]
) -> None:
    assert scored.emitted is not None
    emitted = Path(scored.emitted)
    manifest = read_manifest(emitted)
    assert manifest.provenance["compression"]["recipe"]["name"] == "int8-channel"
    assert {c.files["coreml"].compression for c in manifest.components.values()} == {"int8-channel"}
    for path in emitted.rglob("*"):
        if path.is_file():
            assert path.stat().st_nlink == 1, f"{path} is still linked to the sweep"
    assert (emitted / "verify" / "parity.json").is_file()
    card = (emitted / "README.md").read_text()
    assert "weights int8-channel" in card
    # Plots are drawn for the emitted variant only, from its report.
    plots = ParityReport.load(emitted / "verify" / "parity.json").plots
    assert plots == ["verify/encoder_l2.png", "verify/joint_topk.png", "verify/latency.png"]
    assert all((emitted / p).is_file() and f"]({p})" in card for p in plots)
    assert not list((Path(scored.variant("int4-tensor").bundle) / "verify").glob("*.png"))
    report = verify_bundle(emitted, AUDIO, backends=["coreml", "onnx"], latency_runs=1)
    assert report.passed, report.failures()
    assert main(["transcribe", str(emitted), str(AUDIO[0]), "--backend", "coreml"]) == 0
    said = capsys.readouterr().out.strip()
    (first, *_) = report.files
    assert isinstance(first, AsrFileResult)
    assert said and said == first.text


@pytest.mark.slow
def test_a_failing_variant_is_not_emitted(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(GateError, match="int4-tensor failed the gate"):
        quantize_sweep(
            bundle,
            tmp_path,
            strategies="int4-tensor",
            components=["encoder"],
            audio=AUDIO[:1],  # one is enough to fail
            weight_threshold=THRESHOLD,
            latency_runs=1,
            emit="int4-tensor",
        )
    assert (tmp_path / SUMMARY_FILE).is_file()
    assert not (tmp_path / "int4-tensor").exists()


def test_recipes() -> None:
    roles = ["encoder", "decoder", "joint"]
    names = {"Encoder": "encoder", "DecoderStep": "decoder", "JointStep": "joint"}
    recipes = parse_recipes(
        "int8-channel,Encoder=pal6-kmeans+joint=int4-block32+decoder=none,mixed-pal8",
        roles=roles,
        names=names,
        only=["encoder", "JointStep"],
    )
    assert [r.name for r in recipes] == [
        BASELINE,
        "int8-channel",
        "Encoder=pal6-kmeans+joint=int4-block32+decoder=none",
        "mixed-pal8",
    ]
    assert recipes[0].is_baseline
    assert {r: s.name for r, s in recipes[1].per_component.items()} == {
        "encoder": "int8-channel",
        "joint": "int8-channel",
    }
    assert {r: s.name for r, s in recipes[2].per_component.items()} == {
        "encoder": "pal6-kmeans",
        "joint": "int4-block32",
    }
    assert recipes[2].target == IOS18 and recipes[1].target is None
    assert set(recipes[3].per_component) == {"encoder", "joint"}
    with_front_end = parse_recipes(
        "int8-channel,preprocessor=int8-channel",
        roles=["preprocessor", *roles],
        names={},
        front_ends=["preprocessor"],
    )
    assert set(with_front_end[1].per_component) == set(roles)  # front ends only when named
    assert set(with_front_end[2].per_component) == {"preprocessor"}
    with pytest.raises(SpeechportError, match="unknown strategy 'int3'"):
        parse_recipes("int3", roles=roles, names=names)
    with pytest.raises(SpeechportError, match="no Core ML component 'predictor'"):
        parse_recipes("predictor=pal8-kmeans", roles=roles, names=names)


def test_bad_input(bundle: Path, gigaam_onnx: Callable[[str], Path], tmp_path: Path) -> None:
    with pytest.raises(SpeechportError, match="'pal5' is not one of the variants"):
        quantize_sweep(bundle, tmp_path / "a", strategies="int8-channel", emit="pal5")
    assert not (tmp_path / "a").exists()
    onnx_only = gigaam_onnx("v3_ctc")
    with pytest.raises(SpeechportError, match="no Core ML components") as info:
        quantize_sweep(onnx_only, tmp_path / "b")
    assert str(onnx_only) in str(info.value)
    with pytest.raises(SpeechportError, match="reference checkpoint not found"):
        quantize_sweep(bundle, tmp_path / "c", reference=tmp_path / "missing.ckpt")


@pytest.mark.slow
def test_cli_prints_the_ranking(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweep"
    code = main(
        [
            "quantize",
            str(bundle),
            "--out",
            str(out),
            "--strategies",
            "pal8-kmeans",
            "--components",
            "joint",
            "--audio",
            str(AUDIO[0]),
            "--weight-threshold",
            str(THRESHOLD),
            "--latency-runs",
            "1",
            "--emit",
            "pal8-kmeans",
            "--quiet",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("#"))
    rows = [line.split() for line in lines[header + 1 : header + 3]]
    assert {r[1] for r in rows} == {BASELINE, "pal8-kmeans"}
    assert all(r[-1] == "pass" and r[5] == "1/1" for r in rows)
    assert f"emitted: {out / 'pal8-kmeans'}" in text
    manifest = read_manifest(out / "pal8-kmeans")
    assert manifest.components["joint"].files["coreml"].compression == "pal8-kmeans"
    assert manifest.components["encoder"].files["coreml"].compression is None


@pytest.mark.slow
def test_a_reused_package_scores_as_a_fresh_one(bundle: Path, tmp_path: Path) -> None:
    """The mixed recipe reuses the encoder the int8-channel variant made and the joint the
    int4-tensor variant made (raised to iOS 18 once): the same files, hard-linked, and the
    same figures and table row as the recipe compressed on its own in a fresh sweep."""
    mixed = "encoder=int8-channel+joint=int4-tensor"

    def sweep(out: Path, strategies: str) -> QuantizeSummary:
        return quantize_sweep(
            bundle,
            out,
            strategies=strategies,
            audio=AUDIO[:1],
            weight_threshold=THRESHOLD,
            latency_runs=1,
            jobs=1,
        )

    shared = sweep(tmp_path / "shared", f"int8-channel,int4-tensor,{mixed}")
    alone = sweep(tmp_path / "alone", mixed)
    reused, fresh = shared.variant(mixed), alone.variant(mixed)
    assert _figures(reused.to_dict()) == _figures(fresh.to_dict())
    assert [c.retargeted for c in reused.components] == [False, False, True]
    for role, maker in (("encoder", "int8-channel"), ("joint", "int4-tensor")):
        (mine,) = [c for c in reused.components if c.role == role]
        (theirs,) = [c for c in shared.variant(maker).components if c.role == role]
        assert mine.convert_seconds == theirs.convert_seconds  # what making it took
        # The program and its weights (coremltools rewrites a package's Manifest.json
        # whenever it opens one, so that file is the reader's own copy).
        files = sorted(
            p for p in (Path(reused.bundle) / mine.path / "Data").rglob("*") if p.is_file()
        )
        assert {p.name for p in files} == {"model.mlmodel", "weight.bin"}
        for path in files:
            made = Path(shared.variant(maker).bundle) / path.relative_to(reused.bundle)
            assert path.stat().st_ino == made.stat().st_ino, path
    from speechport.render import ranking_table

    def row(summary: QuantizeSummary) -> list[str]:
        (line,) = [x for x in ranking_table(summary) if f" {mixed[:24]} " in x]
        cells = line.split()
        return cells[1:4] + cells[5:-2]  # without the rank, conversion seconds and RTFx

    assert row(shared) == row(alone)
    assert not (tmp_path / "shared" / PACKAGES_DIR).exists()


def test_compression_matches_coremltools_own(bundle: Path, tmp_path: Path) -> None:
    """A package the sweep's cache makes (raised to iOS 18 once, coremltools' per-pass
    program check skipped) has the size, ops and outputs of coremltools' own public call on
    the raised program, every check on."""
    import coremltools as ct
    import coremltools.optimize.coreml as cto
    import numpy as np

    from speechport.compression.apply import op_types
    from speechport.coreml import Interpreter, load_program

    source = bundle / "JointStep.mlpackage"
    chosen = CATALOGUE["int4-tensor"]
    made, done = PackageCache(tmp_path / "cache").compressed(
        source, chosen, weight_threshold=THRESHOLD
    )
    assert done.retargeted and done.spec_version == 9
    raised = ct.models.utils._apply_graph_pass(
        ct.models.MLModel(str(source), skip_model_load=True), [], spec_version=9
    )
    own = tmp_path / "own.mlpackage"
    cto.linear_quantize_weights(raised, chosen.config(THRESHOLD)).save(str(own))
    assert path_size(made) == path_size(own)
    specs = [ct.models.MLModel(str(p), skip_model_load=True).get_spec() for p in (made, own)]
    ops = op_types(specs[1])
    assert op_types(specs[0]) == ops
    assert done.compressed_tensors == ops["constexpr_blockwise_shift_scale"] == 3
    ours, theirs = Interpreter(load_program(made)), Interpreter(load_program(own))
    rng = np.random.default_rng(0)
    feeds = {}
    for var in ours.inputs:
        assert var.type is not None and var.type.shape is not None
        shape = tuple(int(d or 1) for d in var.type.shape)
        feeds[var.name] = rng.standard_normal(shape).astype(np.float32)
    for name, value in ours.run(feeds).items():
        assert np.array_equal(value, theirs.run(feeds)[name]), name


def test_packages_made_in_workers_are_the_ones_the_recipes_read(
    bundle: Path, tmp_path: Path
) -> None:
    """What the sweep's worker processes make, the longest first, is what a recipe then
    reads: the same files and record."""
    from concurrent.futures import ProcessPoolExecutor

    from speechport.compression.cache import longest_first
    from speechport.compression.sweep import worker_context

    packages = PackageCache(tmp_path / "packages")
    joint, encoder = bundle / "JointStep.mlpackage", bundle / "Encoder.mlpackage"
    wanted = [
        (joint, CATALOGUE["int8-channel"]),
        (joint, CATALOGUE["int4-block32"]),
        (joint, CATALOGUE["pal4-kmeans"]),
        (encoder, CATALOGUE["pal4-kmeans"]),
    ]  # k-means on 16 centroids first, the larger package first; ties in their order
    assert longest_first(wanted) == [wanted[3], wanted[2], wanted[0], wanted[1]]
    with ProcessPoolExecutor(2, mp_context=worker_context()) as pool:
        making = packages.make_in(pool, wanted[:2], weight_threshold=THRESHOLD)
        assert [f.result() for f in making.values()] == [True, True]
    records = [
        tmp_path / "packages" / joint.name / f"{s.name}-w{THRESHOLD}" / "compressed.json"
        for _, s in wanted[:2]
    ]
    inodes = [r.stat().st_ino for r in records]
    made = [packages.compressed(p, s, weight_threshold=THRESHOLD) for p, s in wanted[:2]]
    assert [r.stat().st_ino for r in records] == inodes  # read, not made again
    for (path, done), record in zip(made, records, strict=True):
        assert path.parent == record.parent and path.name == joint.name
        assert done.compressed_tensors > 0
    assert made[1][1].retargeted and not made[0][1].retargeted


def test_coremltools_shortcuts_keep_its_results(bundle: Path, tmp_path: Path) -> None:
    """Inside a compression, the constexpr dependency set of every var is computed in one
    loop (``_propagate``) to coremltools' own sets, and a program prints as one line."""
    import coremltools as ct
    from coremltools.models.utils import _apply_graph_pass

    from speechport.compression.apply import _programs_not_printed, _propagate

    made, _ = PackageCache(tmp_path / "cache").compressed(
        bundle / "JointStep.mlpackage", CATALOGUE["pal4-kmeans"], weight_threshold=THRESHOLD
    )
    model = ct.models.MLModel(str(made), skip_model_load=True)
    program = _apply_graph_pass(model, [], return_pymil_prog=True)
    main = program.functions["main"]

    def sets(empty: bool = False) -> dict[str, list[str]]:
        found = {}
        for op in main.operations:
            for var in op.outputs:
                if empty:
                    var._nonreplaceable_vars_upstream = set()
                found[var.name] = sorted(v.name for v in var.nonreplaceable_vars_upstream)
        return found

    main._propagate_nonreplaceable_vars()  # coremltools' own
    theirs = sets()
    assert sum(1 for names in theirs.values() if names) > 3  # constexpr outputs reach ops
    sets(empty=True)
    _propagate(main)
    assert sets() == theirs
    with _programs_not_printed():
        assert str(program) == "<MIL program, functions main>"
    assert "constexpr_lut_to_dense" in str(program)


def test_the_reference_runs_on_one_torch_thread_during_a_sweep() -> None:
    import torch

    from speechport.compression.sweep import _one_torch_thread

    before = torch.get_num_threads()
    with _one_torch_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_a_sweep_in_workers_leaves_coremltools_and_torch_to_them(
    bundle: Path, tmp_path: Path
) -> None:
    """With worker processes, the sweep's own process imports neither coremltools nor
    torch (each worker does): it starts no slower and ends without tearing them down."""
    import subprocess
    import sys

    code = (
        "import sys; from speechport.compression import quantize_sweep; "
        f"s = quantize_sweep({str(bundle)!r}, {str(tmp_path / 'sweep')!r}, "
        f"strategies='int8-channel,int8-tensor', weight_threshold={THRESHOLD}, jobs=2); "
        "print([v.name for v in s.variants], 'torch' in sys.modules, "
        "'coremltools' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert done.stdout.splitlines()[-1] == "['baseline', 'int8-channel', 'int8-tensor'] False False"
