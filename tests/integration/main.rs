//! # The integration tests
//!
//! scrape-guard over real TLS sockets, in process and as the real binary, against the
//! fixtures of `tests/support` (the `scrape-guard-testkit` crate). One test binary with
//! one module per theme, as linkerd2-proxy's integration crate: each binary of its own
//! would link the whole crate again. What each module checks is in its `//!` header;
//! ARCHITECTURE.md ("Where the tests live") lists them, and `layout` checks it does.
//!
//! Nothing here needs to be a process of its own: no test installs a global tracing
//! subscriber or sets an environment variable, the ones that measure memory or logs
//! measure a child process, and the crypto provider is installed once, idempotently
//! (`support::install_crypto`).
//!
//! ```sh
//! cargo test --test integration                      # all of them
//! cargo test --test integration -- hostile_h2::       # one module
//! ```

mod audit;
mod auth_endpoint;
mod cli;
mod endpoints;
mod faults;
// The FIPS build only (`--features fips`): see .ci/fips.sh.
#[cfg(feature = "fips")]
mod fips;
mod front_proxy;
mod hostile_connections;
mod hostile_h2;
mod hostile_headers;
mod hostile_paths;
mod installers;
mod layout;
mod listeners;
mod log_flood;
mod oidc;
mod operations;
mod policy;
mod proxy;
mod review_flood;
mod scrape_budget;
mod scrape_fidelity;
mod secrets;
mod service_accounts;
mod sni;
mod streaming;
// X25519 and ChaCha20 by default: the default build only (the FIPS build's are in `fips`).
#[cfg(not(feature = "fips"))]
mod tls_curves;
mod upstream_connections;
mod upstream_tls;
mod upstreams;
