//! Command-line flags (kube-rbac-proxy compatible) and their validation into a `Config`.
//!
//! Manifests written for kube-rbac-proxy must start scrape-guard unchanged, so flag
//! names, Go's `--flag=value`/`--flag value` forms, Go booleans (`--flag`,
//! `--flag=false`), comma lists, Go durations and Go listen addresses (`:8443`,
//! `[$(IP)]:9100`) are all accepted. klog's logging flags are accepted and ignored with
//! one warning. Flags we cannot honour safely (`--insecure-listen-address`, `--oidc-*`)
//! are a startup error rather than silently ignored: ignoring an auth flag fails open.
//!
//! Validation collects every problem and reports them together, each naming its flag.

use std::{fmt, path::PathBuf, time::Duration};

use clap::{ArgAction, Args as ClapArgs, Parser};
use http::Uri;

use crate::{paths::PathPolicy, tls::TlsPolicy, upstream::UpstreamOptions};

/// scrape-guard: a kube-rbac-proxy compatible auth proxy for Prometheus exporters.
///
/// Terminates TLS, authenticates bearer tokens with a TokenReview, authorizes them with a
/// SubjectAccessReview (`get` on the request path), caches both answers and forwards
/// allowed requests to --upstream.
#[derive(Debug, Parser)]
#[command(
    name = "scrape-guard",
    version,
    about,
    long_about,
    max_term_width = 100
)]
pub struct Args {
    #[command(flatten)]
    pub serving: ServingArgs,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub logging: LoggingArgs,
    #[command(flatten)]
    pub legacy: LegacyArgs,
}

// The command line: the proxy (no subcommand) or a helper command.
/// scrape-guard: a kube-rbac-proxy compatible auth proxy for Prometheus exporters.
///
/// Terminates TLS, authenticates bearer tokens with a TokenReview, authorizes them with a
/// SubjectAccessReview (`get` on the request path), caches both answers and forwards
/// allowed requests to --upstream.
#[derive(Debug, Parser)]
#[command(
    name = "scrape-guard",
    version,
    about,
    long_about,
    max_term_width = 100,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub args: Args,
}

/// Helper commands: the 403 doctor.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Would this token (or user) be allowed? Runs the proxy's own authentication and
    /// authorization chain, explains the decision and, when denied, prints the RBAC
    /// that would allow it. Exit 0 allowed, 1 denied, 2 error.
    #[command(name = "can-i")]
    CanI(CanIArgs),
    /// Print the ClusterRole and ClusterRoleBinding that let a subject scrape paths.
    Rbac(RbacArgs),
}

/// `scrape-guard can-i`.
#[derive(Debug, ClapArgs)]
pub struct CanIArgs {
    /// File holding the bearer token to check (e.g. a service account token).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "as_user",
        required_unless_present = "as_user"
    )]
    pub token_file: Option<PathBuf>,
    /// Check a user name instead of a token (no authentication step).
    #[arg(long = "as", value_name = "USER")]
    pub as_user: Option<String>,
    /// Groups of the --as user (repeatable or comma-separated).
    #[arg(
        long = "as-group",
        value_name = "GROUP",
        value_delimiter = ',',
        requires = "as_user"
    )]
    pub as_groups: Vec<String>,
    /// The request path.
    #[arg(long, default_value = "/metrics")]
    pub path: String,
    /// The verb (get for GET/HEAD, create for POST, ...).
    #[arg(long, default_value = "get")]
    pub verb: String,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// `scrape-guard rbac`.
#[derive(Debug, ClapArgs)]
#[command(group = clap::ArgGroup::new("subject").required(true).args(["serviceaccount", "user", "group"]))]
pub struct RbacArgs {
    /// The service account, as NAMESPACE/NAME.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub serviceaccount: Option<String>,
    /// A user name.
    #[arg(long)]
    pub user: Option<String>,
    /// A group name.
    #[arg(long)]
    pub group: Option<String>,
    /// Paths to grant (repeatable). Default: /metrics.
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
    /// The verb to grant.
    #[arg(long, default_value = "get")]
    pub verb: String,
}

/// The TLS listener.
#[derive(Debug, ClapArgs)]
#[command(next_help_heading = "Serving")]
pub struct ServingArgs {
    /// Address to serve TLS on. Go forms work: ":8443", "[::]:8443", "[10.1.2.3]:9100",
    /// "localhost:8443".
    #[arg(long, env = "SCRAPE_GUARD_SECURE_LISTEN_ADDRESS", default_value = "0.0.0.0:8443", value_parser = parse_listen_address)]
    pub secure_listen_address: ListenAddress,

    /// PEM certificate (chain allowed). Without this and --tls-private-key-file a
    /// self-signed certificate is generated in memory.
    #[arg(long, env = "SCRAPE_GUARD_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM CA bundle for client certificates: requested (not required) and verified;
    /// a verified certificate authenticates as CN with groups O. Reloaded on change.
    #[arg(long, env = "SCRAPE_GUARD_CLIENT_CA_FILE", value_name = "FILE")]
    pub client_ca_file: Option<PathBuf>,

    /// PEM private key (RSA, ECDSA or Ed25519; PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SCRAPE_GUARD_TLS_PRIVATE_KEY_FILE", value_name = "FILE")]
    pub tls_private_key_file: Option<PathBuf>,

    /// Minimum TLS version: VersionTLS12 or VersionTLS13.
    #[arg(
        long,
        env = "SCRAPE_GUARD_TLS_MIN_VERSION",
        default_value = "VersionTLS12"
    )]
    pub tls_min_version: String,

    /// Comma-separated TLS 1.2 cipher suites (Go/IANA names). TLS 1.3 suites are always
    /// enabled, as in Go. Default: rustls' ECDHE AEAD suites.
    #[arg(
        long,
        env = "SCRAPE_GUARD_TLS_CIPHER_SUITES",
        value_delimiter = ',',
        value_name = "NAMES"
    )]
    pub tls_cipher_suites: Vec<String>,

    /// Serve HTTP/1.1 only (no h2 in ALPN).
    #[arg(long, env = "SCRAPE_GUARD_HTTP2_DISABLE", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = parse_go_bool,
          action = ArgAction::Set)]
    pub http2_disable: bool,

    /// Maximum concurrent HTTP/2 streams per connection.
    #[arg(
        long,
        env = "SCRAPE_GUARD_HTTP2_MAX_CONCURRENT_STREAMS",
        default_value_t = 100
    )]
    pub http2_max_concurrent_streams: u32,

    /// Bytes accepted per HTTP/2 frame and buffered per stream (16384 to 16777215 for
    /// the frame size).
    #[arg(long, env = "SCRAPE_GUARD_HTTP2_MAX_SIZE", default_value_t = 262_144)]
    pub http2_max_size: u32,

    /// Largest request head (request line and headers) accepted; larger is refused.
    #[arg(
        long,
        env = "SCRAPE_GUARD_MAX_REQUEST_HEADER_BYTES",
        default_value_t = 65_536
    )]
    pub max_request_header_bytes: u32,

    /// Client connections served at once; more wait in the listen backlog.
    #[arg(long, env = "SCRAPE_GUARD_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Port for /healthz and /readyz (TLS, same host as --secure-listen-address).
    /// 0 turns it off.
    #[arg(long, env = "SCRAPE_GUARD_PROXY_ENDPOINTS_PORT", default_value_t = 0)]
    pub proxy_endpoints_port: u16,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[arg(long, env = "SCRAPE_GUARD_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_go_duration)]
    pub shutdown_grace: Duration,
}

/// Where allowed requests go, and what they carry.
#[derive(Debug, ClapArgs)]
#[command(next_help_heading = "Upstream")]
pub struct UpstreamArgs {
    /// The exporter: http:// or https:// URL, optionally with a base path
    /// ("http://127.0.0.1:9100/"), or a Unix socket ("unix:///run/exporter.sock").
    /// The request path is appended, the query kept.
    #[arg(long, env = "SCRAPE_GUARD_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,

    /// PEM CA bundle to verify an https:// upstream (default: the system trust store).
    /// Reloaded on change.
    #[arg(long, env = "SCRAPE_GUARD_UPSTREAM_CA_FILE", value_name = "FILE")]
    pub upstream_ca_file: Option<PathBuf>,

    /// PEM client certificate presented to an https:// upstream; works whether or not an
    /// upstream CA file is given. Reloaded on change.
    #[arg(
        long,
        env = "SCRAPE_GUARD_UPSTREAM_CLIENT_CERT_FILE",
        value_name = "FILE"
    )]
    pub upstream_client_cert_file: Option<PathBuf>,

    /// PEM private key for --upstream-client-cert-file.
    #[arg(
        long,
        env = "SCRAPE_GUARD_UPSTREAM_CLIENT_KEY_FILE",
        value_name = "FILE"
    )]
    pub upstream_client_key_file: Option<PathBuf>,

    /// Speak HTTP/2 without TLS (h2c, prior knowledge) to an http:// or unix:// upstream.
    #[arg(long, env = "SCRAPE_GUARD_UPSTREAM_FORCE_H2C", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = parse_go_bool,
          action = ArgAction::Set)]
    pub upstream_force_h2c: bool,

    /// How long the upstream may take to send response headers.
    #[arg(long, env = "SCRAPE_GUARD_UPSTREAM_TIMEOUT", default_value = "30s", value_parser = parse_go_duration)]
    pub upstream_timeout: Duration,

    /// Comma-separated Go path.Match globs; other paths get 404 before authentication.
    #[arg(
        long,
        env = "SCRAPE_GUARD_ALLOW_PATHS",
        value_delimiter = ',',
        value_name = "GLOBS"
    )]
    pub allow_paths: Vec<String>,

    /// Comma-separated Go path.Match globs forwarded WITHOUT authentication.
    #[arg(
        long,
        env = "SCRAPE_GUARD_IGNORE_PATHS",
        value_delimiter = ',',
        value_name = "GLOBS"
    )]
    pub ignore_paths: Vec<String>,

    /// Tell the upstream who the caller is, in the two headers below.
    #[arg(long, env = "SCRAPE_GUARD_AUTH_HEADER_FIELDS_ENABLED", num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub auth_header_fields_enabled: bool,

    /// Header carrying the user name. Client-sent copies are always removed.
    #[arg(
        long,
        env = "SCRAPE_GUARD_AUTH_HEADER_USER_FIELD_NAME",
        default_value = "x-remote-user"
    )]
    pub auth_header_user_field_name: String,

    /// Header carrying the groups. Client-sent copies are always removed.
    #[arg(
        long,
        env = "SCRAPE_GUARD_AUTH_HEADER_GROUPS_FIELD_NAME",
        default_value = "x-remote-groups"
    )]
    pub auth_header_groups_field_name: String,

    /// Separator between groups in the groups header.
    #[arg(
        long,
        env = "SCRAPE_GUARD_AUTH_HEADER_GROUPS_FIELD_SEPARATOR",
        default_value = "|"
    )]
    pub auth_header_groups_field_separator: String,
}

/// How the apiserver is reached.
#[derive(Debug, Clone, ClapArgs)]
#[command(next_help_heading = "Kubernetes API")]
pub struct KubeArgs {
    /// Kubeconfig file. Default: in-cluster config, else $KUBECONFIG or ~/.kube/config.
    #[arg(long, env = "SCRAPE_GUARD_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Reviews per second sent to the apiserver. 0 = client-go's default (5);
    /// negative = unlimited.
    #[arg(
        long,
        env = "SCRAPE_GUARD_KUBE_API_QPS",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub kube_api_qps: f32,

    /// Burst above --kube-api-qps. 0 = client-go's default (10).
    #[arg(long, env = "SCRAPE_GUARD_KUBE_API_BURST", default_value_t = 0)]
    pub kube_api_burst: u32,

    /// Comma-separated audiences sent in each TokenReview; a token whose reviewed
    /// audiences do not intersect them is rejected.
    #[arg(
        long,
        env = "SCRAPE_GUARD_AUTH_TOKEN_AUDIENCES",
        value_delimiter = ',',
        value_name = "AUDIENCES"
    )]
    pub auth_token_audiences: Vec<String>,

    /// Time budget for one review, including waiting for --kube-api-qps, a slot and
    /// retries (429/5xx/connection errors, jittered backoff).
    #[arg(long, env = "SCRAPE_GUARD_APISERVER_TIMEOUT", default_value = "5s", value_parser = parse_go_duration)]
    pub apiserver_timeout: Duration,

    /// Reviews in flight at once; more wait within --apiserver-timeout.
    #[arg(long, env = "SCRAPE_GUARD_MAX_INFLIGHT_REVIEWS", default_value_t = 64)]
    pub max_inflight_reviews: usize,
}

/// Local authentication and authorization: kube-rbac-proxy's config file, the
/// cluster's RBAC objects, kube-apiserver's static token file.
#[derive(Debug, Clone, Default, ClapArgs)]
#[command(next_help_heading = "Policy")]
pub struct PolicyArgs {
    /// kube-rbac-proxy authorization config (resourceAttributes, rewrites, static
    /// rules). Reloaded on change.
    #[arg(long, env = "SCRAPE_GUARD_CONFIG_FILE", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// Kubernetes RBAC YAML (Role, ClusterRole and bindings) evaluated locally; an
    /// allow needs no SubjectAccessReview. Repeatable or comma-separated. Reloaded on change.
    #[arg(
        long,
        env = "SCRAPE_GUARD_RBAC_FILE",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    pub rbac_file: Vec<PathBuf>,

    /// kube-apiserver static token CSV (token,user,uid,"group1,group2"), checked before
    /// TokenReview. With it and no kubeconfig outside a cluster: standalone, offline.
    #[arg(long, env = "SCRAPE_GUARD_TOKEN_AUTH_FILE", value_name = "FILE")]
    pub token_auth_file: Option<PathBuf>,
}

/// How long answers are reused.
#[derive(Debug, ClapArgs)]
#[command(next_help_heading = "Caching")]
pub struct CacheArgs {
    /// How long a successful TokenReview is reused.
    #[arg(long, env = "SCRAPE_GUARD_AUTH_CACHE_TTL", default_value = "2m", value_parser = parse_go_duration)]
    pub auth_cache_ttl: Duration,

    /// How long a rejected token stays rejected without asking again.
    #[arg(long, env = "SCRAPE_GUARD_AUTH_NEGATIVE_CACHE_TTL", default_value = "10s", value_parser = parse_go_duration)]
    pub auth_negative_cache_ttl: Duration,

    /// How long an allowing SubjectAccessReview is reused.
    #[arg(long, env = "SCRAPE_GUARD_AUTHZ_ALLOW_TTL", default_value = "5m", value_parser = parse_go_duration)]
    pub authz_allow_ttl: Duration,

    /// How long a denying SubjectAccessReview is reused.
    #[arg(long, env = "SCRAPE_GUARD_AUTHZ_DENY_TTL", default_value = "30s", value_parser = parse_go_duration)]
    pub authz_deny_ttl: Duration,

    /// Entries per cache (tokens, decisions); the bound that keeps memory flat.
    #[arg(long, env = "SCRAPE_GUARD_CACHE_MAX_ENTRIES", default_value_t = 65536)]
    pub cache_max_entries: u64,

    /// When the apiserver cannot answer, reuse an authentication or allow that expired
    /// less than this long ago (logged and counted). Denies and unknown tokens never
    /// are. 0 = off.
    #[arg(long, env = "SCRAPE_GUARD_STALE_IF_ERROR", default_value = "0", value_parser = parse_go_duration)]
    pub stale_if_error: Duration,
}

/// What scrape-guard itself prints.
#[derive(Debug, ClapArgs)]
#[command(next_help_heading = "Logging")]
pub struct LoggingArgs {
    /// Log line format: text or json. Level: SCRAPE_GUARD_LOG (e.g. "debug").
    #[arg(long, env = "SCRAPE_GUARD_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    /// One line per request (method, path, status, user, bytes, duration; never a
    /// token), in --log-format.
    #[arg(long, env = "SCRAPE_GUARD_ACCESS_LOG", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = parse_go_bool,
          action = ArgAction::Set)]
    pub access_log: bool,
}

/// kube-rbac-proxy and klog flags that manifests in the wild pass. Accepted so those
/// manifests start; ignored with one warning. The unsupported ones are refused.
#[derive(Debug, ClapArgs)]
#[command(next_help_heading = "Compatibility: accepted and ignored (klog, kube-rbac-proxy)")]
pub struct LegacyArgs {
    /// klog flag; ignored.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL")]
    pub logtostderr: Option<bool>,
    /// klog flag; ignored.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL")]
    pub alsologtostderr: Option<bool>,
    /// klog flag; ignored.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL")]
    pub add_dir_header: Option<bool>,
    /// klog flag; ignored.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL")]
    pub one_output: Option<bool>,
    /// klog flag; ignored.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL")]
    pub skip_headers: Option<bool>,
    /// klog flag; ignored.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL")]
    pub skip_log_headers: Option<bool>,
    /// klog flag; ignored.
    #[arg(long, value_name = "FILE:N")]
    pub log_backtrace_at: Option<String>,
    /// klog flag; ignored.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<String>,
    /// klog flag; ignored.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<String>,
    /// klog flag; ignored.
    #[arg(long, value_name = "MB")]
    pub log_file_max_size: Option<String>,
    /// klog flag; ignored.
    #[arg(long, value_name = "DURATION")]
    pub log_flush_frequency: Option<String>,
    /// klog flag; ignored.
    #[arg(long, value_name = "LEVEL")]
    pub stderrthreshold: Option<String>,
    /// klog flag; ignored.
    #[arg(short = 'v', long = "v", value_name = "LEVEL")]
    pub v: Option<String>,
    /// klog flag; ignored.
    #[arg(long, value_name = "PATTERN")]
    pub vmodule: Option<String>,
    /// kube-rbac-proxy flag; ignored (certificate files are re-read every 5s).
    #[arg(long, value_name = "DURATION")]
    pub tls_reload_interval: Option<String>,

    /// Not supported: scrape-guard never serves plain HTTP. Startup error.
    #[arg(long, hide = true)]
    pub insecure_listen_address: Option<String>,
    #[arg(long, hide = true)]
    pub oidc_issuer: Option<String>,
    #[arg(long = "oidc-clientID", hide = true)]
    pub oidc_client_id: Option<String>,
    #[arg(long, hide = true)]
    pub oidc_ca_file: Option<String>,
    #[arg(long, hide = true)]
    pub oidc_username_claim: Option<String>,
    #[arg(long, hide = true)]
    pub oidc_groups_claim: Option<String>,
    #[arg(long, hide = true)]
    pub oidc_username_prefix: Option<String>,
    #[arg(long, hide = true)]
    pub oidc_groups_prefix: Option<String>,
    #[arg(long, hide = true)]
    pub oidc_sign_alg: Option<String>,
}

impl LegacyArgs {
    /// The ignored flags that were given, for the one warning line.
    pub fn ignored(&self) -> Vec<&'static str> {
        let given = [
            ("--logtostderr", self.logtostderr.is_some()),
            ("--alsologtostderr", self.alsologtostderr.is_some()),
            ("--add-dir-header", self.add_dir_header.is_some()),
            ("--one-output", self.one_output.is_some()),
            ("--skip-headers", self.skip_headers.is_some()),
            ("--skip-log-headers", self.skip_log_headers.is_some()),
            ("--log-backtrace-at", self.log_backtrace_at.is_some()),
            ("--log-dir", self.log_dir.is_some()),
            ("--log-file", self.log_file.is_some()),
            ("--log-file-max-size", self.log_file_max_size.is_some()),
            ("--log-flush-frequency", self.log_flush_frequency.is_some()),
            ("--stderrthreshold", self.stderrthreshold.is_some()),
            ("-v", self.v.is_some()),
            ("--vmodule", self.vmodule.is_some()),
            ("--tls-reload-interval", self.tls_reload_interval.is_some()),
        ];
        given
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect()
    }

    fn refused(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.insecure_listen_address.is_some() {
            problems.push(
                "--insecure-listen-address is not supported: scrape-guard only serves TLS \
                 (use --secure-listen-address)"
                    .to_owned(),
            );
        }
        let oidc = [
            ("--oidc-issuer", &self.oidc_issuer),
            ("--oidc-clientID", &self.oidc_client_id),
            ("--oidc-ca-file", &self.oidc_ca_file),
            ("--oidc-username-claim", &self.oidc_username_claim),
            ("--oidc-groups-claim", &self.oidc_groups_claim),
            ("--oidc-username-prefix", &self.oidc_username_prefix),
            ("--oidc-groups-prefix", &self.oidc_groups_prefix),
            ("--oidc-sign-alg", &self.oidc_sign_alg),
        ];
        for (name, value) in oidc {
            if value.is_some() {
                problems.push(format!(
                    "{name} is not supported: OIDC authentication is not implemented; \
                     tokens are authenticated with TokenReview"
                ));
            }
        }
        problems
    }
}

/// The validated configuration `run` works from.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: ListenAddress,
    pub tls: TlsSource,
    pub tls_policy: TlsPolicy,
    pub client_ca_file: Option<PathBuf>,
    pub http2: bool,
    pub http2_max_concurrent_streams: u32,
    pub http2_max_size: u32,
    pub max_request_header_bytes: u32,
    pub max_connections: usize,
    pub proxy_endpoints_port: Option<u16>,
    pub shutdown_grace: Duration,
    pub upstream: Uri,
    pub upstream_options: UpstreamOptions,
    pub upstream_timeout: Duration,
    pub paths: PathPolicy,
    pub identity_headers: IdentityHeaders,
    pub kubeconfig: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    pub rbac_files: Vec<PathBuf>,
    pub token_auth_file: Option<PathBuf>,
    pub rate_limit: RateLimit,
    pub audiences: Vec<String>,
    pub apiserver_timeout: Duration,
    pub ttls: Ttls,
    pub cache_max_entries: u64,
    pub stale_if_error: Duration,
    pub max_inflight_reviews: usize,
    pub access_log: bool,
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned,
}

/// Cache lifetimes, one per kind of answer.
#[derive(Debug, Clone, Copy)]
pub struct Ttls {
    pub authn_ok: Duration,
    pub authn_rejected: Duration,
    pub authz_allow: Duration,
    pub authz_deny: Duration,
}

/// Client-side limit on reviews sent to the apiserver (client-go's QPS/burst).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateLimit {
    Unlimited,
    TokenBucket { qps: f64, burst: u32 },
}

/// Headers that carry the caller's identity upstream. The names are always stripped
/// from client requests; `enabled` decides whether we set them.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub enabled: bool,
    pub user: http::HeaderName,
    pub groups: http::HeaderName,
    pub separator: String,
}

/// Every problem found in the flags, reported together.
#[derive(Debug)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for problem in &self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl TryFrom<Args> for Config {
    type Error = ConfigError;

    fn try_from(args: Args) -> Result<Self, ConfigError> {
        // Destructured in full so that a flag nobody reads is a compile error.
        let Args {
            serving,
            upstream,
            kube,
            policy,
            cache,
            logging,
            legacy,
        } = args;
        let LoggingArgs {
            log_format: _,
            access_log,
        } = logging;
        let PolicyArgs {
            config_file,
            rbac_file,
            token_auth_file,
        } = policy;
        let ServingArgs {
            secure_listen_address,
            tls_cert_file,
            client_ca_file,
            tls_private_key_file,
            tls_min_version,
            tls_cipher_suites,
            http2_disable,
            http2_max_concurrent_streams,
            http2_max_size,
            max_request_header_bytes,
            max_connections,
            proxy_endpoints_port,
            shutdown_grace,
        } = serving;
        let UpstreamArgs {
            upstream,
            upstream_ca_file,
            upstream_client_cert_file,
            upstream_client_key_file,
            upstream_force_h2c,
            upstream_timeout,
            allow_paths,
            ignore_paths,
            auth_header_fields_enabled,
            auth_header_user_field_name,
            auth_header_groups_field_name,
            auth_header_groups_field_separator,
        } = upstream;
        let KubeArgs {
            kubeconfig,
            kube_api_qps,
            kube_api_burst,
            auth_token_audiences,
            apiserver_timeout,
            max_inflight_reviews,
        } = kube;
        let CacheArgs {
            auth_cache_ttl,
            auth_negative_cache_ttl,
            authz_allow_ttl,
            authz_deny_ttl,
            cache_max_entries,
            stale_if_error,
        } = cache;

        let mut problems = legacy.refused();
        let mut check = |result: Result<(), String>| {
            if let Err(problem) = result {
                problems.push(problem);
            }
        };

        let tls = match (tls_cert_file, tls_private_key_file) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            (None, None) => TlsSource::SelfSigned,
            (Some(_), None) => {
                check(Err("--tls-cert-file needs --tls-private-key-file".into()));
                TlsSource::SelfSigned
            }
            (None, Some(_)) => {
                check(Err("--tls-private-key-file needs --tls-cert-file".into()));
                TlsSource::SelfSigned
            }
        };
        let tls_policy = TlsPolicy::from_flags(&tls_min_version, &tls_cipher_suites)
            .unwrap_or_else(|problem| {
                check(Err(problem));
                TlsPolicy::default()
            });

        let (upstream, unix_socket) = match upstream.as_deref().map(parse_upstream) {
            Some(Ok(parsed)) => parsed,
            Some(Err(problem)) => {
                check(Err(problem));
                (Uri::default(), None)
            }
            None => {
                check(Err(
                    "--upstream is required (e.g. http://127.0.0.1:9100/)".into()
                ));
                (Uri::default(), None)
            }
        };
        let https = upstream.scheme_str() == Some("https") && unix_socket.is_none();
        if upstream_ca_file.is_some() && !https {
            check(Err("--upstream-ca-file needs an https:// --upstream".into()));
        }
        let client_cert = match (upstream_client_cert_file, upstream_client_key_file) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                check(Err(
                    "--upstream-client-cert-file needs --upstream-client-key-file".into(),
                ));
                None
            }
            (None, Some(_)) => {
                check(Err(
                    "--upstream-client-key-file needs --upstream-client-cert-file".into(),
                ));
                None
            }
        };
        if client_cert.is_some() && !https {
            check(Err(
                "--upstream-client-cert-file needs an https:// --upstream".into(),
            ));
        }
        if upstream_force_h2c && https {
            check(Err(
                "--upstream-force-h2c is for http:// or unix:// upstreams (https negotiates h2 by ALPN)".into(),
            ));
        }
        let upstream_options = UpstreamOptions {
            ca_file: upstream_ca_file,
            client_cert,
            force_h2c: upstream_force_h2c,
            unix_socket,
        };

        let paths = PathPolicy::new(&allow_paths, &ignore_paths).unwrap_or_else(|problem| {
            check(Err(problem));
            PathPolicy::default()
        });

        let header_name = |flag: &str, value: &str| {
            http::HeaderName::try_from(value.trim())
                .map_err(|_| format!("{flag}: {value:?} is not a valid HTTP header name"))
        };
        let user = header_name(
            "--auth-header-user-field-name",
            &auth_header_user_field_name,
        );
        let groups = header_name(
            "--auth-header-groups-field-name",
            &auth_header_groups_field_name,
        );
        let identity_headers = match (user, groups) {
            (Ok(user), Ok(groups)) => Some(IdentityHeaders {
                enabled: auth_header_fields_enabled,
                user,
                groups,
                separator: auth_header_groups_field_separator,
            }),
            (user, groups) => {
                check(user.map(drop));
                check(groups.map(drop));
                None
            }
        };

        for (flag, value) in [
            ("--apiserver-timeout", apiserver_timeout),
            ("--upstream-timeout", upstream_timeout),
        ] {
            if value.is_zero() {
                check(Err(format!("{flag} must be greater than 0")));
            }
        }
        if max_inflight_reviews == 0 {
            check(Err("--max-inflight-reviews must be at least 1".into()));
        }
        if cache_max_entries == 0 {
            check(Err("--cache-max-entries must be at least 1".into()));
        }
        if !(16_384..=16_777_215).contains(&http2_max_size) {
            check(Err(format!(
                "--http2-max-size {http2_max_size} must be between 16384 and 16777215"
            )));
        }
        if max_request_header_bytes < 8192 {
            check(Err(
                "--max-request-header-bytes must be at least 8192".into()
            ));
        }
        if max_connections == 0 {
            check(Err("--max-connections must be at least 1".into()));
        }
        if http2_max_concurrent_streams == 0 {
            check(Err(
                "--http2-max-concurrent-streams must be at least 1".into()
            ));
        }
        if proxy_endpoints_port != 0 && proxy_endpoints_port == secure_listen_address.port {
            check(Err(format!(
                "--proxy-endpoints-port {proxy_endpoints_port} is the port of \
                 --secure-listen-address"
            )));
        }
        if !kube_api_qps.is_finite() {
            check(Err("--kube-api-qps must be a number".into()));
        }

        let (Some(identity_headers), true) = (identity_headers, problems.is_empty()) else {
            return Err(ConfigError(problems));
        };
        Ok(Config {
            listen: secure_listen_address,
            tls,
            tls_policy,
            client_ca_file,
            http2: !http2_disable,
            http2_max_concurrent_streams,
            http2_max_size,
            max_request_header_bytes,
            max_connections,
            proxy_endpoints_port: (proxy_endpoints_port != 0).then_some(proxy_endpoints_port),
            shutdown_grace,
            upstream,
            upstream_options,
            upstream_timeout,
            paths,
            identity_headers,
            kubeconfig,
            config_file,
            rbac_files: rbac_file,
            token_auth_file,
            rate_limit: RateLimit::from_flags(kube_api_qps, kube_api_burst),
            audiences: auth_token_audiences
                .into_iter()
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect(),
            apiserver_timeout,
            ttls: Ttls {
                authn_ok: auth_cache_ttl,
                authn_rejected: auth_negative_cache_ttl,
                authz_allow: authz_allow_ttl,
                authz_deny: authz_deny_ttl,
            },
            cache_max_entries,
            stale_if_error,
            max_inflight_reviews,
            access_log,
        })
    }
}

impl RateLimit {
    /// client-go semantics: 0 means its defaults (5 QPS, burst 10); negative, no limit.
    pub fn from_flags(qps: f32, burst: u32) -> Self {
        if qps < 0.0 {
            return Self::Unlimited;
        }
        let qps = if qps == 0.0 { 5.0 } else { f64::from(qps) };
        let burst = if burst == 0 { 10 } else { burst };
        Self::TokenBucket { qps, burst }
    }
}

/// A Go `net.Listen` address: host (possibly empty, an IP, or a name) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    /// Empty means every interface, as in Go's ":8443".
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses the forms Go's `net.SplitHostPort` accepts.
pub fn parse_listen_address(s: &str) -> Result<ListenAddress, String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: missing ']' in address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("{s:?}: missing port after ']'"))?;
        (host, port)
    } else {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?}: missing port in address (e.g. :8443)"))?;
        if host.contains(':') {
            return Err(format!(
                "{s:?}: too many colons in address (write IPv6 as [::1]:8443)"
            ));
        }
        (host, port)
    };
    if host.contains(['[', ']', ' ', '/']) {
        return Err(format!("{s:?}: invalid host {host:?}"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("{s:?}: invalid port {port:?}"))?;
    Ok(ListenAddress {
        host: host.to_owned(),
        port,
    })
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (true or false)")),
    }
}

/// Go's `time.ParseDuration` ("1h30m", "1.5s", "250ms"), for non-negative values.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 30s, 2m, 1h30m, 500ms)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(bad());
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// A `--upstream`: an http(s) URL with a host and no user info, or `unix:///socket`
/// (then the requests go to `http://localhost` over that socket).
fn parse_upstream(s: &str) -> Result<(Uri, Option<PathBuf>), String> {
    if let Some(path) = s.strip_prefix("unix://") {
        if !path.starts_with('/') || path.len() < 2 {
            return Err(format!("--upstream {s:?}: want unix:///absolute/path.sock"));
        }
        return Ok((
            Uri::from_static("http://localhost/"),
            Some(PathBuf::from(path)),
        ));
    }
    parse_http_upstream(s).map(|uri| (uri, None))
}

fn parse_http_upstream(s: &str) -> Result<Uri, String> {
    let uri: Uri = s
        .parse()
        .map_err(|e| format!("--upstream {s:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "--upstream {s:?} must start with http:// or https://"
            ))
        }
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("--upstream {s:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "--upstream {s:?}: user info in the URL is not supported"
        ));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["scrape-guard"];
        argv.extend_from_slice(args);
        let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        Config::try_from(args).map_err(|e| e.to_string())
    }

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn listen_addresses_in_every_go_form() {
        let table = [
            (":8443", "", 8443),
            ("0.0.0.0:8443", "0.0.0.0", 8443),
            ("[::]:8443", "::", 8443),
            ("[10.1.2.3]:9100", "10.1.2.3", 9100),
            ("localhost:8443", "localhost", 8443),
            ("[fe80::1%eth0]:1", "fe80::1%eth0", 1),
            ("127.0.0.1:0", "127.0.0.1", 0),
        ];
        for (input, host, port) in table {
            let parsed = parse_listen_address(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                parsed,
                ListenAddress {
                    host: host.into(),
                    port
                },
                "{input}"
            );
        }
        for bad in [
            "8443",
            "::1:8443",
            "[::1]8443",
            "[::1",
            "host:port",
            ":70000",
            "",
        ] {
            assert!(parse_listen_address(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn go_booleans() {
        for yes in ["1", "t", "T", "true", "TRUE", "True"] {
            assert_eq!(parse_go_bool(yes), Ok(true), "{yes}");
        }
        for no in ["0", "f", "F", "false", "FALSE", "False"] {
            assert_eq!(parse_go_bool(no), Ok(false), "{no}");
        }
        assert!(parse_go_bool("yes").is_err());
    }

    #[test]
    fn go_durations() {
        let table = [
            ("0", 0.0),
            ("2m", 120.0),
            ("10s", 10.0),
            ("1h30m", 5400.0),
            ("1.5s", 1.5),
            ("250ms", 0.25),
            ("100us", 0.0001),
        ];
        for (input, seconds) in table {
            let parsed = parse_go_duration(input).unwrap_or_else(|e| panic!("{e}"));
            assert!((parsed.as_secs_f64() - seconds).abs() < 1e-9, "{input}");
        }
        for bad in ["", "-1s", "10", "1d", "s", "1.2.3s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let config = parse(&["--upstream=http://127.0.0.1:9100/"]).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:8443");
        assert!(matches!(config.tls, TlsSource::SelfSigned));
        assert!(config.http2);
        assert_eq!(config.http2_max_concurrent_streams, 100);
        assert_eq!(config.proxy_endpoints_port, None);
        assert_eq!(config.ttls.authn_ok, Duration::from_secs(120));
        assert_eq!(config.ttls.authn_rejected, Duration::from_secs(10));
        assert_eq!(config.ttls.authz_allow, Duration::from_secs(300));
        assert_eq!(config.ttls.authz_deny, Duration::from_secs(30));
        assert_eq!(config.cache_max_entries, 65536);
        assert_eq!(config.apiserver_timeout, Duration::from_secs(5));
        assert_eq!(config.upstream_timeout, Duration::from_secs(30));
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
        assert_eq!(
            config.rate_limit,
            RateLimit::TokenBucket {
                qps: 5.0,
                burst: 10
            }
        );
        assert!(!config.identity_headers.enabled);
        assert_eq!(config.identity_headers.user, "x-remote-user");
        assert_eq!(config.identity_headers.groups, "x-remote-groups");
        assert_eq!(config.identity_headers.separator, "|");
    }

    #[test]
    fn kube_prometheus_node_exporter_sidecar_args() {
        let config = parse(&[
            "--logtostderr",
            "--secure-listen-address=[10.1.2.3]:9100",
            "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            "--upstream=http://127.0.0.1:9100/",
        ])
        .unwrap();
        assert_eq!(config.listen.host, "10.1.2.3");
        assert_eq!(config.tls_policy.cipher_suites().len(), 6 + 3);
    }

    #[test]
    fn flag_value_forms_and_go_booleans() {
        let config = parse(&[
            "--upstream",
            "http://127.0.0.1:9100/",
            "--http2-disable",
            "--auth-header-fields-enabled=true",
            "--allow-paths",
            "/metrics,/federate",
            "--auth-token-audiences=a,b",
            "--authz-allow-ttl",
            "1m30s",
            "--kube-api-qps=-1",
        ])
        .unwrap();
        assert!(!config.http2);
        assert!(config.identity_headers.enabled);
        assert_eq!(config.audiences, ["a", "b"]);
        assert_eq!(config.ttls.authz_allow, Duration::from_secs(90));
        assert_eq!(config.rate_limit, RateLimit::Unlimited);

        let config = parse(&[
            "--upstream=http://127.0.0.1:9100/",
            "--http2-disable=false",
            "--auth-header-fields-enabled=0",
        ])
        .unwrap();
        assert!(config.http2);
        assert!(!config.identity_headers.enabled);
    }

    #[test]
    fn klog_flags_are_accepted_and_listed() {
        let args = Args::try_parse_from([
            "scrape-guard",
            "--upstream=http://127.0.0.1:9100/",
            "--logtostderr=true",
            "--alsologtostderr",
            "-v=2",
            "--vmodule=foo=3",
            "--log-dir=/tmp",
            "--log-file=/tmp/x",
            "--skip-headers",
            "--stderrthreshold=ERROR",
            "--tls-reload-interval=1m",
            "--log-flush-frequency=5s",
            "--add-dir-header",
            "--one-output=false",
            "--skip-log-headers",
            "--log-backtrace-at=:0",
            "--log-file-max-size=1800",
        ])
        .unwrap();
        assert_eq!(args.legacy.ignored().len(), 15);
        assert!(Config::try_from(args).is_ok());
        let args =
            Args::try_parse_from(["scrape-guard", "--upstream=http://x/", "--v", "10"]).unwrap();
        assert_eq!(args.legacy.ignored(), ["-v"]);
    }

    #[test]
    fn every_problem_is_reported_at_once_naming_its_flag() {
        let err = parse(&[
            "--insecure-listen-address=0.0.0.0:8080",
            "--oidc-issuer=https://issuer",
            "--tls-cert-file=/x.pem",
            "--tls-min-version=VersionTLS10",
            "--tls-cipher-suites=TLS_RSA_WITH_AES_128_CBC_SHA",
            "--allow-paths=/metrics",
            "--ignore-paths=/healthz",
            "--auth-header-user-field-name=bad header",
            "--apiserver-timeout=0",
        ])
        .unwrap_err();
        for needle in [
            "--insecure-listen-address",
            "--oidc-issuer",
            "--tls-private-key-file",
            "--tls-min-version",
            "TLS_RSA_WITH_AES_128_CBC_SHA",
            "--allow-paths",
            "--auth-header-user-field-name",
            "--apiserver-timeout",
            "--upstream is required",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
    }

    #[test]
    fn upstream_urls() {
        for good in [
            "http://127.0.0.1:9100/",
            "http://127.0.0.1:9100",
            "https://exporter.local:8443/base/",
            "http://[::1]:9100/",
        ] {
            assert!(parse_upstream(good).is_ok(), "{good}");
        }
        for bad in [
            "127.0.0.1:9100",
            "ftp://x/",
            "http:///metrics",
            "http://u:p@x/",
            "/x",
        ] {
            assert!(parse_upstream(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn env_vars_set_flags() {
        // Each flag declares its SCRAPE_GUARD_ variable; check the names are derived
        // consistently rather than mutating the process environment in a test.
        for arg in Args::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if arg
                .get_help_heading()
                .is_some_and(|h| h.starts_with("Compatibility"))
                || arg.is_hide_set()
                || matches!(long, "help" | "version")
            {
                continue;
            }
            let want = format!("SCRAPE_GUARD_{}", long.to_uppercase().replace('-', "_"));
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(env.as_deref(), Some(want.as_str()), "--{long}");
        }
    }
}
