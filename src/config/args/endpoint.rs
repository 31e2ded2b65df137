//! The auth endpoint's flags (see `auth_endpoint.rs`).

use clap::Args as ClapArgs;

use crate::config::go::{parse_listen_address, ListenAddress};

/// RBAC decisions for a proxy already in front of a service (nginx `auth_request`,
/// Traefik `forwardAuth`, Envoy `ext_authz`).
#[derive(Debug, ClapArgs)]
#[command(next_help_heading = "Auth endpoint")]
pub struct AuthEndpointArgs {
    /// Also serve the auth endpoint here (TLS, like every listener): it answers whether
    /// the request the fronting proxy describes may pass — 200 with the identity in
    /// the --auth-header-*-field-name headers, or 401/403 — and forwards nothing. Only
    /// the fronting proxy should reach it: bind it to loopback or the pod IP it uses.
    #[arg(long, env = "SCRAPE_GUARD_AUTH_ENDPOINT_ADDRESS", value_name = "ADDRESS", value_parser = parse_listen_address)]
    pub auth_endpoint_address: Option<ListenAddress>,

    /// Whose conventions describe the original request: nginx (X-Original-Method,
    /// X-Original-URI), traefik (X-Forwarded-Method, X-Forwarded-Uri) or envoy (the
    /// auth request's own method and path, after --auth-endpoint-path-prefix).
    #[arg(long, env = "SCRAPE_GUARD_AUTH_ENDPOINT_STYLE", default_value = "nginx", value_parser = ["nginx", "traefik", "envoy"])]
    pub auth_endpoint_style: String,

    /// envoy style: the `path_prefix` of Envoy's ext_authz http_service.
    #[arg(
        long,
        env = "SCRAPE_GUARD_AUTH_ENDPOINT_PATH_PREFIX",
        default_value = "",
        value_name = "PREFIX"
    )]
    pub auth_endpoint_path_prefix: String,
}
