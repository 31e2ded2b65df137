# scrape-guard: the glibc release build on distroless/cc — no shell, uid 65532 — for
# linux/amd64 and linux/arm64 in one tag:
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t REF .
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg FEATURES=fips -t REF-fips .
#
# The image ships the very binary every benchmark measures (benches/RESULTS.md):
# `cargo build --release` (fat LTO, stripped), glibc's allocator. Not musl: its
# allocator is slow under threads and nobody has measured it. The build stage runs on
# the builder's own platform ($BUILDPLATFORM) and cross-compiles for $TARGETPLATFORM:
# no emulated compile, one dependency download. Debian bookworm in both stages, so the
# build's glibc (2.36) is the runtime's. `cargo auditable` embeds the dependency list
# in the binary (trivy, grype and syft read it). CI builds the same image without a
# daemon from local files: image/build.sh (docs/releases.md).
FROM --platform=$BUILDPLATFORM rust:1.95-bookworm AS build
# Before any ARG that differs per platform: both platforms' stages share this layer.
RUN cargo install --locked cargo-auditable --version 0.7.7
ARG TARGETARCH
# FEATURES=fips: the FIPS variant (docs/releases.md); aws-lc-fips-sys builds its module
# with cmake, Go and perl. A cross C compiler and glibc only when the target is not the
# builder's own architecture. Versions float with bookworm's point releases, like the
# distroless base's.
ARG FEATURES=""
# hadolint ignore=DL3008
RUN case "$TARGETARCH" in \
      amd64) echo x86_64-unknown-linux-gnu > /rust-target; gnu=x86-64 ;; \
      arm64) echo aarch64-unknown-linux-gnu > /rust-target; gnu=aarch64 ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH (amd64, arm64)" >&2; exit 1 ;; \
    esac \
 && set -- \
 && if [ "$TARGETARCH" != "$(dpkg --print-architecture)" ]; then \
      set -- "gcc-$gnu-linux-gnu" "libc6-dev-$TARGETARCH-cross"; fi \
 && if [ -n "$FEATURES" ]; then set -- "$@" cmake golang-go; fi \
 && if [ "$#" -gt 0 ]; then \
      apt-get update && apt-get install -y --no-install-recommends "$@" \
      && rm -rf /var/lib/apt/lists/*; fi \
 && rustup target add "$(cat /rust-target)"
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CC_x86_64_unknown_linux_gnu=x86_64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo loads every workspace member's manifest, and builds none of them for --bin: the
# testkit (tests/support), the end-to-end suite (e2e) and the benches.
COPY tests/support/Cargo.toml ./tests/support/
COPY e2e/Cargo.toml ./e2e/
COPY benches/Cargo.toml ./benches/
RUN cargo auditable build --release --locked --bin scrape-guard \
      --target "$(cat /rust-target)" ${FEATURES:+--features "$FEATURES"} \
 && cp "target/$(cat /rust-target)/release/scrape-guard" /scrape-guard

# Pulled for $TARGETPLATFORM: the matching glibc, libgcc and CA bundle.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /scrape-guard /scrape-guard
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/scrape-guard"]
