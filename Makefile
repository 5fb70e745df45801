# Every target builds .venv when it is missing (or when pyproject.toml changed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench bench-quick mutate lint format clean

# The package and its runtime dependencies only: all `make demo` needs, so a fresh clone shows it in seconds.
$(VENV)/.demo-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e .
	touch $@

# The development tools on top (pytest, ruff, mypy, testcontainers, ...): for test, lint and the rest.
$(VENV)/.installed: $(VENV)/.demo-installed
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $@

$(VENV)/.mutation-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[dev,mutation]'
	touch $@

# The AsyncAPI project's own parser (npm), for the test that validates docs/asyncapi.yaml with it; the test
# runs this target itself when the parser is missing (needs node and npm; about a minute, 55 MB).
ASYNCAPI_PARSER_VERSION := 3.6.3
.tools/asyncapi/.installed:
	mkdir -p .tools/asyncapi
	cd .tools/asyncapi && npm install --no-audit --no-fund --no-save --silent @asyncapi/parser@$(ASYNCAPI_PARSER_VERSION)
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/relaybus demo

test: $(VENV)/.installed
	$(BIN)/pytest --durations=25

# Needs RabbitMQ at 127.0.0.1:5672 (RELAYBUS_BENCH_AMQP_URL); about 11 minutes, prints one table and writes
# bench/RESULTS.md, bench/throughput.png and the sweeps' bench/scale_*.png (python -m bench.sweep alone).
# bench-quick: about 3 minutes, smaller sizes, fewer repetitions.
bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench

bench-quick: $(VENV)/.bench-installed
	$(BIN)/python -m bench --quick

# Mutation testing (mutmut) of bus/codec.py, bus/rpc.py, orchestrator/dag.py and executor/retry.py against
# their fast unit tests, no broker: [tool.mutmut] in pyproject.toml; figures in tests/MUTATION.md. Starts
# afresh each time (mutants/ is a scratch copy of src/ and tests/), then lists the mutants that survived.
mutate: $(VENV)/.mutation-installed
	rm -rf mutants
	$(BIN)/mutmut run; status=$$?; $(BIN)/mutmut results; exit $$status

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy --strict src

format: $(VENV)/.installed
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache mutants
