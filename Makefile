# The two commands a fresh Debian 12 machine needs: `make demo` and `make test`.
# Both run scripts/setup first (idempotent; fast when everything is present).

CARGO ?= cargo
# The demo's simulated cameras ask for these credentials; the demo config reads the same variable.
export QLY_CAMSIM_PASSWORD ?= demo-camsim-pass
export QLY_DEMO_PASSWORD ?= demo-pass-2026
export QLY_DEMO_GB_PASSWORD ?= demo-gb-2026

.PHONY: setup demo test lint bench-camsim

setup:
	scripts/setup

demo: setup
	$(CARGO) build --release --bin qianliyan
	scripts/demo

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

test: setup lint
	$(CARGO) test --lib --bins --tests

bench-camsim: setup
	$(CARGO) bench --bench camsim_scale
