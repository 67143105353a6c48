# Two commands do all the set-up on a fresh machine:
#   make demo   - install; convert Silero VAD from the installed package (real weights),
#                 verify its ONNX and Core ML files (the latter run by speechport's MIL
#                 interpreter off macOS) against the torch reference, print the speech
#                 segments of a sample
#   make test   - install, lint, type-check and run the test suite
# and one more tour:
#   make demo-asr - convert the tiny GigaAM checkpoint shipped in tests/data, transcribe
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_VAD := build/silero-vad
DEMO_ASR := build/demo-gigaam
SAMPLE := samples/speech_with_pauses.wav

.PHONY: demo demo-asr test lint install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull several GB of CUDA wheels.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[convert,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/speechport convert silero-vad --out $(DEMO_VAD) --precision fp32 --force
	$(BIN)/speechport verify $(DEMO_VAD) --audio $(SAMPLE) --backends onnx,coreml
	$(BIN)/speechport vad $(DEMO_VAD) $(SAMPLE)

demo-asr: $(STAMP)
	$(BIN)/speechport convert gigaam --checkpoint tests/data/gigaam/v3_e2e_rnnt.ckpt \
		--tokenizer tests/data/gigaam/tokenizer.model --out $(DEMO_ASR) --force
	$(BIN)/speechport info $(DEMO_ASR)
	$(BIN)/speechport transcribe $(DEMO_ASR) tests/data/gigaam/audio/clip0.wav \
		tests/data/gigaam/audio/clip1.wav
	$(BIN)/speechport transcribe $(DEMO_ASR) tests/data/gigaam/audio/clip1.wav --timestamps

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/mypy

# Everything, the tests marked slow included (`pytest -m "not slow"` is the quick loop);
# the 15 slowest tests and the share of speechport's lines the suite runs are printed.
test: lint
	mkdir -p build
	COVERAGE_FILE=build/.coverage $(BIN)/python -m pytest -n 2 --dist loadfile --durations=15 \
		--cov=speechport --cov-report=
	@echo "coverage: $$(COVERAGE_FILE=build/.coverage $(BIN)/coverage report --format=total)% of speechport's lines"

clean:
	rm -rf $(VENV) build
