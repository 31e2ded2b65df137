//! The command line, as clap definitions: every flag, its env var, default and group.
//! Validation into a `Config` is in `config.rs`; Go-compatible value parsers in `go.rs`.

mod apiserver;
mod audit;
mod deckhouse;
mod endpoint;
mod legacy;
mod oidc;
mod short_help;
mod version;

use std::{path::PathBuf, time::Duration};

use clap::{ArgAction, Args as ClapArgs, Parser};

use self::version::parse_version_flag;
pub use self::version::VersionFlag;
pub(super) use self::{
    apiserver::{ApiserverArgs, FrontProxyArgs},
    audit::AuditArgs,
    deckhouse::DeckhouseArgs,
    endpoint::AuthEndpointArgs,
    legacy::LegacyArgs,
    oidc::OidcArgs,
};
use super::go::{parse_go_bool, parse_go_duration, parse_listen_address, ListenAddress};

/// scrape-guard: a kube-rbac-proxy compatible auth proxy for Prometheus exporters.
///
/// Terminates TLS, authenticates bearer tokens with a TokenReview, authorizes them with a
/// SubjectAccessReview (`get` on the request path), caches both answers and forwards
/// allowed requests to --upstream.
#[derive(Debug, Parser)]
#[command(
    name = "scrape-guard",
    about,
    long_about,
    max_term_width = 100,
    disable_version_flag = true,
    args_override_self = true
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
    pub oidc: OidcArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub endpoint: AuthEndpointArgs,
    #[command(flatten)]
    pub logging: LoggingArgs,
    #[command(flatten)]
    pub legacy: LegacyArgs,
    #[command(flatten)]
    pub apiserver: ApiserverArgs,
    #[command(flatten)]
    pub deckhouse: DeckhouseArgs,
    #[command(flatten)]
    pub audit: AuditArgs,
}

// The command line: the proxy (no subcommand) or a helper command.
/// scrape-guard: a kube-rbac-proxy compatible auth proxy for Prometheus exporters.
///
/// Terminates TLS, authenticates bearer tokens with a TokenReview, authorizes them with a
/// SubjectAccessReview (`get` on the request path), caches both answers and forwards
/// allowed requests to --upstream, the one flag that is required. For example:
///
///   scrape-guard --upstream=http://127.0.0.1:9100/ --secure-listen-address=:8443
#[derive(Debug, Parser)]
#[command(
    name = "scrape-guard",
    about,
    long_about,
    max_term_width = 100,
    args_conflicts_with_subcommands = true,
    override_usage = "scrape-guard --upstream=URL [OPTIONS]\n       scrape-guard <COMMAND>",
    disable_version_flag = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Print "scrape-guard vX.Y.Z" and exit, as kube-rbac-proxy prints its own;
    /// --version=raw prints the build in Go's version.Info form; --version=vX.Y.Z... is
    /// accepted when X.Y.Z is scrape-guard's own, as k8s.io/component-base accepts it.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = parse_version_flag, value_name = "true|raw|vX.Y.Z")]
    pub version: Option<VersionFlag>,
    #[command(flatten)]
    pub args: Args,
}

/// Helper commands: the 403 doctor.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Would this token (or user) be allowed? Exit 0 allowed, 1 denied, 2 error.
    ///
    /// Runs the proxy's own authentication and authorization chain and explains the
    /// decision on stderr; when denied, prints the RBAC that would allow it, alone, on
    /// stdout (`| kubectl apply -f -`, or `>> rbac.yaml` for an --rbac-file).
    #[command(name = "can-i")]
    CanI(Box<CanIArgs>),
    /// Print the ClusterRole and ClusterRoleBinding that let a subject scrape paths.
    Rbac(RbacArgs),
}

/// `scrape-guard can-i`.
#[derive(Debug, ClapArgs)]
#[command(group = clap::ArgGroup::new("who").required(true).args(["token_file", "as_user"]))]
pub struct CanIArgs {
    /// File holding the bearer token to check (e.g. a service account token).
    #[arg(long, value_name = "FILE", conflicts_with = "as_user")]
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
    /// A request header, for a config file's rewrites (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// The proxy's --livez-path, if it has one: answered OK there, not authorized.
    #[arg(long, value_name = "PATH")]
    pub livez_path: Option<String>,

    /// Deckhouse's config, read as the proxy reads it: its `upstreams:` route the path.
    #[arg(long, env = "KUBE_RBAC_PROXY_CONFIG", hide = true, value_name = "YAML")]
    pub kube_rbac_proxy_config: Option<String>,
    /// Boxed: it would make `can-i` the large variant of `Command`.
    #[command(flatten)]
    pub oidc: Box<OidcArgs>,
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
    /// "localhost:8443". Default: 0.0.0.0:8443.
    #[arg(long, env = "SCRAPE_GUARD_SECURE_LISTEN_ADDRESS", value_name = "ADDRESS", value_parser = parse_listen_address)]
    pub secure_listen_address: Option<ListenAddress>,

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

    /// `--tls-sni-cert-key` (a k8s.io/apiserver flag, `apiserver.rs`), moved here by
    /// `dialect::resolve`: the flags' listener's SNI pairs.
    #[arg(skip)]
    pub tls_sni_cert_key: Vec<String>,

    /// Minimum TLS version: VersionTLS12 or VersionTLS13. VersionTLS10 and VersionTLS11
    /// serve TLS 1.2 and up, with a warning (rustls has neither).
    #[arg(
        long,
        env = "SCRAPE_GUARD_TLS_MIN_VERSION",
        default_value = "VersionTLS12"
    )]
    pub tls_min_version: String,

    /// Comma-separated TLS 1.2 cipher suites (Go/IANA names). TLS 1.3 suites are always
    /// enabled, as in Go. Listed CBC, static-RSA, 3DES and RC4 suites are left out with a
    /// warning (rustls has none). Default: rustls' ECDHE AEAD suites. The server chooses
    /// in Go's order, not the client's: AES-128-GCM, AES-256-GCM, then ChaCha20.
    #[arg(
        long,
        env = "SCRAPE_GUARD_TLS_CIPHER_SUITES",
        value_delimiter = ',',
        value_name = "NAMES"
    )]
    pub tls_cipher_suites: Vec<String>,

    /// Comma-separated key exchanges (Go names or IDs): X25519MLKEM768,
    /// SecP256r1MLKEM768, X25519, CurveP256, CurveP384 (CurveP521: not in this build).
    /// The client's order decides among them. Default: Go's, post-quantum hybrids first.
    #[arg(
        long,
        env = "SCRAPE_GUARD_TLS_CURVE_PREFERENCES",
        value_delimiter = ',',
        value_name = "NAMES"
    )]
    pub tls_curve_preferences: Vec<String>,

    /// Serve HTTP/1.1 only (no h2 in ALPN). Default: false.
    #[arg(long, env = "SCRAPE_GUARD_HTTP2_DISABLE", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL")]
    pub http2_disable: Option<bool>,

    /// Maximum concurrent HTTP/2 streams per connection. Default: 100.
    #[arg(
        long,
        env = "SCRAPE_GUARD_HTTP2_MAX_CONCURRENT_STREAMS",
        value_name = "N"
    )]
    pub http2_max_concurrent_streams: Option<u32>,

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

    /// Client connections served at once. At the limit a new one takes the slot of the
    /// connection that has done least for us (still in its TLS handshake, or idle
    /// longest without an authenticated request, from the address holding the most);
    /// it waits in the listen backlog only while every slot serves authenticated
    /// requests.
    #[arg(long, env = "SCRAPE_GUARD_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Of --max-connections, how many one client address may hold at once; past it, a
    /// new one takes the slot of that address's least useful connection, or is closed
    /// if all of them are in use. 0 = three quarters of --max-connections, so a quarter
    /// is always left to other clients.
    #[arg(
        long,
        env = "SCRAPE_GUARD_MAX_CONNECTIONS_PER_PEER",
        default_value_t = 0
    )]
    pub max_connections_per_peer: usize,

    /// Threads serving connections; fewer if fewer CPUs are available (a container's
    /// CPU limit counts). Every thread adds allocator memory, so a sidecar on a big
    /// node without a CPU limit must not start one per core.
    #[arg(long, env = "SCRAPE_GUARD_WORKER_THREADS", default_value_t = 2)]
    pub worker_threads: usize,

    /// Time to complete the TLS handshake, and then to send the first byte.
    #[arg(long, env = "SCRAPE_GUARD_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_go_duration)]
    pub tls_handshake_timeout: Duration,

    /// Time to send a request's headers, from their first byte. (How long a kept-alive
    /// connection may wait for that byte is --idle-timeout.)
    #[arg(long, env = "SCRAPE_GUARD_HEADER_READ_TIMEOUT", default_value = "60s", value_parser = parse_go_duration)]
    pub header_read_timeout: Duration,

    /// A connection with no request in flight for this long is closed (HTTP/2 with a
    /// GOAWAY; keep-alive PINGs do not count), and so is one whose client has taken no
    /// byte of a response for this long. Longer than Prometheus keeps an idle
    /// connection (5m), so that a scrape every 30-120 s never pays a new handshake.
    #[arg(long, env = "SCRAPE_GUARD_IDLE_TIMEOUT", default_value = "6m", value_parser = parse_go_duration)]
    pub idle_timeout: Duration,

    /// Port for /healthz, /readyz and scrape-guard's own /metrics (authorized like a
    /// scrape); TLS, same host as --secure-listen-address. 0 turns it off.
    #[arg(long, env = "SCRAPE_GUARD_PROXY_ENDPOINTS_PORT", default_value_t = 0)]
    pub proxy_endpoints_port: u16,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[arg(long, env = "SCRAPE_GUARD_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_go_duration)]
    pub shutdown_grace: Duration,

    /// YAML file of more listeners, each with its own address, upstream, TLS files, paths,
    /// identity headers and authorization (a kube-rbac-proxy config file's
    /// `authorization:` block); they share the apiserver client, its rate limit and the
    /// caches. With --upstream the flags define one more, named "default". Read at
    /// startup; each listener's authorization and files are reloaded on change.
    #[arg(long, env = "SCRAPE_GUARD_LISTENERS_FILE", value_name = "FILE")]
    pub listeners_file: Option<PathBuf>,
}

/// The defaults of the flags a listener in `--listeners-file` can set too.
pub(super) mod defaults {
    pub(in crate::config) const UPSTREAM_TIMEOUT: &str = "30s";
    pub(in crate::config) const USER_HEADER: &str = "x-remote-user";
    pub(in crate::config) const GROUPS_HEADER: &str = "x-remote-groups";
    pub(in crate::config) const GROUPS_SEPARATOR: &str = "|";
}

/// Where allowed requests go, and what they carry.
#[derive(Debug, ClapArgs)]
#[command(next_help_heading = "Upstream")]
pub struct UpstreamArgs {
    /// The exporter: http:// or https:// URL, optionally with a base path
    /// ("http://127.0.0.1:9100/"), or a Unix socket ("unix:///run/exporter.sock").
    /// The request path is appended, the query kept. Not needed when the config has
    /// Deckhouse's upstreams: (routes by path, docs/upstreams.md).
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
    #[arg(long, env = "SCRAPE_GUARD_UPSTREAM_TIMEOUT", default_value = defaults::UPSTREAM_TIMEOUT, value_parser = parse_go_duration)]
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
        default_value = defaults::USER_HEADER
    )]
    pub auth_header_user_field_name: String,

    /// Header carrying the groups. Client-sent copies are always removed.
    #[arg(
        long,
        env = "SCRAPE_GUARD_AUTH_HEADER_GROUPS_FIELD_NAME",
        default_value = defaults::GROUPS_HEADER
    )]
    pub auth_header_groups_field_name: String,

    /// Separator between groups in the groups header.
    #[arg(
        long,
        env = "SCRAPE_GUARD_AUTH_HEADER_GROUPS_FIELD_SEPARATOR",
        default_value = defaults::GROUPS_SEPARATOR
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

    /// Reviews waiting or in flight for one client address (an IPv6 /64; on the auth
    /// endpoint, the fronting proxy's client from X-Forwarded-For); more are answered
    /// 503 at once. Waiting reviews take turns by client address. Raise it when every
    /// client arrives from one address (a service mesh sidecar, SNAT).
    #[arg(long, env = "SCRAPE_GUARD_MAX_REVIEWS_PER_PEER", default_value_t = 8)]
    pub max_reviews_per_peer: usize,

    /// How service-account tokens are verified: tokenreview (a TokenReview for each new
    /// token) or local (against the cluster issuer's keys, read from the apiserver; any
    /// other token still gets a TokenReview). Local accepts the token of a deleted pod or
    /// service account until it expires: see docs/service-account-tokens.md.
    #[arg(
        long,
        env = "SCRAPE_GUARD_SERVICE_ACCOUNT_TOKEN_VERIFICATION",
        default_value = "tokenreview",
        value_parser = clap::builder::PossibleValuesParser::new(["tokenreview", "local"]),
        value_name = "tokenreview|local"
    )]
    pub service_account_token_verification: String,

    /// With --service-account-token-verification=local: the longest lifetime (from iat
    /// to exp, or to warnafter) of a token verified locally; longer-lived tokens get a
    /// TokenReview. Default: 2h.
    #[arg(long, env = "SCRAPE_GUARD_SERVICE_ACCOUNT_TOKEN_MAX_LIFETIME", value_name = "DURATION", value_parser = parse_go_duration)]
    pub service_account_token_max_lifetime: Option<Duration>,
}

/// Local authentication and authorization: kube-rbac-proxy's config file, the
/// cluster's RBAC objects, kube-apiserver's static token file.
#[derive(Debug, Clone, Default, ClapArgs)]
#[command(next_help_heading = "Policy")]
pub struct PolicyArgs {
    /// kube-rbac-proxy authorization config (resourceAttributes, rewrites, static
    /// rules). Reloaded on change. Deckhouse's upstreams: and excludePaths are read too;
    /// KUBE_RBAC_PROXY_CONFIG, when set, is read instead.
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
    /// How long a successful TokenReview is reused. Default: 2m.
    #[arg(long, env = "SCRAPE_GUARD_AUTH_CACHE_TTL", value_name = "DURATION", value_parser = parse_go_duration)]
    pub auth_cache_ttl: Option<Duration>,

    /// How long a rejected token stays rejected without asking again. Default: 10s.
    #[arg(long, env = "SCRAPE_GUARD_AUTH_NEGATIVE_CACHE_TTL", value_name = "DURATION", value_parser = parse_go_duration)]
    pub auth_negative_cache_ttl: Option<Duration>,

    /// How long an allowing SubjectAccessReview is reused. Default: 5m.
    #[arg(long, env = "SCRAPE_GUARD_AUTHZ_ALLOW_TTL", value_name = "DURATION", value_parser = parse_go_duration)]
    pub authz_allow_ttl: Option<Duration>,

    /// How long a denying SubjectAccessReview is reused. Default: 30s.
    #[arg(long, env = "SCRAPE_GUARD_AUTHZ_DENY_TTL", value_name = "DURATION", value_parser = parse_go_duration)]
    pub authz_deny_ttl: Option<Duration>,

    /// Entries per cache (tokens, decisions); the bound that keeps memory flat.
    #[arg(long, env = "SCRAPE_GUARD_CACHE_MAX_ENTRIES", default_value_t = 65536)]
    pub cache_max_entries: u64,

    /// When the apiserver cannot answer (an error or a timeout; not a review the
    /// proxy's own limits refused to send), reuse an authentication or allow that
    /// expired less than this long ago (logged and counted). Denies and unknown tokens
    /// never are. 0 = off.
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
