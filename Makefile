# Every check is one command away. `make help` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: help install serve demo drill lint test test-long test-rust test-python bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

install: $(PY)  ## build the Rust engine (release) and install pyexchange with test tools into .venv
	$(PIP) install -q -e '.[test]'

serve: install  ## run the exchange: one zone on 127.0.0.1:8000, data in ./data (the main job)
	$(VENV)/bin/pyexchange serve

demo: install  ## run a seeded market through the engine
	$(VENV)/bin/pyexchange demo

lint: install  ## cargo fmt + clippy, ruff, mypy, and the stub against the binary
	cargo fmt --check
	cargo clippy --all-targets --features python -- -D warnings
	$(VENV)/bin/ruff check pyexchange tests bench
	$(VENV)/bin/ruff format --check pyexchange tests bench
	$(VENV)/bin/mypy pyexchange
	$(PY) -m mypy.stubtest pyexchange._core

test-rust:  ## Rust unit and property tests
	cargo test --profile release-test

test-python: install  ## pytest: scenarios, differential against the reference, paths, determinism
	$(PY) -m pytest -q

test: lint test-rust test-python  ## install, lint and run every test (Rust and Python)

test-long: install  ## the property, differential, crash and fault tests with many more cases (an hour)
	PROPTEST_CASES=50000 DURABLE_KILL_ITERATIONS=200 cargo test --profile release-test
	HYPOTHESIS_PROFILE=long $(PY) -m pytest -q tests/test_differential.py tests/test_place_reader.py tests/test_signature.py \
		tests/test_websocket.py
	CRASH_ITERATIONS=50 $(PY) -m pytest -q tests/test_crash.py
	DRILL_ROUNDS=50 $(PY) -m pytest -q tests/test_cluster_faults.py

drill: install  ## the zone-loss and the reopening drill on fresh local three-zone clusters (JSON verdicts)
	$(VENV)/bin/pyexchange drill zone-loss --json
	$(VENV)/bin/pyexchange drill reopen --json

bench: install  ## the benchmarks (long; figures go to bench/README.md)
	$(PIP) install -q -e '.[bench]' -r bench/requirements.txt
	$(PY) -m bench.run

clean:  ## remove build products and the virtual environment
	cargo clean
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache .mypy_cache
