# mk/bench.mk - the benchmark of issue 4 (included by the top-level Makefile).
#
#   make bench                       10 M readings of one day (the issue's targets are set there)
#   make bench SIZE=1000000          1 M: also the reference for the RSS-growth target
#   make bench SIZE=100000           CI's smoke test: must complete and write its JSON; no time is asserted
#   make bench BENCH_ARGS='--only ceiling,pipeline'     a subset of the contenders (see bench/README.md)
#
# It starts a throwaway PostgreSQL cluster of its own (or uses BENCH_PG_URL), seeds it, builds the
# contenders' venvs under bench/.venvs/ and writes bench/results/<timestamp>.json. The pipeline it
# measures is the one installed in $(VENV) (`make venv`).

SIZE ?= 10000000
BENCH_PYTHON ?= $(or $(PYTHON),python3)
BENCH_ARGS ?=

.PHONY: bench
bench: venv ## Benchmark the daily job vs the COPY ceiling, seed-style pandas and dlt (SIZE=10000000)
	$(BENCH_PYTHON) bench/run.py --size $(SIZE) --pipeline-bin $(or $(VENV_BIN),.venv/bin) $(BENCH_ARGS)
