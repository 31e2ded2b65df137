//! The listeners file as written: its listeners' values, its `authorization:` blocks
//! found by name, and whether a later version says the same.

use std::path::PathBuf;

use serde_saphyr::Spanned;

use super::keys::Fields;
use crate::yaml::{self, join, take, Decoder, Node, Value};

/// The listeners as the file declared them, for comparing with a later version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shape(pub(super) Vec<Fields>);

/// A listener as read from the file.
#[derive(Debug)]
pub(in crate::config) struct Entry {
    pub(in crate::config) line: u64,
    pub(in crate::config) fields: Fields,
    /// Whether it has an `authorization:` block (read by `authz`).
    pub(in crate::config) authorization: bool,
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
    let keys = Fields::keys();
    let values = d.strict_fields(item, at, &keys)?;
    let (fields, authorization) = Fields::read(d, values.into_iter(), at)?;
    Ok(Entry {
        line,
        fields,
        authorization,
    })
}
