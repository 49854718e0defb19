# The two commands a newcomer runs: `make demo` and `make test`.
.PHONY: setup demo test lint bench clean

setup:
	@bash deploy/local/setup.sh

demo: setup
	.venv/bin/fleetsync demo

test:
	@bash deploy/local/setup.sh --for-tests
	.venv/bin/pytest $(PYTEST_ARGS)

lint: setup
	.venv/bin/lint-imports

bench: setup
	.venv/bin/python bench/dev_up_bench.py

clean:
	-.venv/bin/fleetsync dev down
	rm -rf .venv
