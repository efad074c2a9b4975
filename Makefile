# The two commands of the README: `make demo` and `make test`. Both create .venv on first use
# and install the project with its extras under the dev/CI pins in constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.augplug-installed

.PHONY: demo test lint install clean

# OpenMP threads sleep instead of spinning while they wait: on a shared machine a spinning
# second thread made the demo's training step 2.6-2.8x slower (benchmarks/results/threads.md).
# It must be set before torch starts, hence here and not in the code.
export OMP_WAIT_POLICY ?= PASSIVE

# One line per phase, so a cold set-up (minutes of downloads) is not mistaken for a hang.
$(STAMP): pyproject.toml constraints.txt
	@echo "augplug set-up [1/3]: virtual environment $(VENV) (python: $(PYTHON))"
	@$(PYTHON) -m venv $(VENV)
	@echo "augplug set-up [2/3]: torch, torchaudio, kornia under constraints.txt; on Linux the"
	@echo "    package index serves torch's CUDA build (it runs on CPU too): several GB to download"
	@echo "    on a cold pip cache, about 5 GB installed; a few minutes, quiet meanwhile"
	@$(BIN)/python -m pip install -q -c constraints.txt torch torchaudio kornia
	@echo "augplug set-up [3/3]: augplug (editable) with the extras audio, demo, dev, trainers, bench"
	@$(BIN)/python -m pip install -q -c constraints.txt -e '.[audio,demo,dev,trainers,bench]'
	@touch $(STAMP)
	@echo "augplug set-up done: $$(du -sh $(VENV) | cut -f1) in $(VENV)"

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/augplug demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/python -m ruff check . && $(BIN)/python -m ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
