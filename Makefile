# make run   - train the default experiment (digits, bidirectional PC + LALR; < 2 min on 2 CPU cores)
# make test  - run the test suite (one pytest-xdist worker per core, a test file per worker;
#              `make test PYTEST_ARGS=` runs it in one process). A worker that crashes ends the run
#              with the test it was running named: pytest-xdist's file scheduling can wait forever
#              for a replacement worker (pytest-dev/pytest-xdist#784), so none is started.
# Both create .venv and install pcjax with its dev extras on first use.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
ARGS ?=
PYTEST_ARGS ?= -n auto --dist loadfile --max-worker-restart=0 --durations=15

.PHONY: run test install clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) experiments/train.py $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf outputs multirun .pytest_cache
