# Two entry points for users: `make demo` and `make test`. Both build their own virtual environment.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0

.PHONY: venv test bench demo lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# Install the pinned CPU torch first so that no dependency can pull a CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest -q -n 2

demo: venv
	$(PY) -m mimic3d.cli.main demo

bench: venv
	$(PY) -m benchmarks.run

lint: venv
	$(VENV)/bin/ruff check mimic3d tests benchmarks examples

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
