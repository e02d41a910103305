# make demo: the whole toolkit on a generated sample corpus, no Azure account needed.
# make test: the whole test suite.
# Both create .venv and install the project into it (again only when pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := build/demo
NODES := 5

.PHONY: demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-submit: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --editable '.[submit]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --editable '.[dev]'
	touch $@ $(VENV)/.installed-submit

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

demo: $(VENV)/.installed-submit
	rm -rf $(DEMO)
	$(BIN)/python -m job.sample $(DEMO)/input
	@for rank in $$(seq 0 $$(($(NODES) - 1))); do \
	  echo "--- node $$rank of $(NODES)"; \
	  $(BIN)/python -m job --input_dir $(DEMO)/input --out_dir $(DEMO)/output --process_count 2 \
	    --distribArgs.node_count $(NODES) --distribArgs.node_rank $$rank --log_level WARNING || exit 1; \
	done
	$(BIN)/python -m job.check --input_dir $(DEMO)/input --out_dir $(DEMO)/output
	@if [ -f submit/__main__.py ]; then \
	  echo "--- the job that 'python -m submit --nodes $(NODES)' would submit (dry run)"; \
	  $(BIN)/python -m submit --nodes $(NODES) --dry-run --input $(DEMO)/input; \
	fi

clean:
	rm -rf build .pytest_cache
