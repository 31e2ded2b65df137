//! Listeners: the one the flags define and those of `--listeners-file`, validated the
//! same way into one `ListenerConfig` each. The file declares more listeners in one
//! process, each with its own address, upstream, TLS files, path policy, identity
//! headers and authorization.
//!
//! ```yaml
//! listeners:
//! - name: main                        # a DNS label: the `listener` metric label and log field
//!   secureListenAddress: ":8443"
//!   upstream: http://127.0.0.1:8081/
//!   tlsCertFile: /etc/tls/tls.crt
//!   tlsPrivateKeyFile: /etc/tls/tls.key
//!   authorization:                    # a kube-rbac-proxy config file's block, unchanged
//!     static: [...]
//! ```
//!
//! Every other key is a per-listener flag's name in camelCase (declared once, with its
//! flag, in `keys.rs`) and takes what the flag takes; the flags not in the table are the process's, shared by every
//! listener. The file is read with kube-rbac-proxy's YAML rules (`yaml.rs`: keys in any
//! case, YAML 1.1), but these keys are ours, so an unknown or repeated one is an error
//! with its line. Each `authorization:` block is kube-rbac-proxy's and is read by
//! `authz` with its rules (an unknown key there is a warning), found by [`locate`] each
//! time the file changes. Everything else is read once, at startup; [`unchanged`] tells
//! a later change to it apart, so that it can be reported rather than silently ignored.

mod file;
mod keys;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use self::file::{declares, decode, Entry};
pub(crate) use self::file::{locate, unchanged, Shape};
pub(super) use self::keys::{key, Key, ListenerArgs, Source};
use self::keys::{Fields, KEYS};

use super::{
    args::{PolicyArgs, ServingArgs, UpstreamArgs},
    go::ListenAddress,
    serving, upstream, Problems,
};
use crate::{
    authz::{self, ConfigSource, PolicySettings},
    paths::PathPolicy,
    reload::Condition,
    routes::Pattern,
    tls::{TlsPolicy, TlsSettings},
    upstream::UpstreamSettings,
};

/// The name of the listener the flags define when `--listeners-file` is given too.
pub(crate) const FLAGS_LISTENER: &str = "default";

/// `--listeners-file`: what is watched once its listeners are served.
#[derive(Debug, Clone)]
pub struct ListenersFile {
    pub path: PathBuf,
    /// What the file said at startup, its `authorization:` blocks aside.
    pub(crate) shape: Shape,
}

/// Where a listener is declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The flags (`--upstream`, `--secure-listen-address`, ...).
    Flags,
    /// An entry of `--listeners-file`, starting at `line`.
    File { path: PathBuf, line: u64 },
}

/// One listener, from the flags or from `--listeners-file`: the settings of each stage
/// it has its own of.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// `None`: the flags' listener, the only one (its logs and series carry no name).
    pub name: Option<String>,
    pub origin: Origin,
    /// `--secure-listen-address`, `secureListenAddress`.
    pub listen: ListenAddress,
    /// Its TLS files; the TLS policy is the process's (the flags').
    pub tls: TlsSettings,
    /// `--allow-paths`, `--ignore-paths`.
    pub paths: PathPolicy,
    /// `--upstream*` and `--auth-header-*`.
    pub upstream: UpstreamSettings,
    /// `--config-file` or an `authorization:` block, and `--rbac-file`: its local policy.
    pub(crate) policy: PolicySettings,
    /// Deckhouse's `upstreams:` (the flags' listener only): routes by path, each with
    /// its own upstream and authorization, in place of `upstream` and `policy`. Empty:
    /// `upstream` takes every path.
    pub(crate) routes: Vec<RouteConfig>,
    /// `--livez-path` (the flags' listener only).
    pub(crate) livez: Option<Pattern>,
}

/// A route of `upstreams:`: a listener's upstream and authorization without a socket.
#[derive(Debug, Clone)]
pub(crate) struct RouteConfig {
    pub(crate) pattern: Pattern,
    pub(crate) upstream: UpstreamSettings,
    pub(crate) policy: PolicySettings,
}

/// What the listeners are checked against: the flags' own listeners and ports.
pub(super) struct Context<'a> {
    /// `--secure-listen-address`, when `--upstream` makes it a listener.
    pub(super) flags_listener: Option<&'a ListenAddress>,
    pub(super) proxy_endpoints_port: Option<u16>,
    pub(super) auth_endpoint: Option<&'a ListenAddress>,
    /// `--tls-min-version`, `--tls-cipher-suites`, `--tls-curve-preferences`.
    pub(super) tls_policy: &'a TlsPolicy,
}

/// The flags' listener's settings, as the file's are read ([`ListenerArgs`]).
pub(super) fn from_flags(
    serving: &ServingArgs,
    upstream: UpstreamArgs,
    policy: &PolicyArgs,
) -> ListenerArgs {
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
    ListenerArgs {
        secure_listen_address: serving.secure_listen_address.clone(),
        upstream,
        upstream_ca_file,
        upstream_client_cert_file,
        upstream_client_key_file,
        upstream_force_h2c,
        upstream_timeout,
        tls_cert_file: serving.tls_cert_file.clone(),
        tls_private_key_file: serving.tls_private_key_file.clone(),
        tls_sni_cert_key: serving.tls_sni_cert_key.clone(),
        client_ca_file: serving.client_ca_file.clone(),
        allow_paths,
        ignore_paths,
        auth_header_fields_enabled,
        auth_header_user_field_name,
        auth_header_groups_field_name,
        auth_header_groups_field_separator,
        config_file: policy.config_file.clone(),
        rbac_file: policy.rbac_file.clone(),
    }
}

/// Where a listener's settings come from.
pub(super) enum Declared<'a> {
    Flags,
    /// An entry of the file at `path`.
    File {
        path: &'a Path,
        entry: &'a Entry,
    },
}

impl Declared<'_> {
    /// What its messages call its settings by.
    fn source(&self) -> Source {
        match self {
            Declared::Flags => Source::Flags,
            Declared::File { .. } => Source::File,
        }
    }
}

/// Validates one listener's settings, the flags' or a file entry's, the same way:
/// problems name each setting as it was given.
pub(super) fn validate(
    args: ListenerArgs,
    declared: &Declared<'_>,
    tls_policy: &TlsPolicy,
    problems: &mut Problems,
) -> ListenerConfig {
    let source = declared.source();
    let (upstream, paths) = upstream::validate(&args, source, problems);
    let ListenerArgs {
        secure_listen_address,
        tls_cert_file,
        tls_private_key_file,
        tls_sni_cert_key,
        client_ca_file,
        config_file,
        rbac_file,
        // Read by `upstream::validate`.
        upstream: _,
        upstream_ca_file: _,
        upstream_client_cert_file: _,
        upstream_client_key_file: _,
        upstream_force_h2c: _,
        upstream_timeout: _,
        allow_paths: _,
        ignore_paths: _,
        auth_header_fields_enabled: _,
        auth_header_user_field_name: _,
        auth_header_groups_field_name: _,
        auth_header_groups_field_separator: _,
    } = args;
    let listen = match (secure_listen_address, declared) {
        (Some(address), _) => address,
        (None, Declared::Flags) => ListenAddress {
            host: "0.0.0.0".to_owned(),
            port: 8443,
        },
        (None, Declared::File { .. }) => {
            problems.add("secureListenAddress is required (e.g. \":8443\")");
            ListenAddress {
                host: String::new(),
                port: 0,
            }
        }
    };
    let tls_source = serving::tls_source(tls_cert_file, tls_private_key_file, source, problems);
    let sni = serving::sni_pairs(&tls_sni_cert_key, source, problems);
    let policy = policy(declared, config_file, rbac_file, problems);
    let (name, origin) = match declared {
        Declared::Flags => (None, Origin::Flags),
        Declared::File { path, entry } => (
            Some(entry.fields.name.clone()),
            Origin::File {
                path: path.to_path_buf(),
                line: entry.line,
            },
        ),
    };
    ListenerConfig {
        name,
        origin,
        listen,
        tls: TlsSettings {
            source: tls_source,
            sni,
            policy: tls_policy.clone(),
            client_ca_file,
        },
        paths,
        upstream,
        policy,
        routes: Vec::new(),
        livez: None,
    }
}

/// A listener's local policy: the one place that decides what it is made of, for the
/// flags' listener (and `scrape-guard can-i`, which answers for it) and the file's.
/// A file entry's is its `configFile`, else its `authorization:` block (found by its
/// name each time the file changes), and it is re-read only while the entry says what
/// it said at startup.
pub(super) fn policy(
    declared: &Declared<'_>,
    config_file: Option<PathBuf>,
    rbac_files: Vec<PathBuf>,
    problems: &mut Problems,
) -> PolicySettings {
    let (path, entry) = match declared {
        Declared::Flags => {
            return PolicySettings {
                config: config_file.map(ConfigSource::File),
                rbac_files,
                condition: None,
            }
        }
        Declared::File { path, entry } => (*path, *entry),
    };
    let config = match config_file {
        Some(config_file) => {
            if entry.authorization {
                problems.add("configFile and authorization: give one (configFile is a kube-rbac-proxy config file holding the same block)");
            }
            ConfigSource::File(config_file)
        }
        None => {
            let listener = entry.fields.name.clone();
            ConfigSource::Block {
                file: path.to_owned(),
                locate: authz::locate(move |docs| locate(docs, &listener)),
            }
        }
    };
    PolicySettings {
        config: Some(config),
        rbac_files,
        condition: Some(condition(path, &entry.fields)),
    }
}

/// Its policy files are re-read only while its entry says what it says now.
fn condition(file: &Path, startup: &Fields) -> Condition {
    let (startup, shown) = (startup.clone(), file.display().to_string());
    Condition {
        file: file.to_owned(),
        holds: Arc::new(move |bytes| {
            declares(bytes, &startup).map_err(|e| format!("{shown}: {e}"))
        }),
    }
}

/// Reads and validates the file: its listeners, in file order, and what to watch.
/// Problems name the file, the line and the listener.
pub(super) fn read(
    path: &Path,
    context: &Context<'_>,
    problems: &mut Problems,
) -> (Vec<ListenerConfig>, ListenersFile) {
    let origin = format!("--listeners-file {}", path.display());
    let decoded = std::fs::read(path)
        .map_err(|e| format!("{origin}: {e}"))
        .and_then(|bytes| decode(&bytes).map_err(|e| format!("{origin}: {e}")));
    let read = decoded.is_ok();
    let (entries, notes) = problems.or(decoded, (Vec::new(), Vec::new()));
    for note in notes {
        problems.warn(format!("{origin} line {}: {}", note.line, note.text));
    }
    let listeners: Vec<ListenerConfig> = entries
        .iter()
        .map(|entry| from_entry(path, entry, context.tls_policy, &origin, problems))
        .collect();
    check_unique(&listeners, context, &origin, problems);
    if read && listeners.is_empty() && context.flags_listener.is_none() {
        problems.add(format!(
            "{origin} declares no listener and --upstream is not given: nothing to serve"
        ));
    }
    let file = ListenersFile {
        path: path.to_owned(),
        shape: Shape(entries.into_iter().map(|e| e.fields).collect()),
    };
    (listeners, file)
}

/// `message` (another module's, naming flags: `paths`, and at startup `tls`, `authz`,
/// `upstream`) in a listener's keys.
pub(crate) fn in_keys(message: &str) -> String {
    let mut keys: Vec<&Key> = KEYS.iter().collect();
    // "--upstream" is a prefix of "--upstream-ca-file": the longest first.
    keys.sort_by_key(|k| std::cmp::Reverse(k.flag.len()));
    let mut out = message.to_owned();
    for k in keys {
        out = out.replace(k.flag, k.key);
    }
    out
}

/// A DNS label (RFC 1123), as a Kubernetes port or container name: it is a metric
/// label value and a log field.
fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// One entry of the file: its name checked, its values typed and validated as the
/// flags' are; its problems prefixed with the file, line and name.
fn from_entry(
    file: &Path,
    entry: &Entry,
    tls_policy: &TlsPolicy,
    origin: &str,
    problems: &mut Problems,
) -> ListenerConfig {
    let name = &entry.fields.name;
    let mut own = Problems::default();
    if name.is_empty() {
        own.add("name is required (a DNS label, e.g. metrics)");
    } else if !valid_name(name) {
        own.add(format!(
            "name {name:?} must be a DNS label: lower-case letters, digits and '-', at most 63"
        ));
    }
    let args = entry.fields.args(&mut own);
    let listener = validate(
        args,
        &Declared::File { path: file, entry },
        tls_policy,
        &mut own,
    );
    let who = if name.is_empty() {
        "a listener".to_owned()
    } else {
        format!("listener {name}")
    };
    let prefix = format!("{origin} line {}: {who}", entry.line);
    let Problems { errors, warnings } = own;
    for error in errors {
        problems.add(format!("{prefix}: {error}"));
    }
    for warning in warnings {
        problems.warn(format!("{prefix}: {warning}"));
    }
    listener
}

/// Whether two listen addresses would take the same socket. A wildcard host takes the
/// port on every address; port 0 is a fresh port each time.
fn overlap(a: &ListenAddress, b: &ListenAddress) -> bool {
    let any = |host: &str| matches!(host, "" | "0.0.0.0" | "::");
    a.port != 0 && a.port == b.port && (a.host == b.host || any(&a.host) || any(&b.host))
}

/// Names and addresses once each, among the listeners and the flags' own.
fn check_unique(
    listeners: &[ListenerConfig],
    context: &Context<'_>,
    origin: &str,
    problems: &mut Problems,
) {
    for (i, listener) in listeners.iter().enumerate() {
        let at = format!(
            "{origin} line {}: listener {}",
            listener.line(),
            listener.name.as_deref().unwrap_or_default()
        );
        let earlier = &listeners[..i];
        if let Some(first) = earlier
            .iter()
            .find(|l| l.name == listener.name && l.name.as_deref().is_some_and(|n| !n.is_empty()))
        {
            problems.add(format!(
                "{at}: the name is taken by the listener at line {}",
                first.line()
            ));
        } else if listener.name.as_deref() == Some(FLAGS_LISTENER)
            && context.flags_listener.is_some()
        {
            problems.add(format!(
                "{at}: \"{FLAGS_LISTENER}\" is the name of the listener the flags define \
                 (--upstream); choose another"
            ));
        }
        let mut taken = String::new();
        if let Some(first) = earlier
            .iter()
            .find(|l| overlap(&l.listen, &listener.listen))
        {
            let _ = write!(
                taken,
                "listener {}'s (line {})",
                first.name.as_deref().unwrap_or_default(),
                first.line()
            );
        } else if context
            .flags_listener
            .is_some_and(|a| overlap(a, &listener.listen))
        {
            taken.push_str("--secure-listen-address's (the \"default\" listener)");
        } else if context
            .auth_endpoint
            .is_some_and(|a| overlap(a, &listener.listen))
        {
            taken.push_str("--auth-endpoint-address's");
        } else if context.proxy_endpoints_port == Some(listener.listen.port) {
            taken.push_str("--proxy-endpoints-port");
        }
        if !taken.is_empty() {
            problems.add(format!(
                "{at}: secureListenAddress {} is {taken} too",
                listener.listen
            ));
        }
    }
}

impl ListenerConfig {
    /// The line of `--listeners-file` declaring it (0 for the flags').
    fn line(&self) -> u64 {
        match self.origin {
            Origin::File { line, .. } => line,
            Origin::Flags => 0,
        }
    }
}

#[cfg(test)]
mod tests;
