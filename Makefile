# Gatehouse: `make run` starts a gateway node, `make test` runs the checks and the whole suite.
# Needs only python3 (3.11+) to begin with; everything else goes into .venv.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# A copy of the requirements last installed: pip runs again only when they change.
STAMP := $(VENV)/.installed-requirements.txt

HTTP ?= 127.0.0.1:8000
PG ?= 127.0.0.1:15432
SSH ?= 127.0.0.1:2222

.PHONY: run test lint core bench-pg bench-pg-cost bench-ssh bench-web venv clean

# Without a C compiler the gateway runs interpreted: `make run` goes on, `make test` stops.
run: venv
	-$(MAKE) --no-print-directory core
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_admin
	$(PY) manage.py rungateway --http $(HTTP) --pg $(PG) --ssh $(SSH)

test: lint core
	$(PY) -m pytest tests

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The PostgreSQL proxy's per-message modules, compiled by Cython (connections/protocols/compiled.py).
core: venv
	$(PY) -m connections.protocols.compiled

bench-pg: core
	$(PY) bench/pg_bench.py $(BENCH_ARGS)

bench-pg-cost: core
	$(PY) bench/pg_cost.py $(BENCH_ARGS)

bench-ssh: venv
	$(PY) bench/ssh_bench.py $(BENCH_ARGS)

bench-web: venv
	$(PY) bench/reviewer_bench.py $(BENCH_ARGS)

venv:
	@if [ ! -x $(PY) ]; then \
		echo "Creating $(VENV) with $(PYTHON)"; \
		$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
			|| { echo "Gatehouse needs Python 3.11 or newer (PYTHON=$(PYTHON))"; exit 1; }; \
		$(PYTHON) -m venv $(VENV) \
			|| { echo "python3 -m venv failed; on Debian/Ubuntu: apt-get install python3-venv"; exit 1; }; \
	fi
	@if ! cmp -s requirements.txt $(STAMP); then \
		echo "Installing requirements into $(VENV)"; \
		$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt \
			&& cp requirements.txt $(STAMP); \
	fi

clean:
	rm -rf .pytest_cache .ruff_cache bench/out
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o \( -name '*.so' -o -name '*.so.sha256' \) -type f -exec rm -f {} +
