//! The per-listener settings, declared once: each one's field, how it is written, its
//! key in `--listeners-file` and its flag. From the one table below come the file's
//! keys ([`KEYS`]), a listener's values as written ([`Fields`], read from YAML by
//! kind), the same values typed as the flags give them ([`ListenerArgs`]), which of
//! them differ from their defaults ([`ListenerArgs::given`]) and each one's name in a
//! message ([`key`]). Adding a setting is one line here, one in the flags'
//! `ListenerArgs` (`listeners::from_flags`) and its use in `listeners::validate`; both
//! are exhaustive, so forgetting either is a compile error.

use std::{path::PathBuf, time::Duration};

use crate::{
    config::{
        args::defaults,
        go::{parse_go_duration, parse_listen_address, ListenAddress},
        Problems,
    },
    yaml::{join, Decoder, Node, Value},
};

/// A per-listener setting: its key in `--listeners-file` and its flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::config) struct Key {
    pub(in crate::config) key: &'static str,
    pub(in crate::config) flag: &'static str,
}

/// Where a listener's settings were given, and so what a message calls them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::config) enum Source {
    /// The flags: `--upstream-timeout`.
    Flags,
    /// An entry of `--listeners-file`: `upstreamTimeout`.
    File,
}

impl Key {
    /// The name a user gave it by.
    pub(in crate::config) fn name(self, source: Source) -> &'static str {
        match source {
            Source::Flags => self.flag,
            Source::File => self.key,
        }
    }
}

/// How a setting is written in the file, typed as its flag gives it, and whether it is
/// set to something other than its default.
pub(in crate::config) trait Kind {
    /// As written in the file.
    type Written: std::fmt::Debug + Clone + Default + PartialEq + Eq;
    /// As the flag gives it (clap has applied the default).
    type Value;
    fn read(d: &mut Decoder, values: &[Value<'_>], at: &str) -> Result<Self::Written, String>;
    /// A file's value, typed; an error is named with its key by the caller.
    fn parse(written: Self::Written, default: &str) -> Result<Self::Value, String>;
    fn given(value: &Self::Value, default: &str) -> bool;
}

/// A string (`upstream`).
pub(in crate::config) enum Text {}
/// A string with a default (`authHeaderUserFieldName`).
pub(in crate::config) enum Named {}
/// A path (`tlsCertFile`).
pub(in crate::config) enum File {}
/// Paths: a YAML list or commas (`rbacFile`).
pub(in crate::config) enum Files {}
/// Strings: a YAML list or commas (`allowPaths`).
pub(in crate::config) enum List {}
/// Strings that hold commas: a YAML list, or one string as one item (`tlsSNICertKey`).
pub(in crate::config) enum Items {}
/// A Go boolean (`upstreamForceH2C`).
pub(in crate::config) enum Bool {}
/// A Go duration with a default (`upstreamTimeout`).
pub(in crate::config) enum Time {}
/// A Go listen address (`secureListenAddress`).
pub(in crate::config) enum Address {}

fn text(d: &mut Decoder, values: &[Value<'_>], at: &str) -> Result<Option<String>, String> {
    Ok(d.string(values, at)?.map(|(text, _)| text))
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

impl Kind for Text {
    type Written = Option<String>;
    type Value = Option<String>;
    fn read(d: &mut Decoder, values: &[Value<'_>], at: &str) -> Result<Self::Written, String> {
        text(d, values, at)
    }
    fn parse(written: Self::Written, _: &str) -> Result<Self::Value, String> {
        Ok(written)
    }
    fn given(value: &Self::Value, _: &str) -> bool {
        value.is_some()
    }
}

impl Kind for Named {
    type Written = Option<String>;
    type Value = String;
    fn read(d: &mut Decoder, values: &[Value<'_>], at: &str) -> Result<Self::Written, String> {
        text(d, values, at)
    }
    fn parse(written: Self::Written, default: &str) -> Result<Self::Value, String> {
        Ok(written.unwrap_or_else(|| default.to_owned()))
    }
    fn given(value: &Self::Value, default: &str) -> bool {
        value != default
    }
}

impl Kind for File {
    type Written = Option<String>;
    type Value = Option<PathBuf>;
    fn read(d: &mut Decoder, values: &[Value<'_>], at: &str) -> Result<Self::Written, String> {
        text(d, values, at)
    }
    fn parse(written: Self::Written, _: &str) -> Result<Self::Value, String> {
        Ok(written.map(PathBuf::from))
    }
    fn given(value: &Self::Value, _: &str) -> bool {
        value.is_some()
    }
}

impl Kind for Files {
    type Written = Vec<String>;
    type Value = Vec<PathBuf>;
    fn read(d: &mut Decoder, values: &[Value<'_>], at: &str) -> Result<Self::Written, String> {
        list(d, values, at)
    }
    fn parse(written: Self::Written, _: &str) -> Result<Self::Value, String> {
        Ok(written.into_iter().map(PathBuf::from).collect())
    }
    fn given(value: &Self::Value, _: &str) -> bool {
        !value.is_empty()
    }
}

impl Kind for List {
    type Written = Vec<String>;
    type Value = Vec<String>;
    fn read(d: &mut Decoder, values: &[Value<'_>], at: &str) -> Result<Self::Written, String> {
        list(d, values, at)
    }
    fn parse(written: Self::Written, _: &str) -> Result<Self::Value, String> {
        Ok(written)
    }
    fn given(value: &Self::Value, _: &str) -> bool {
        !value.is_empty()
    }
}

impl Kind for Items {
    type Written = Vec<String>;
    type Value = Vec<String>;
    fn read(d: &mut Decoder, values: &[Value<'_>], at: &str) -> Result<Self::Written, String> {
        match values.last().map(|v| &v.value) {
            Some(Node::Seq(_) | Node::Map(_)) | None => d.strings(values, at),
            Some(_) => Ok(text(d, values, at)?.into_iter().collect()),
        }
    }
    fn parse(written: Self::Written, _: &str) -> Result<Self::Value, String> {
        Ok(written)
    }
    fn given(value: &Self::Value, _: &str) -> bool {
        !value.is_empty()
    }
}

impl Kind for Bool {
    type Written = bool;
    type Value = bool;
    fn read(d: &mut Decoder, values: &[Value<'_>], at: &str) -> Result<Self::Written, String> {
        d.boolean(values, at)
    }
    fn parse(written: Self::Written, _: &str) -> Result<Self::Value, String> {
        Ok(written)
    }
    fn given(value: &Self::Value, _: &str) -> bool {
        *value
    }
}

impl Kind for Time {
    type Written = Option<String>;
    type Value = Duration;
    fn read(d: &mut Decoder, values: &[Value<'_>], at: &str) -> Result<Self::Written, String> {
        text(d, values, at)
    }
    fn parse(written: Self::Written, default: &str) -> Result<Self::Value, String> {
        parse_go_duration(written.as_deref().unwrap_or(default))
    }
    fn given(value: &Self::Value, default: &str) -> bool {
        Some(*value) != parse_go_duration(default).ok()
    }
}

impl Kind for Address {
    type Written = Option<String>;
    type Value = Option<ListenAddress>;
    fn read(d: &mut Decoder, values: &[Value<'_>], at: &str) -> Result<Self::Written, String> {
        text(d, values, at)
    }
    fn parse(written: Self::Written, _: &str) -> Result<Self::Value, String> {
        written.as_deref().map(parse_listen_address).transpose()
    }
    fn given(value: &Self::Value, _: &str) -> bool {
        value.is_some()
    }
}

/// The table's derivations; see the module doc. The table is at the end.
macro_rules! listener_keys {
    ($( $field:ident: $kind:ident $(($default:expr))? = $key:literal, $flag:literal; )*) => {
        /// Each per-listener setting's key and flag, by field name.
        #[allow(non_upper_case_globals)]
        pub(in crate::config) mod key {
            use super::Key;
            $( pub(in crate::config) const $field: Key = Key { key: $key, flag: $flag }; )*
        }

        /// Every per-listener setting, in the table's order.
        pub(in crate::config) const KEYS: &[Key] = &[$( key::$field ),*];

        /// One listener's values as written (`authorization:` aside).
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub(in crate::config) struct Fields {
            pub(in crate::config) name: String,
            $( pub(in crate::config) $field: <$kind as Kind>::Written, )*
        }

        /// One listener's settings, typed as the flags give them: from the flags, or
        /// from an entry of the file ([`Fields::args`]).
        #[derive(Debug, Clone)]
        pub(in crate::config) struct ListenerArgs {
            $( pub(in crate::config) $field: <$kind as Kind>::Value, )*
        }

        impl Fields {
            /// An entry's keys: `name`, the table's, and `authorization`.
            pub(super) fn keys() -> Vec<&'static str> {
                let mut keys = vec!["name"];
                keys.extend(KEYS.iter().map(|k| k.key));
                keys.push("authorization");
                keys
            }

            /// Reads an entry's values (in [`Fields::keys`] order, as `strict_fields`
            /// returns them); returns whether it has an `authorization:` block.
            pub(super) fn read<'v>(
                d: &mut Decoder,
                mut values: impl Iterator<Item = Vec<Value<'v>>>,
                at: &str,
            ) -> Result<(Self, bool), String> {
                let mut next = || values.next().unwrap_or_default();
                let name = text(d, &next(), &join(at, "name"))?.unwrap_or_default();
                $( let $field = <$kind as Kind>::read(d, &next(), &join(at, $key))?; )*
                let authorization = !next().is_empty();
                Ok((Self { name, $( $field, )* }, authorization))
            }

            /// The values typed as the flags give them; a value that does not parse is
            /// a problem naming its key, and its default takes its place.
            pub(super) fn args(&self, problems: &mut Problems) -> ListenerArgs {
                ListenerArgs {
                    $( $field: {
                        let default = listener_keys!(@default $($default)?);
                        let value = <$kind as Kind>::parse(self.$field.clone(), default)
                            .map_err(|e| format!("{} {e}", $key));
                        // Unset, a value is its default, which parses (a test checks).
                        let fallback = <$kind as Kind>::parse(Default::default(), default);
                        match fallback {
                            Ok(fallback) => problems.or(value, fallback),
                            Err(_) => unreachable!("{}'s default does not parse", $key),
                        }
                    }, )*
                }
            }
        }

        impl ListenerArgs {
            /// The settings set to something other than their defaults.
            pub(in crate::config) fn given(&self) -> Vec<Key> {
                let mut given = Vec::new();
                $( if <$kind as Kind>::given(&self.$field, listener_keys!(@default $($default)?)) {
                    given.push(key::$field);
                } )*
                given
            }
        }
    };
    (@default $default:expr) => { $default };
    (@default) => { "" };
}

listener_keys! {
    secure_listen_address: Address = "secureListenAddress", "--secure-listen-address";
    upstream: Text = "upstream", "--upstream";
    upstream_ca_file: File = "upstreamCAFile", "--upstream-ca-file";
    upstream_client_cert_file: File = "upstreamClientCertFile", "--upstream-client-cert-file";
    upstream_client_key_file: File = "upstreamClientKeyFile", "--upstream-client-key-file";
    upstream_force_h2c: Bool = "upstreamForceH2C", "--upstream-force-h2c";
    upstream_timeout: Time(defaults::UPSTREAM_TIMEOUT) = "upstreamTimeout", "--upstream-timeout";
    tls_cert_file: File = "tlsCertFile", "--tls-cert-file";
    tls_private_key_file: File = "tlsPrivateKeyFile", "--tls-private-key-file";
    tls_sni_cert_key: Items = "tlsSNICertKey", "--tls-sni-cert-key";
    client_ca_file: File = "clientCAFile", "--client-ca-file";
    allow_paths: List = "allowPaths", "--allow-paths";
    ignore_paths: List = "ignorePaths", "--ignore-paths";
    auth_header_fields_enabled: Bool = "authHeaderFieldsEnabled", "--auth-header-fields-enabled";
    auth_header_user_field_name: Named(defaults::USER_HEADER) = "authHeaderUserFieldName", "--auth-header-user-field-name";
    auth_header_groups_field_name: Named(defaults::GROUPS_HEADER) = "authHeaderGroupsFieldName", "--auth-header-groups-field-name";
    auth_header_groups_field_separator: Named(defaults::GROUPS_SEPARATOR) = "authHeaderGroupsFieldSeparator", "--auth-header-groups-field-separator";
    config_file: File = "configFile", "--config-file";
    rbac_file: Files = "rbacFile", "--rbac-file";
}
