# The two commands: `make demo` and `make test`. Each creates .venv and installs the project
# (with its test extras) when needed, so they work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo tutorial test lint bench docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# The main job: train a deep SCM of Morpho digits on CPU (a pseudo-oracle, then the SCM with
# a conditional VAE as its image mechanism), then write counterfactual grids (model vs exact
# ground truth), training curves, metrics.json and report.html (all of it on one
# self-contained page) to runs/demo/. A model trained for minutes
# reconstructs loosely, so its counterfactuals use mean images rather than carrying the
# factual pixel residual over. docs/deep_scm.md shows how the demo's settings were chosen.
DEMO := runs/demo
demo: $(STAMP)
	rm -rf $(DEMO)  # a fresh run each time, not a resume of an older one
	$(VENV)/bin/causalvision train experiments/morpho_oracle.py:demo --workdir $(DEMO)/oracle
	$(VENV)/bin/causalvision train experiments/morpho_vae.py:demo --workdir $(DEMO)/deep_scm
	$(VENV)/bin/causalvision evaluate --workdir $(DEMO)/deep_scm --oracle $(DEMO)/oracle --out $(DEMO) \
		--pixel-noise mean
	cp $(DEMO)/deep_scm/curves.png $(DEMO)/training_curves.png
	$(VENV)/bin/causalvision report $(DEMO)  # runs/demo/report.html: grids and metrics, one page

tutorial: $(STAMP)
	$(PY) notebooks/01_compose_an_scm.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# One pytest worker per core; a test file stays on one worker, so its fixtures (a trained
# tiny run) are built once. Workers share the session's compilation cache (tests/conftest.py).
PYTEST_ARGS := -q -n auto --dist loadfile
test: lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The documentation site, warnings as errors, into docs/_build/html (docs/conf.py). First the
# tutorials are executed at small settings into docs/_build/tutorials (docs/_ext/tutorials.py;
# one whose source and settings are unchanged since it last ran is skipped), then Sphinx
# renders those executed notebooks. The suite's build (tests/test_docs.py) renders them
# unexecuted. Not nitpicky (-n): of its ~1,000 warnings ~960 are
# jax/numpy/flax types (no intersphinx inventories offline), ~25 napoleon misreading a
# property's "Label: text" first line as a type (docs/conf.py).
TUTORIALS := docs/_build/tutorials
docs: $(STAMP)
	$(PY) docs/_ext/tutorials.py --out $(TUTORIALS)
	$(VENV)/bin/sphinx-build -W --keep-going -b html -D tutorials_executed=$(TUTORIALS) \
		docs docs/_build/html

bench: $(STAMP)
	$(PY) benchmarks/scm_queries.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs docs/_build
