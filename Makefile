# The two commands of the README: `make demo` and `make test`. Both create .venv on first use
# and install the project with its extras under the dev/CI pins in constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.augplug-installed

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[audio,demo,dev,trainers]'
	touch $(STAMP)

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
