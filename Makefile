PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install test demo bench bench-quick bench-gpu clean

## install: create .venv and install vrec (editable) with its test and Ray extras
install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,ray]'
	@$(BIN)/vrec --version

## test: run the test suite
test:
	$(BIN)/python -m pytest -q

## demo: embed the bundled sample catalog with the offline tiny models, then search and compare
demo:
	$(BIN)/vrec embed sample_catalog --metadata sample_catalog/catalog.csv --model tiny-siglip --model tiny-cnn --store .vrec-demo
	$(BIN)/vrec index --store .vrec-demo --stats
	$(BIN)/vrec search-text "red bag" --model tiny-siglip --store .vrec-demo --k 5
	$(BIN)/vrec compare --left tiny-cnn --right tiny-siglip --store .vrec-demo --sample 2 --k 4 --label category

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
