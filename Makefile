# urgentflow — the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo up stop test lint unit testbed testbed-stop bench lock clean up-scaled stop-scaled worker worker-stop

venv: $(STAMP)
$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "ERROR: cannot create a venv: install python3-venv"; exit 1; }
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

# Start the embedded runtime, run the main DAG through the REST API, leave the runtime up.
# The flagship end to end: test bed (Slurm over SSH, S3, Docker, catalog; installed on first use), the
# runtime (it reads the test bed's connections at start), then an incident through POST /urgentflow/incidents.
demo: venv testbed
	$(PY) scripts/runtime.py start
	$(PY) scripts/demo.py

# Embedded mode: the S3 server, the catalog and every installed test-bed part (Slurm, Docker, Grid Engine:
# nothing is installed here), then the runtime; the `local` machine needs nothing running.
up: venv
	scripts/testbed start --installed
	$(PY) scripts/runtime.py start

# Stops the runtime and the test bed (every part of it); all data is kept for the next `make up`.
stop:
	@test -x $(PY) && $(PY) scripts/runtime.py stop || true
	scripts/testbed stop

# Scaled mode (CeleryExecutor; the machine's Redis and Postgres): a second, separate instance on port 8090.
# `make worker NAME=w2 QUEUES=default,transfer` adds a Celery worker (LOG_PORT=<port> for a second one on
# the same host); `make stop-scaled` stops the instance and its workers.
NAME ?= w1
QUEUES ?= default,transfer
CONCURRENCY ?= 2
up-scaled: venv
	$(PY) scripts/runtime.py --mode scaled start

stop-scaled:
	@test -x $(PY) && $(PY) scripts/runtime.py --mode scaled stop || true

worker: venv
	$(PY) scripts/runtime.py --mode scaled worker --name $(NAME) --queues $(QUEUES) --concurrency $(CONCURRENCY) $(if $(LOG_PORT),--log-port $(LOG_PORT))

worker-stop:
	$(PY) scripts/runtime.py --mode scaled stop-worker --name $(NAME)

testbed: venv
	scripts/testbed start

testbed-stop:
	scripts/testbed stop

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/pytest -m "not integration and not e2e"

# Everything: lint, test bed up, the whole suite (unit, DAG integrity, integration, e2e), two tests at a
# time: the e2e tests in order on one worker (they share the runtime), the rest on the other; a test
# marked `exclusive` (it stops a test-bed server) runs alone (tests/conftest.py).
test: venv lint testbed
	$(VENV)/bin/pytest -n 2 --dist loadscope

# Quick benchmark set, about 5 minutes (figures, full-size commands and readings in benchmarks/README.md):
# job watching at N = 10, 100; trigger-to-running latency over 10 incidents; a 50-member ensemble;
# report to map (8 members) over 3 incidents; completion notices vs polling at the interval (10 jobs).
# Needs the test bed and the runtime (make up); every job it submits is cancelled at the end.
bench: venv testbed
	$(PY) benchmarks/job_watch.py --sizes 10,100
	$(PY) benchmarks/completion_notice.py --jobs 10 --interval 10
	$(PY) scripts/runtime.py start
	$(PY) benchmarks/latency.py --runs 10
	$(PY) benchmarks/throughput.py --members 50 --seconds 2
	$(PY) benchmarks/time_to_map.py --runs 3

lock:
	$(PY) -m pip freeze --exclude-editable | grep -v '^urgentflow' > constraints.txt.new
	@{ sed -n '1,2p' constraints.txt; cat constraints.txt.new; } > constraints.txt && rm constraints.txt.new

clean: stop testbed-stop
	rm -rf $(VENV)
