//! The flags of kube-rbac-proxy's planned rewrite (its `sig-auth-acceptance` branch),
//! which reuses k8s.io/apiserver's secure-serving and delegating authentication and
//! authorization options. Those that mean what a scrape-guard flag means are aliases
//! of it (`config/dialect.rs` resolves them and refuses contradictions);
//! `--tls-sni-cert-key` is served as k8s.io/apiserver serves it (`tls/sni.rs`); the rest
//! are refused with what to use instead.

use std::{path::PathBuf, time::Duration};

use clap::Args as ClapArgs;

use super::super::go::{parse_go_bool, parse_go_duration};

/// k8s.io/apiserver serving, authentication and authorization flags.
#[derive(Debug, Default, ClapArgs)]
#[command(
    next_help_heading = "Compatibility: k8s.io/apiserver flags of kube-rbac-proxy's rewrite (aliases)"
)]
pub struct ApiserverArgs {
    /// With --secure-port: alias of --secure-listen-address (BIND_ADDRESS:SECURE_PORT).
    #[arg(long, value_name = "IP")]
    pub bind_address: Option<String>,

    /// With --bind-address (default 0.0.0.0): alias of --secure-listen-address.
    #[arg(long, value_name = "PORT")]
    pub secure_port: Option<u16>,

    /// Directory holding apiserver.crt and apiserver.key, used when --tls-cert-file and
    /// --tls-private-key-file are not given; without them a self-signed certificate.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,

    /// Alias of --http2-max-concurrent-streams (0 = its default).
    #[arg(long, value_name = "N")]
    pub http2_max_streams_per_connection: Option<u32>,

    /// Alias of --http2-disable.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = parse_go_bool, value_name = "BOOL")]
    pub disable_http2_serving: Option<bool>,

    /// Alias of --kubeconfig (for TokenReviews; scrape-guard uses one kubeconfig).
    #[arg(long, value_name = "FILE")]
    pub authentication_kubeconfig: Option<PathBuf>,

    /// Alias of --kubeconfig (for SubjectAccessReviews; scrape-guard uses one kubeconfig).
    #[arg(long, value_name = "FILE")]
    pub authorization_kubeconfig: Option<PathBuf>,

    /// Alias of --auth-cache-ttl and --auth-negative-cache-ttl together (the apiserver
    /// caches both answers this long).
    #[arg(long, value_name = "DURATION", value_parser = parse_go_duration)]
    pub authentication_token_webhook_cache_ttl: Option<Duration>,

    /// Alias of --authz-allow-ttl.
    #[arg(long, value_name = "DURATION", value_parser = parse_go_duration)]
    pub authorization_webhook_cache_authorized_ttl: Option<Duration>,

    /// Alias of --authz-deny-ttl.
    #[arg(long, value_name = "DURATION", value_parser = parse_go_duration)]
    pub authorization_webhook_cache_unauthorized_ttl: Option<Duration>,

    /// Accepted, no effect: scrape-guard never looks up front-proxy configuration in the
    /// cluster, so there is no lookup to fail.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = parse_go_bool, value_name = "BOOL")]
    pub authentication_tolerate_lookup_failure: Option<bool>,

    /// Accepted, no effect: scrape-guard never looks up front-proxy configuration in the
    /// cluster (the lookup is always skipped).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = parse_go_bool, value_name = "BOOL")]
    pub authentication_skip_lookup: Option<bool>,

    /// Another serving pair, for the names after ':' (`*.example.com`: one label) or
    /// else its certificate's DNS names and CN, chosen by the name a client asks for
    /// (SNI): exact before wildcard, given names before the certificate's, earlier flags
    /// first. No match or no SNI: the default pair. Repeatable; reloaded on change.
    #[arg(long, value_name = "CERT,KEY[:NAMES]")]
    pub tls_sni_cert_key: Vec<String>,

    /// Refused: the port is bound by one process.
    #[arg(long, hide = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = parse_go_bool)]
    pub permit_port_sharing: Option<bool>,

    /// Refused: see --ignore-paths.
    #[arg(long, hide = true, value_delimiter = ',')]
    pub authorization_always_allow_paths: Vec<String>,

    #[arg(long, hide = true)]
    pub requestheader_client_ca_file: Option<String>,
    #[arg(long, hide = true, value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,
    #[arg(long, hide = true, value_delimiter = ',')]
    pub requestheader_username_headers: Vec<String>,
    #[arg(long, hide = true, value_delimiter = ',')]
    pub requestheader_group_headers: Vec<String>,
    #[arg(long, hide = true, value_delimiter = ',')]
    pub requestheader_extra_headers_prefix: Vec<String>,
    #[arg(long, hide = true, value_delimiter = ',')]
    pub requestheader_uid_headers: Vec<String>,
}

impl ApiserverArgs {
    /// The flags that cannot be honoured, each with what to use instead.
    pub(crate) fn refused(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.permit_port_sharing == Some(true) {
            problems.push(
                "--permit-port-sharing is not supported: scrape-guard binds its port alone; run \
                 one proxy per port (--secure-listen-address)"
                    .to_owned(),
            );
        }
        if !self.authorization_always_allow_paths.is_empty() {
            problems.push(
                "--authorization-always-allow-paths is not supported (kube-rbac-proxy refuses it \
                 too): use --ignore-paths for paths forwarded without authentication"
                    .to_owned(),
            );
        }
        let requestheader = [
            (
                "--requestheader-client-ca-file",
                self.requestheader_client_ca_file.is_some(),
            ),
            (
                "--requestheader-allowed-names",
                !self.requestheader_allowed_names.is_empty(),
            ),
            (
                "--requestheader-username-headers",
                !self.requestheader_username_headers.is_empty(),
            ),
            (
                "--requestheader-group-headers",
                !self.requestheader_group_headers.is_empty(),
            ),
            (
                "--requestheader-extra-headers-prefix",
                !self.requestheader_extra_headers_prefix.is_empty(),
            ),
            (
                "--requestheader-uid-headers",
                !self.requestheader_uid_headers.is_empty(),
            ),
        ];
        for (flag, given) in requestheader {
            if given {
                problems.push(format!(
                    "{flag} is not supported: front-proxy (requestheader) authentication is not \
                     implemented; callers authenticate with a bearer token (TokenReview) or a \
                     client certificate (--client-ca-file)"
                ));
            }
        }
        problems
    }
}
