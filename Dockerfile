# scrape-guard: the glibc release build on distroless/cc — no shell, uid 65532.
#
# The image ships the very binary every benchmark measures (benches/RESULTS.md):
# `cargo build --release` for x86_64-unknown-linux-gnu (fat LTO, stripped), glibc's
# allocator. Not musl: its allocator is slow under threads and nobody has measured it.
# Debian bookworm in both stages, so the build's glibc (2.36) is the runtime's.
# CI builds the same image without a daemon from local files: image/build.sh.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo loads every workspace member's manifest, and builds none of them for --bin: the
# testkit (tests/support), the end-to-end suite (e2e) and the benches.
COPY tests/support/Cargo.toml ./tests/support/
COPY e2e/Cargo.toml ./e2e/
COPY benches/Cargo.toml ./benches/
RUN cargo build --release --locked --bin scrape-guard

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/scrape-guard /scrape-guard
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/scrape-guard"]
