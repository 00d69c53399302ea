PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install test test-fast test-hub lint demo bench bench-quick bench-gpu clean

## install: create .venv and install vrec (editable) with its test and Ray extras
install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,ray]'
	@$(BIN)/vrec --version

## test: the import contract, the linter, then every test (what CI runs)
test: lint
	$(BIN)/python -m pytest -q

## test-fast: the inner loop: every test but the slow end-to-end ones (Ray cluster, browser, signals, load, real photos)
test-fast:
	$(BIN)/python -m pytest -q -m "not slow"

## test-hub: the real open_clip architectures at random weights through a fake Hugging Face cache (siglip, the domain models; about 25 minutes, 6 GB of disk; make test skips them)
test-hub:
	VREC_TEST_REAL_SIGLIP=1 $(BIN)/python -m pytest -q tests/test_domain_models.py tests/test_onnx_text.py

## lint: ruff (pyflakes, isort, bugbear, pyupgrade) and the import contract (lint-imports; see docs/architecture.md)
lint:
	$(BIN)/ruff check vrec tests bench sample_catalog examples
	$(BIN)/lint-imports --no-cache  # a stale cache has reported cycles long gone

## demo: embed sample_catalog/ (146 real product photos) with effnet-lite0 and SigLIP, then search and compare
demo:
	$(BIN)/python sample_catalog/demo.py --store .vrec-demo

.PHONY: docs
## docs: regenerate the command reference (docs/commands.md) from every command's --help
docs:
	$(BIN)/cog -r docs/commands.md

## bench: measure throughput and search speed, write BENCHMARKS.md (not part of make test)
bench:
	$(BIN)/python bench/run.py

## bench-quick: the same at small sizes (under 3 minutes)
bench-quick:
	$(BIN)/python bench/run.py --quick --out BENCHMARKS-quick.md

## bench-gpu: on a machine with a CUDA GPU, only the GPU figures (fp32/fp16/bf16), into BENCHMARKS-gpu.md
bench-gpu:
	$(BIN)/python bench/run.py --gpu-only

clean:
	rm -rf .vrec-demo .pytest_cache build *.egg-info
