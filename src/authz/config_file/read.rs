//! Reading a config file (or a listener's `authorization:` block): decode with
//! kube-rbac-proxy's rules (`yaml.rs`), map its structs (`schema.rs`), and log what is
//! worth knowing, on every load and reload.

use std::path::PathBuf;

use serde_saphyr::Spanned;

use super::{schema, ConfigFile};
use crate::{
    authz::Locate,
    yaml::{self, Decoder, Level, Node, Note},
};

impl ConfigFile {
    /// Parses the file and logs what is worth knowing about it (on every load and
    /// reload); errors name the file and line.
    pub(in crate::authz) fn parse(files: &[(PathBuf, Vec<u8>)]) -> Result<Self, String> {
        Self::parse_as("--config-file", files, schema::config)
    }

    /// `parse` for an `authorization:` block that `locate` finds in a file of ours (a
    /// listener's in `--listeners-file`); no block is an empty config.
    pub(in crate::authz) fn parse_block(
        what: &str,
        files: &[(PathBuf, Vec<u8>)],
        locate: &Locate,
    ) -> Result<Self, String> {
        Self::parse_as(what, files, |docs, decoder| match locate(docs)? {
            Some(block) => schema::block(block, decoder),
            None => Ok(Self::default()),
        })
    }

    fn parse_as(
        what: &str,
        files: &[(PathBuf, Vec<u8>)],
        schema: impl FnOnce(&[Spanned<Node>], &mut Decoder) -> Result<Self, String>,
    ) -> Result<Self, String> {
        let Some((path, bytes)) = files.first() else {
            return Ok(Self::default());
        };
        let origin = path.display().to_string();
        let (config, notes) = Self::decode_with(&origin, bytes, schema)?;
        for note in notes {
            let message = format!("{what} {origin} line {}: {}", note.line, note.text);
            match note.level {
                Level::Warn => tracing::warn!(file = %origin, line = note.line, "{message}"),
                Level::Info => tracing::info!(file = %origin, line = note.line, "{message}"),
            }
        }
        Ok(config)
    }

    /// The config and its notes; errors are prefixed with `origin`.
    #[cfg(test)]
    pub(super) fn decode(origin: &str, bytes: &[u8]) -> Result<(Self, Vec<Note>), String> {
        Self::decode_with(origin, bytes, schema::config)
    }

    fn decode_with(
        origin: &str,
        bytes: &[u8],
        schema: impl FnOnce(&[Spanned<Node>], &mut Decoder) -> Result<Self, String>,
    ) -> Result<(Self, Vec<Note>), String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("{origin}: {e}"))?;
        let docs = yaml::parse(text).map_err(|e| format!("{origin}: {e}"))?;
        let mut decoder = Decoder::default();
        let config = schema(&docs, &mut decoder).map_err(|e| format!("{origin}: {e}"))?;
        let mut notes = decoder.notes;
        notes.sort_by_key(|n| n.line);
        Ok((config, notes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{authz::Attributes, identity::User};

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            ..User::default()
        }
    }

    #[test]
    fn a_block_found_in_another_file_is_read_like_a_config_file() {
        use crate::yaml::Node;
        // The block under the top-level key `here`, as --listeners-file finds a listener's.
        let locate = crate::authz::locate(|docs| {
            let Some(Node::Map(entries)) = docs.first().map(|d| &d.value) else {
                return Err("not a mapping".into());
            };
            Ok(entries
                .iter()
                .find(|(k, _)| matches!(&k.value, Node::Str(s) if s == "here"))
                .map(|(_, v)| v))
        });
        let parse = |yaml: &str| {
            ConfigFile::parse_block(
                "--listeners-file",
                &[("l.yaml".into(), yaml.as_bytes().to_vec())],
                &locate,
            )
        };
        let config =
            parse("other: 1\nhere:\n  static:\n  - {user: {name: a}, verb: get, path: /metrics}\n")
                .unwrap();
        let allowed = Attributes::non_resource("get", "/metrics");
        assert!(config.static_allows(&user("a"), &allowed).is_some());
        let none = parse("other: 1\n").unwrap();
        assert!(!none.has_static_rules(), "no block, nothing configured");
        let err = parse("here:\n  static:\n  - resourceRequest: \"yes\"\n").unwrap_err();
        assert!(
            err.starts_with("l.yaml: line 3: authorization.static[0].resourceRequest"),
            "{err}"
        );
        assert_eq!(parse("- a\n").unwrap_err(), "l.yaml: not a mapping");
    }
}
