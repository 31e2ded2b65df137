//! scrape-guard: a kube-rbac-proxy compatible auth proxy for Prometheus exporters.
//!
//! ```text
//! TCP accept ─► TLS (rustls, reloadable cert, ALPN h2/http1.1)     server.rs, tls/
//!           ─► HTTP (hyper-util auto: h1 + h2, timeouts, limits)    server/
//!           ─► path policy   --allow-paths → 404 · --ignore-paths   paths.rs
//!           ─► authenticate  client cert | Bearer → TokenReview     authn/   [cache.rs]
//!           ─► authorize     local policy → SubjectAccessReview     authz/   [cache.rs]
//!           ─► forward       strip credentials, stream upstream     upstream/
//! ```
//!
//! `guard.rs` is that pipeline as one function; `error.rs` is the one place a failure
//! becomes a status code; `app.rs` wires the stages from a validated `Config`, for the
//! proxy and for `scrape-guard can-i` alike. ARCHITECTURE.md has the module map and the
//! rule for which module may import which.
//!
//! Everything below is private; what is exported is the facade the binary, the
//! integration tests, the benches and the fuzz targets use.

mod admin;
mod apiserver;
mod app;
mod audit;
mod auth_endpoint;
mod authn;
mod authz;
mod body;
mod cache;
mod config;
pub mod doctor;
mod error;
mod guard;
mod identity;
mod lane;
mod logging;
mod metrics;
mod paths;
mod reload;
mod routes;
mod server;
mod tls;
mod upstream;
mod yaml;

// Starting the proxy: the binary and the integration tests.
pub use app::{run, start, RunError, Running};
pub use config::{Args, Cli, Command, Config, ConfigError, VersionFlag};
pub use logging::init as init_logging;

// The request path's building blocks, for benches and fuzz targets.
pub use apiserver::{Apiserver, ApiserverSettings, Fallback, RateLimit, Requester};
pub use authn::{
    jwt, Authenticator, AuthnSettings, BearerToken, OidcSettings, ServiceAccountVerification,
};
pub use authz::{Attributes, Authorizer, AuthzSettings};
pub use cache::CacheSettings;
pub use error::ProxyError;
pub use guard::forwardable_path;
pub use metrics::Metrics;
pub use paths::{PathPolicy, Route};
pub use upstream::{add_forwarding_headers, clean_request_headers, IdentityHeaders};
