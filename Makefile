# meshscope developer targets. CARGO_TARGET_DIR defaults outside the clone so CI and
# local builds share compiled dependencies.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/meshscope-target

.PHONY: check test deps bench demo serve fmt

check:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	python3 .ci/import-cycles.py

test: deps
	@if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --workspace --no-fail-fast; \
	else \
		cargo test --workspace --no-fail-fast; \
	fi
	node --test ui-api/console/test/
	python3 dashboards/validate.py
	python3 docs/snippets/check_snippets.py
	deploy/validate.sh

# What the tests need besides Rust, when missing: promtool, clickhouse-server, Chromium and
# chromedriver (the console's browser tests), Node.js (its unit tests), and the Python
# packages jsonschema, PyYAML, chdb, kubernetes-validate and xds-protos (see .ci/deps;
# needs root or sudo for apt).
deps:
	@.ci/deps

bench:
	cargo build --release
	$(CARGO_TARGET_DIR)/release/meshscope bench als --entries 2000000 --streams 8
	$(CARGO_TARGET_DIR)/release/meshscope bench otlp --spans 1000000 --connections 8
	$(CARGO_TARGET_DIR)/release/meshscope bench query --services 200 --hours 24 --runs 5

demo:
	cargo run --release -- demo

serve:
	cargo run --release -- serve

fmt:
	cargo fmt --all
