# make run   - train the default experiment (digits, bidirectional PC + LALR; < 2 min on 2 CPU cores)
# make test  - run the test suite (one pytest-xdist worker per core; `make test PYTEST_ARGS=` runs it in one
#              process). A worker killed by a native fault (its faulthandler dump is in the log) is replaced,
#              and the one test it was running runs once more in the fresh worker: the run passes only if it
#              passes there, and the summary counts it as a rerun. Ordinary failures are never rerun.
#              Tests are handed out one by one (worksteal): file-by-file scheduling cannot reschedule a
#              crashed test and can wait forever for the replacement worker (pytest-dev/pytest-xdist#784).
# Both create .venv and install pcjax with its dev extras on first use.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
ARGS ?=
PYTEST_ARGS ?= -n auto --dist worksteal --max-worker-restart=4 --reruns 1 \
               --only-rerun 'worker .* crashed while running' --durations=15

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
