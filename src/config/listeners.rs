//! `--listeners-file`: more listeners in one process, each with its own address,
//! upstream, TLS files, path policy, identity headers and authorization.
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
//! Every other key is a per-listener flag's name in camelCase ([`KEYS`]) and takes what
//! the flag takes; the flags not in the table are the process's, shared by every
//! listener. The file is read with kube-rbac-proxy's YAML rules (`yaml.rs`: keys in any
//! case, YAML 1.1), but these keys are ours, so an unknown or repeated one is an error
//! with its line. Each `authorization:` block is kube-rbac-proxy's and is read by
//! `authz` with its rules (an unknown key there is a warning), found by [`locate`] each
//! time the file changes. Everything else is read once, at startup; [`unchanged`] tells
//! a later change to it apart, so that it can be reported rather than silently ignored.

mod file;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use self::file::declares;
use self::file::{decode, Entry, Fields};
pub(crate) use self::file::{locate, unchanged, Shape};

use super::{
    args::{defaults, PolicyArgs, ServingArgs, UpstreamArgs},
    go::{parse_go_duration, parse_listen_address, ListenAddress},
    serving, upstream, Problems,
};
use crate::{
    authz::{self, ConfigSource, PolicySettings},
    paths::PathPolicy,
    reload::Condition,
    tls::{TlsPolicy, TlsSettings},
    upstream::UpstreamSettings,
};

/// A listener's keys, and the flag each one stands for.
pub(super) const KEYS: &[(&str, &str)] = &[
    ("name", ""),
    ("secureListenAddress", "--secure-listen-address"),
    ("upstream", "--upstream"),
    ("upstreamCAFile", "--upstream-ca-file"),
    ("upstreamClientCertFile", "--upstream-client-cert-file"),
    ("upstreamClientKeyFile", "--upstream-client-key-file"),
    ("upstreamForceH2C", "--upstream-force-h2c"),
    ("upstreamTimeout", "--upstream-timeout"),
    ("tlsCertFile", "--tls-cert-file"),
    ("tlsPrivateKeyFile", "--tls-private-key-file"),
    ("clientCAFile", "--client-ca-file"),
    ("allowPaths", "--allow-paths"),
    ("ignorePaths", "--ignore-paths"),
    ("authHeaderFieldsEnabled", "--auth-header-fields-enabled"),
    ("authHeaderUserFieldName", "--auth-header-user-field-name"),
    (
        "authHeaderGroupsFieldName",
        "--auth-header-groups-field-name",
    ),
    (
        "authHeaderGroupsFieldSeparator",
        "--auth-header-groups-field-separator",
    ),
    ("configFile", "--config-file"),
    ("rbacFile", "--rbac-file"),
    ("authorization", ""),
];

/// The name of the listener the flags define when `--listeners-file` is given too.
pub(crate) const FLAGS_LISTENER: &str = "default";

/// `--listeners-file`, validated.
#[derive(Debug, Clone)]
pub struct ListenersFile {
    pub path: PathBuf,
    /// The listeners it declares, in file order.
    pub listeners: Vec<ListenerConfig>,
    /// Whether the flags define a listener as well (`--upstream` is given): it is named
    /// "default" and served first.
    pub flags_listener: bool,
    /// What the file said at startup, its `authorization:` blocks aside.
    pub(crate) shape: Shape,
}

/// One listener of `--listeners-file`: the settings of each stage it has its own of.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub name: String,
    /// Where it starts in the file.
    pub line: u64,
    /// `secureListenAddress`.
    pub listen: ListenAddress,
    /// `tlsCertFile`, `tlsPrivateKeyFile`, `clientCAFile`; the TLS policy is the flags'.
    pub tls: TlsSettings,
    /// `allowPaths`, `ignorePaths`.
    pub paths: PathPolicy,
    /// `upstream*` and `authHeader*`.
    pub upstream: UpstreamSettings,
    /// `configFile` or `authorization`, and `rbacFile`.
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

/// Reads and validates the file. Problems name the file, the line and the listener.
pub(super) fn read(path: &Path, context: &Context<'_>, problems: &mut Problems) -> ListenersFile {
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
        .map(|entry| validate(path, entry, context.tls_policy, &origin, problems))
        .collect();
    check_unique(&listeners, context, &origin, problems);
    if read && listeners.is_empty() && context.flags_listener.is_none() {
        problems.add(format!(
            "{origin} declares no listener and --upstream is not given: nothing to serve"
        ));
    }
    ListenersFile {
        path: path.to_owned(),
        listeners,
        flags_listener: context.flags_listener.is_some(),
        shape: Shape(entries.into_iter().map(|e| e.fields).collect()),
    }
}

/// `message` (a flag's validation message) in a listener's keys.
pub(crate) fn in_keys(message: &str) -> String {
    let mut flags: Vec<&(&str, &str)> = KEYS.iter().filter(|(_, flag)| !flag.is_empty()).collect();
    // "--upstream" is a prefix of "--upstream-ca-file": the longest first.
    flags.sort_by_key(|(_, flag)| std::cmp::Reverse(flag.len()));
    let mut out = message.to_owned();
    for (key, flag) in flags {
        out = out.replace(flag, key);
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

fn validate(
    file: &Path,
    entry: &Entry,
    tls_policy: &TlsPolicy,
    origin: &str,
    problems: &mut Problems,
) -> ListenerConfig {
    let Entry {
        line,
        fields,
        authorization,
    } = entry;
    let Fields {
        name,
        secure_listen_address,
        upstream,
        upstream_ca_file,
        upstream_client_cert_file,
        upstream_client_key_file,
        upstream_force_h2c,
        upstream_timeout,
        tls_cert_file,
        tls_private_key_file,
        client_ca_file,
        allow_paths,
        ignore_paths,
        auth_header_fields_enabled,
        auth_header_user_field_name,
        auth_header_groups_field_name,
        auth_header_groups_field_separator,
        config_file,
        rbac_file,
    } = fields.clone();
    let mut own = Problems::default();
    if name.is_empty() {
        own.add("name is required (a DNS label, e.g. metrics)");
    } else if !valid_name(&name) {
        own.add(format!(
            "name {name:?} must be a DNS label: lower-case letters, digits and '-', at most 63"
        ));
    }
    let listen = match secure_listen_address.as_deref() {
        None => Err("secureListenAddress is required (e.g. \":8443\")".to_owned()),
        Some(address) => {
            parse_listen_address(address).map_err(|e| format!("secureListenAddress {e}"))
        }
    };
    let listen = own.or(
        listen,
        ListenAddress {
            host: String::new(),
            port: 0,
        },
    );
    let timeout = upstream_timeout
        .as_deref()
        .unwrap_or(defaults::UPSTREAM_TIMEOUT);
    let timeout = parse_go_duration(timeout).map_err(|e| format!("upstreamTimeout {e}"));
    let upstream_timeout = own.or(timeout, std::time::Duration::from_secs(30));
    let path = |value: Option<String>| value.map(PathBuf::from);
    let (upstream, paths) = upstream::validate(
        UpstreamArgs {
            upstream,
            upstream_ca_file: path(upstream_ca_file),
            upstream_client_cert_file: path(upstream_client_cert_file),
            upstream_client_key_file: path(upstream_client_key_file),
            upstream_force_h2c,
            upstream_timeout,
            allow_paths,
            ignore_paths,
            auth_header_fields_enabled,
            auth_header_user_field_name: auth_header_user_field_name
                .unwrap_or_else(|| defaults::USER_HEADER.to_owned()),
            auth_header_groups_field_name: auth_header_groups_field_name
                .unwrap_or_else(|| defaults::GROUPS_HEADER.to_owned()),
            auth_header_groups_field_separator: auth_header_groups_field_separator
                .unwrap_or_else(|| defaults::GROUPS_SEPARATOR.to_owned()),
        },
        &mut own,
    );
    let source = serving::tls_source(path(tls_cert_file), path(tls_private_key_file), &mut own);
    let config = match config_file {
        Some(config_file) => {
            if *authorization {
                own.add("configFile and authorization: give one (configFile is a kube-rbac-proxy config file holding the same block)");
            }
            ConfigSource::File(PathBuf::from(config_file))
        }
        None => {
            let listener = name.clone();
            ConfigSource::Block {
                file: file.to_owned(),
                locate: authz::locate(move |docs| locate(docs, &listener)),
            }
        }
    };
    let who = if name.is_empty() {
        "a listener".to_owned()
    } else {
        format!("listener {name}")
    };
    let prefix = format!("{origin} line {line}: {who}");
    // Its policy files are re-read only while its entry says what it says now.
    let (startup, shown) = (fields.clone(), file.display().to_string());
    let condition = Condition {
        file: file.to_owned(),
        holds: Arc::new(move |bytes| {
            declares(bytes, &startup).map_err(|e| format!("{shown}: {e}"))
        }),
    };
    let Problems { errors, warnings } = own;
    for error in errors {
        problems.add(format!("{prefix}: {}", in_keys(&error)));
    }
    for warning in warnings {
        problems.warn(format!("{prefix}: {}", in_keys(&warning)));
    }
    ListenerConfig {
        name,
        line: *line,
        listen,
        tls: TlsSettings {
            source,
            policy: tls_policy.clone(),
            client_ca_file: path(client_ca_file),
        },
        paths,
        upstream,
        policy: PolicySettings {
            config: Some(config),
            rbac_files: rbac_file.into_iter().map(PathBuf::from).collect(),
            condition: Some(condition),
        },
    }
}

/// The flags of the listener `--upstream` defines that are given (set to something
/// other than their defaults), as they are spelt.
pub(super) fn flags_given(
    serving: &ServingArgs,
    upstream: &UpstreamArgs,
    policy: &PolicyArgs,
) -> Vec<&'static str> {
    let UpstreamArgs {
        upstream: _,
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
    let timeout = parse_go_duration(defaults::UPSTREAM_TIMEOUT).ok();
    [
        (
            "--secure-listen-address",
            serving.secure_listen_address.is_some(),
        ),
        ("--tls-cert-file", serving.tls_cert_file.is_some()),
        (
            "--tls-private-key-file",
            serving.tls_private_key_file.is_some(),
        ),
        ("--client-ca-file", serving.client_ca_file.is_some()),
        ("--upstream-ca-file", upstream_ca_file.is_some()),
        (
            "--upstream-client-cert-file",
            upstream_client_cert_file.is_some(),
        ),
        (
            "--upstream-client-key-file",
            upstream_client_key_file.is_some(),
        ),
        ("--upstream-force-h2c", *upstream_force_h2c),
        ("--upstream-timeout", Some(*upstream_timeout) != timeout),
        ("--allow-paths", !allow_paths.is_empty()),
        ("--ignore-paths", !ignore_paths.is_empty()),
        ("--auth-header-fields-enabled", *auth_header_fields_enabled),
        (
            "--auth-header-user-field-name",
            auth_header_user_field_name != defaults::USER_HEADER,
        ),
        (
            "--auth-header-groups-field-name",
            auth_header_groups_field_name != defaults::GROUPS_HEADER,
        ),
        (
            "--auth-header-groups-field-separator",
            auth_header_groups_field_separator != defaults::GROUPS_SEPARATOR,
        ),
        ("--config-file", policy.config_file.is_some()),
        ("--rbac-file", !policy.rbac_file.is_empty()),
    ]
    .into_iter()
    .filter_map(|(flag, given)| given.then_some(flag))
    .collect()
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
            listener.line, listener.name
        );
        let earlier = &listeners[..i];
        if let Some(first) = earlier
            .iter()
            .find(|l| l.name == listener.name && !l.name.is_empty())
        {
            problems.add(format!(
                "{at}: the name is taken by the listener at line {}",
                first.line
            ));
        } else if listener.name == FLAGS_LISTENER && context.flags_listener.is_some() {
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
            let _ = write!(taken, "listener {}'s (line {})", first.name, first.line);
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

#[cfg(test)]
mod tests;
