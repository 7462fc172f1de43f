# The README's two commands are `make run` and `make test`; both install what they need first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install run test bench shadow-30m clean

install:
	@scripts/bootstrap.sh

# The main job: a short shadow run of the mempool backrun path on the embedded devnet.
run: install
	AETHER_SHADOW=1 MEMPOOL_TRACKING=1 SHADOW_DURATION_SEC=$${SHADOW_DURATION_SEC:-90} \
		scripts/mempool_backrun_shadow.sh

# The test suite (unit + integration against a real anvil node).
test: install
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

# The benchmarks (docs/performance.md): about 5 minutes; `$(PY) -m bench --soak` is the 30-minute soak.
bench: install
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(PY) -m bench $(BENCH_ARGS)

# The 30-minute validation run of the rollout runbook (Stage A evidence).
shadow-30m: install
	AETHER_SHADOW=1 MEMPOOL_TRACKING=1 SHADOW_DURATION_SEC=1800 scripts/mempool_backrun_shadow.sh

clean:
	rm -rf $(VENV) node_modules .devnet
