# scrape-guard: a static musl binary on distroless/static — no shell, no libc, uid 65532.
FROM rust:1.95-bookworm AS build
# musl-tools: the C compiler (x86_64-linux-musl-gcc) the cc crate builds aws-lc with, the
# crypto under rustls; nothing else (no cmake, no NASM on x86_64 Linux).
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# A workspace member and dev-dependency: Cargo reads its manifest even for --bin.
COPY tests/support ./tests/support
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin scrape-guard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/scrape-guard /scrape-guard
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/scrape-guard"]
