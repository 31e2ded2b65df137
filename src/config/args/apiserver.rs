//! The flags of kube-rbac-proxy's planned rewrite (its `sig-auth-acceptance` branch),
//! which reuses k8s.io/apiserver's secure-serving and delegating authentication and
//! authorization options. Those that mean what a scrape-guard flag means are aliases
//! of it (`config/dialect.rs` resolves them and refuses contradictions);
//! `--tls-sni-cert-key` is served as k8s.io/apiserver serves it (`tls/sni.rs`); front-proxy
//! authentication and the cluster lookup are settings of their own (`FrontProxyArgs`,
//! `config/front_proxy.rs`); the rest are refused with what to use instead.

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

    /// Front-proxy (requestheader) authentication and the cluster lookup.
    #[command(flatten)]
    pub front_proxy: FrontProxyArgs,

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
        problems
    }
}

/// k8s.io/apiserver's front-proxy (requestheader) flags and its lookup of the cluster's
/// authentication settings (`authn::lookup`, docs/front-proxy.md).
#[derive(Debug, Default, ClapArgs)]
#[command(
    next_help_heading = "Compatibility: front-proxy authentication and the cluster lookup (k8s.io/apiserver flags)"
)]
pub struct FrontProxyArgs {
    /// CA bundle of front proxies: a client certificate it verifies, with an allowed
    /// CN, may name the user in the headers below. Without it: the cluster's, if looked
    /// up.
    #[arg(long, value_name = "FILE")]
    pub requestheader_client_ca_file: Option<String>,

    /// CNs a front proxy's certificate may have; empty: any it verifies.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub requestheader_allowed_names: Vec<String>,

    /// Headers naming the user, the first one set wins [default: x-remote-user].
    #[arg(long, value_delimiter = ',', value_name = "HEADERS")]
    pub requestheader_username_headers: Vec<String>,

    /// Headers naming the groups, every value of each [default: x-remote-group].
    #[arg(long, value_delimiter = ',', value_name = "HEADERS")]
    pub requestheader_group_headers: Vec<String>,

    /// Prefixes of headers naming extras (the rest of the name, lowercased and
    /// %-unescaped, is the key) [default: x-remote-extra-].
    #[arg(long, value_delimiter = ',', value_name = "PREFIXES")]
    pub requestheader_extra_headers_prefix: Vec<String>,

    /// Headers naming the uid, the first one set wins [default: none].
    #[arg(long, value_delimiter = ',', value_name = "HEADERS")]
    pub requestheader_uid_headers: Vec<String>,

    /// Do not read kube-system/extension-apiserver-authentication. The lookup happens
    /// only for an invocation in kube-rbac-proxy's rewrite's flags (any flag of this
    /// dialect, =false included), as that rewrite does; never for v0.x flags.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = parse_go_bool, value_name = "BOOL")]
    pub authentication_skip_lookup: Option<bool>,

    /// A failed first read of the cluster's settings is a warning, not a startup error
    /// (an absent ConfigMap never is one).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = parse_go_bool, value_name = "BOOL")]
    pub authentication_tolerate_lookup_failure: Option<bool>,
}

impl ApiserverArgs {
    /// Whether any flag of this dialect was given: kube-rbac-proxy v0.x refuses every
    /// one of them, so such an invocation is written for its rewrite.
    pub(crate) fn any_given(&self) -> bool {
        let Self {
            bind_address,
            secure_port,
            cert_dir,
            http2_max_streams_per_connection,
            disable_http2_serving,
            authentication_kubeconfig,
            authorization_kubeconfig,
            authentication_token_webhook_cache_ttl,
            authorization_webhook_cache_authorized_ttl,
            authorization_webhook_cache_unauthorized_ttl,
            front_proxy,
            tls_sni_cert_key,
            permit_port_sharing,
            authorization_always_allow_paths,
        } = self;
        let FrontProxyArgs {
            requestheader_client_ca_file,
            requestheader_allowed_names,
            requestheader_username_headers,
            requestheader_group_headers,
            requestheader_extra_headers_prefix,
            requestheader_uid_headers,
            authentication_skip_lookup,
            authentication_tolerate_lookup_failure,
        } = front_proxy;
        bind_address.is_some()
            || secure_port.is_some()
            || cert_dir.is_some()
            || http2_max_streams_per_connection.is_some()
            || disable_http2_serving.is_some()
            || authentication_kubeconfig.is_some()
            || authorization_kubeconfig.is_some()
            || authentication_token_webhook_cache_ttl.is_some()
            || authorization_webhook_cache_authorized_ttl.is_some()
            || authorization_webhook_cache_unauthorized_ttl.is_some()
            || !tls_sni_cert_key.is_empty()
            || permit_port_sharing.is_some()
            || !authorization_always_allow_paths.is_empty()
            || requestheader_client_ca_file.is_some()
            || !requestheader_allowed_names.is_empty()
            || !requestheader_username_headers.is_empty()
            || !requestheader_group_headers.is_empty()
            || !requestheader_extra_headers_prefix.is_empty()
            || !requestheader_uid_headers.is_empty()
            || authentication_skip_lookup.is_some()
            || authentication_tolerate_lookup_failure.is_some()
    }
}
