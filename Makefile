# clawpolicy: the two commands are `make run` and `make test` (both set up what they need).
PY := .venv/bin/python
EXAMPLES := $(wildcard examples/*.claw)
# the project config that builds the committed generated/ (docs/config.md)
CONFIG := examples/clawpolicy.toml

.PHONY: setup setup-test run test test-unit bench golden check clean

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh --test-tools

## Compile the bundled examples into generated/ (validated with libnftables).
run: setup
	$(PY) -m clawpolicy.cli compile $(EXAMPLES) --config $(CONFIG) --validate

## The whole suite: unit, golden, fuzz, and kernel tests (these need root, as CI has).
## The test tools (scripts/test-tools.sh: chromium, mermaid-cli) come with it; `make run` needs none.
test: setup-test
	$(PY) -m pytest

## Fast feedback: everything that does not need root.
test-unit: setup-test
	$(PY) -m pytest tests/unit tests/golden tests/fuzz

## clawpolicy vs Aerleon (compile, start-up, packet path), then compile-time, memory, nft load-time, overlap, seccomp, simulate, review commands at 100k networks, DNS gate and Mermaid render figures (tables; never asserted).
bench: setup
	$(PY) benchmarks/aerleon_bench.py
	$(PY) benchmarks/run.py
	$(PY) benchmarks/overlap_bench.py
	$(PY) benchmarks/seccomp_bench.py
	$(PY) benchmarks/simulate_bench.py
	$(PY) benchmarks/review_bench.py
	$(PY) benchmarks/dnsgate_bench.py
	$(PY) benchmarks/mermaid_bench.py

## Regenerate golden files and generated/ after a reviewed change (then read the diff!).
golden: setup
	PYTHONHASHSEED=0 $(PY) -c "from clawpolicy.parse import write_tables; write_tables()"
	CLAWPOLICY_REGENERATE=1 $(PY) -m pytest tests/unit/test_templating.py -q
	$(PY) -m clawpolicy.cli compile $(EXAMPLES) --config $(CONFIG)
	CLAWPOLICY_REGENERATE=1 $(PY) -m pytest tests/golden -q

## CI's staleness check on its own.
check: setup
	$(PY) -m clawpolicy.cli compile $(EXAMPLES) --config $(CONFIG) --check

clean:
	rm -rf .venv .venv-nca .venv-nca.failed .pytest_cache .hypothesis build *.egg-info .tools/node_modules
