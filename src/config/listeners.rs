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

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use serde_saphyr::Spanned;

use super::{
    args::{defaults, UpstreamArgs},
    go::{parse_go_duration, parse_listen_address, ListenAddress},
    serving, upstream, Problems,
};
use crate::{
    authz::{self, ConfigSource, PolicySettings},
    paths::PathPolicy,
    tls::{TlsPolicy, TlsSettings},
    upstream::UpstreamSettings,
    yaml::{self, join, take, Decoder, Node, Value},
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

/// The listeners as the file declared them, for comparing with a later version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shape(Vec<Fields>);

/// One listener's values as written (`authorization:` aside).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Fields {
    name: String,
    secure_listen_address: Option<String>,
    upstream: Option<String>,
    upstream_ca_file: Option<String>,
    upstream_client_cert_file: Option<String>,
    upstream_client_key_file: Option<String>,
    upstream_force_h2c: bool,
    upstream_timeout: Option<String>,
    tls_cert_file: Option<String>,
    tls_private_key_file: Option<String>,
    client_ca_file: Option<String>,
    allow_paths: Vec<String>,
    ignore_paths: Vec<String>,
    auth_header_fields_enabled: bool,
    auth_header_user_field_name: Option<String>,
    auth_header_groups_field_name: Option<String>,
    auth_header_groups_field_separator: Option<String>,
    config_file: Option<String>,
    rbac_file: Vec<String>,
}

/// A listener as read from the file.
#[derive(Debug)]
struct Entry {
    line: u64,
    fields: Fields,
    /// Whether it has an `authorization:` block (read by `authz`).
    authorization: bool,
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
    let (entries, notes) = problems.or(decoded, (Vec::new(), Vec::new()));
    for note in notes {
        problems.warn(format!("{origin} line {}: {}", note.line, note.text));
    }
    let listeners: Vec<ListenerConfig> = entries
        .iter()
        .map(|entry| validate(path, entry, context.tls_policy, &origin, problems))
        .collect();
    check_unique(&listeners, context, &origin, problems);
    if listeners.is_empty() && context.flags_listener.is_none() {
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

/// `Ok` while the file (`files[0]`) still declares what `startup` did, its
/// `authorization:` blocks aside (each listener re-reads its own); otherwise what
/// changed, which takes effect at the next start.
pub(crate) fn unchanged(files: &[(PathBuf, Vec<u8>)], startup: &Shape) -> Result<(), String> {
    let Some((path, bytes)) = files.first() else {
        return Ok(());
    };
    let origin = path.display();
    let (entries, _) = decode(bytes).map_err(|e| format!("{origin}: {e}"))?;
    let now: Vec<Fields> = entries.into_iter().map(|e| e.fields).collect();
    if now == startup.0 {
        return Ok(());
    }
    let named = |fields: &[Fields], name: &str| fields.iter().position(|f| f.name == name);
    let mut changes = Vec::new();
    for (i, before) in startup.0.iter().enumerate() {
        match named(&now, &before.name) {
            None => changes.push(format!("listener {} removed", before.name)),
            Some(j) if now[j] != *before => {
                changes.push(format!("listener {} changed", before.name))
            }
            Some(j) if j != i => changes.push(format!("listener {} moved", before.name)),
            Some(_) => {}
        }
    }
    for after in &now {
        if named(&startup.0, &after.name).is_none() {
            changes.push(format!("listener {} added", after.name));
        }
    }
    Err(format!(
        "{origin}: {}: only the listeners' authorization blocks are re-read; the rest \
         takes effect at the next start",
        changes.join(", ")
    ))
}

/// The `authorization:` block of listener `name` in the file's documents (`None`: it
/// has none). Only the listeners' names and blocks are looked at, so that another
/// listener's mistake does not hold this one's update back.
pub(crate) fn locate<'a>(
    docs: &'a [Spanned<Node>],
    name: &str,
) -> Result<Option<&'a Spanned<Node>>, String> {
    // Notes about other keys are not this listener's business.
    let mut d = Decoder::default();
    let gone =
        || format!("listener {name} is no longer declared; removing a listener takes a restart");
    let Some(root) = docs.first() else {
        return Err(gone());
    };
    let Some(maps) = d.objects(&[root], "the file")? else {
        return Err(gone());
    };
    let [listeners] = take(d.fields(&maps, "", &["listeners"])?);
    let items = d.list(&listeners, "listeners")?.unwrap_or_default();
    let mut found: Option<Option<Value<'a>>> = None;
    for (i, item) in items.iter().enumerate() {
        let at = format!("listeners[{i}]");
        let Some(maps) = d.objects(&[item], &at)? else {
            continue;
        };
        let [entry_name, block] = take(d.fields(&maps, &at, &["name", "authorization"])?);
        let entry_name = d.string(&entry_name, &join(&at, "name"))?;
        if entry_name.is_none_or(|(n, _)| n != name) {
            continue;
        }
        if found.is_some() {
            return Err(format!(
                "line {}: listener {name} is declared twice",
                item.referenced.line()
            ));
        }
        found = Some(block.last().copied());
    }
    found.ok_or_else(gone)
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

// === decoding ===

/// The file's listeners, with notes worth a warning.
fn decode(bytes: &[u8]) -> Result<(Vec<Entry>, Vec<yaml::Note>), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let docs = yaml::parse(text)?;
    if let Some(second) = docs.get(1) {
        return Err(format!(
            "line {}: a second YAML document; the listeners go in one",
            second.referenced.line()
        ));
    }
    let mut d = Decoder::default();
    let Some(root) = docs.first() else {
        return Ok((Vec::new(), Vec::new()));
    };
    if d.objects(&[root], "the file")?.is_none() {
        return Ok((Vec::new(), Vec::new()));
    }
    let [listeners] = take(d.strict_fields(root, "", &["listeners"]).map_err(|e| {
        if e.contains("unknown key authorization") {
            format!(
                "{e} (a kube-rbac-proxy config file? give it as --config-file or as a \
                 listener's configFile, or put its authorization: block under a listener)"
            )
        } else {
            e
        }
    })?);
    let mut entries = Vec::new();
    for (i, item) in d
        .list(&listeners, "listeners")?
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        entries.push(entry(item, &format!("listeners[{i}]"), &mut d)?);
    }
    let mut notes = d.notes;
    notes.sort_by_key(|n| n.line);
    Ok((entries, notes))
}

fn entry(item: Value<'_>, at: &str, d: &mut Decoder) -> Result<Entry, String> {
    let line = item.referenced.line();
    if !matches!(item.value, Node::Map(_)) {
        return Err(format!(
            "line {line}: {at} must be a mapping (name, secureListenAddress, upstream, …)"
        ));
    }
    let keys: Vec<&str> = KEYS.iter().map(|(key, _)| *key).collect();
    let [name, secure_listen_address, upstream, upstream_ca_file, upstream_client_cert_file, upstream_client_key_file, upstream_force_h2c, upstream_timeout, tls_cert_file, tls_private_key_file, client_ca_file, allow_paths, ignore_paths, auth_header_fields_enabled, auth_header_user_field_name, auth_header_groups_field_name, auth_header_groups_field_separator, config_file, rbac_file, authorization] =
        take(d.strict_fields(item, at, &keys)?);
    let mut text = |values: Vec<Value<'_>>, key: &str| -> Result<Option<String>, String> {
        Ok(d.string(&values, &join(at, key))?.map(|(text, _)| text))
    };
    let mut fields = Fields {
        name: text(name, "name")?.unwrap_or_default(),
        secure_listen_address: text(secure_listen_address, "secureListenAddress")?,
        upstream: text(upstream, "upstream")?,
        upstream_ca_file: text(upstream_ca_file, "upstreamCAFile")?,
        upstream_client_cert_file: text(upstream_client_cert_file, "upstreamClientCertFile")?,
        upstream_client_key_file: text(upstream_client_key_file, "upstreamClientKeyFile")?,
        upstream_timeout: text(upstream_timeout, "upstreamTimeout")?,
        tls_cert_file: text(tls_cert_file, "tlsCertFile")?,
        tls_private_key_file: text(tls_private_key_file, "tlsPrivateKeyFile")?,
        client_ca_file: text(client_ca_file, "clientCAFile")?,
        auth_header_user_field_name: text(auth_header_user_field_name, "authHeaderUserFieldName")?,
        auth_header_groups_field_name: text(
            auth_header_groups_field_name,
            "authHeaderGroupsFieldName",
        )?,
        auth_header_groups_field_separator: text(
            auth_header_groups_field_separator,
            "authHeaderGroupsFieldSeparator",
        )?,
        config_file: text(config_file, "configFile")?,
        ..Fields::default()
    };
    fields.upstream_force_h2c = d.boolean(&upstream_force_h2c, &join(at, "upstreamForceH2C"))?;
    fields.auth_header_fields_enabled = d.boolean(
        &auth_header_fields_enabled,
        &join(at, "authHeaderFieldsEnabled"),
    )?;
    fields.allow_paths = list(d, &allow_paths, &join(at, "allowPaths"))?;
    fields.ignore_paths = list(d, &ignore_paths, &join(at, "ignorePaths"))?;
    fields.rbac_file = list(d, &rbac_file, &join(at, "rbacFile"))?;
    Ok(Entry {
        line,
        fields,
        authorization: !authorization.is_empty(),
    })
}

/// A list key: a YAML list, or a string with commas between the items, as the flag.
fn list(d: &mut Decoder, values: &[Value<'_>], at: &str) -> Result<Vec<String>, String> {
    match values.last().map(|v| &v.value) {
        Some(Node::Seq(_) | Node::Map(_)) | None => d.strings(values, at),
        Some(_) => Ok(d
            .string(values, at)?
            .map(|(text, _)| {
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()),
    }
}

// === validation ===

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
        },
    }
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
