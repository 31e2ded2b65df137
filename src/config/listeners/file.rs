//! The listeners file as written: its listeners' values, its `authorization:` blocks
//! found by name, and whether a later version says the same.

use std::path::PathBuf;

use serde_saphyr::Spanned;

use super::KEYS;
use crate::yaml::{self, join, take, Decoder, Node, Value};

/// The listeners as the file declared them, for comparing with a later version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shape(pub(super) Vec<Fields>);

/// One listener's values as written (`authorization:` aside).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Fields {
    pub(super) name: String,
    pub(super) secure_listen_address: Option<String>,
    pub(super) upstream: Option<String>,
    pub(super) upstream_ca_file: Option<String>,
    pub(super) upstream_client_cert_file: Option<String>,
    pub(super) upstream_client_key_file: Option<String>,
    pub(super) upstream_force_h2c: bool,
    pub(super) upstream_timeout: Option<String>,
    pub(super) tls_cert_file: Option<String>,
    pub(super) tls_private_key_file: Option<String>,
    pub(super) client_ca_file: Option<String>,
    pub(super) allow_paths: Vec<String>,
    pub(super) ignore_paths: Vec<String>,
    pub(super) auth_header_fields_enabled: bool,
    pub(super) auth_header_user_field_name: Option<String>,
    pub(super) auth_header_groups_field_name: Option<String>,
    pub(super) auth_header_groups_field_separator: Option<String>,
    pub(super) config_file: Option<String>,
    pub(super) rbac_file: Vec<String>,
}

/// A listener as read from the file.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) line: u64,
    pub(super) fields: Fields,
    /// Whether it has an `authorization:` block (read by `authz`).
    pub(super) authorization: bool,
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

/// `Ok` while the file still declares the listener `startup` describes as it did at
/// startup: the one entry with its name, every key but `authorization:` the same. The
/// condition for its policy files to be re-read (`reload::Condition`): moving its
/// policy between `authorization:` and `configFile:`, renaming it (or swapping two
/// names), changing a `configFile` or `rbacFile` path, or removing it takes a restart,
/// and until then its policy stays as it was, whole. Other listeners' entries are not
/// looked at, so that their mistakes do not hold this one's updates back.
pub(crate) fn declares(bytes: &[u8], startup: &Fields) -> Result<(), String> {
    let name = &startup.name;
    let restart = "its policy stays as it was until the next start";
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let docs = yaml::parse(text)?;
    let mut d = Decoder::default();
    let (at, item) = the_one(&docs, name, &mut d).map_err(|e| format!("{e}; {restart}"))?;
    let now = entry(item, &at, &mut d)?;
    if now.fields != *startup {
        return Err(format!(
            "line {}: listener {name} is declared differently than at startup, not only \
             in its authorization block (a policy moved between authorization: and \
             configFile:, a rename, a new configFile or rbacFile path, or any other key \
             takes a restart); {restart}",
            now.line
        ));
    }
    Ok(())
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
    let (at, item) = the_one(docs, name, &mut d)
        .map_err(|e| format!("{e}; removing a listener takes a restart"))?;
    let maps = d.objects(&[item], &at)?.unwrap_or_default();
    let [block] = take(d.fields(&maps, &at, &["authorization"])?);
    Ok(block.last().copied())
}

/// The one entry of `listeners:` named `name`, and where it is (`listeners[i]`): an
/// error if there is none or more than one. Other entries' names are all that is read.
fn the_one<'a>(
    docs: &'a [Spanned<Node>],
    name: &str,
    d: &mut Decoder,
) -> Result<(String, Value<'a>), String> {
    let gone = || format!("listener {name} is no longer declared");
    let Some(root) = docs.first() else {
        return Err(gone());
    };
    let Some(maps) = d.objects(&[root], "the file")? else {
        return Err(gone());
    };
    let [listeners] = take(d.fields(&maps, "", &["listeners"])?);
    let items = d.list(&listeners, "listeners")?.unwrap_or_default();
    let mut found = None;
    for (i, item) in items.iter().enumerate() {
        let at = format!("listeners[{i}]");
        let Some(maps) = d.objects(&[item], &at)? else {
            continue;
        };
        let [entry_name] = take(d.fields(&maps, &at, &["name"])?);
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
        found = Some((at, item));
    }
    found.ok_or_else(gone)
}

/// The file's listeners, with notes worth a warning.
pub(super) fn decode(bytes: &[u8]) -> Result<(Vec<Entry>, Vec<yaml::Note>), String> {
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
