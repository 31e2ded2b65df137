//! What an `--rbac-file` says that cannot mean what its author wanted, found at load:
//! a key no RBAC object has (`nonResourceURL:`), a binding to a role no file defines, a
//! ServiceAccount subject a ClusterRoleBinding can never match. Each is a warning with
//! its file and line, never an error: the apiserver stores such objects too (a binding
//! may name a role created later; an unknown field is dropped unless the client asks
//! for strict validation), so refusing them here would refuse manifests that work in a
//! cluster. Left alone, every one of them silently allows nothing.

use super::Rbac;
use crate::yaml::{self, Node, Value};

/// One warning: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Warning {
    pub(crate) file: String,
    pub(crate) line: u64,
    pub(crate) text: String,
}

/// The fields of the objects `Rbac` reads; other keys are unknown.
const ROLE: &[&str] = &["apiVersion", "kind", "metadata", "rules", "aggregationRule"];
const BINDING: &[&str] = &["apiVersion", "kind", "metadata", "roleRef", "subjects"];
const LIST: &[&str] = &["apiVersion", "kind", "metadata", "items"];
const METADATA: &[&str] = &[
    "name",
    "namespace",
    "labels",
    "annotations",
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
    "finalizers",
    "managedFields",
    "selfLink",
];
const RULE: &[&str] = &[
    "apiGroups",
    "resources",
    "resourceNames",
    "nonResourceURLs",
    "verbs",
];
const ROLE_REF: &[&str] = &["apiGroup", "kind", "name"];
const SUBJECT: &[&str] = &["kind", "apiGroup", "name", "namespace"];

/// A binding's `roleRef`, kept until every file is read: the role may be in another.
struct RoleRef {
    file: String,
    line: u64,
    binding: String,
    /// The binding's namespace, for a RoleBinding.
    namespace: Option<String>,
    kind: String,
    name: String,
}

/// Every warning about `files`, which `rbac` was parsed from, in file and line order.
/// A file the span-keeping reader cannot read (it parsed, so this is unlikely) is not
/// linted.
pub(super) fn lint(files: &[(String, &str)], rbac: &Rbac) -> Vec<Warning> {
    let mut lint = Lint::default();
    for (file, text) in files {
        let Ok(docs) = yaml::parse(text) else {
            continue;
        };
        lint.file = file.clone();
        for doc in &docs {
            lint.object(doc);
        }
    }
    let Lint {
        mut warnings,
        role_refs,
        ..
    } = lint;
    for r in role_refs {
        let defined = match (r.kind.as_str(), &r.namespace) {
            ("ClusterRole", _) => rbac.cluster_roles.contains_key(&r.name),
            ("Role", Some(ns)) => rbac.roles.contains_key(&(ns.clone(), r.name.clone())),
            _ => continue,
        };
        if !defined {
            let in_namespace = match (&r.namespace, r.kind.as_str()) {
                (Some(ns), "Role") => format!(" in namespace {ns:?}"),
                _ => String::new(),
            };
            warnings.push(Warning {
                file: r.file,
                line: r.line,
                text: format!(
                    "{} binds {} {:?}{in_namespace}, which no --rbac-file defines: it allows \
                     nothing here (local RBAC sees only these files)",
                    r.binding, r.kind, r.name
                ),
            });
        }
    }
    warnings.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    warnings
}

#[derive(Default)]
struct Lint {
    file: String,
    warnings: Vec<Warning>,
    role_refs: Vec<RoleRef>,
}

impl Lint {
    fn warn(&mut self, line: u64, text: String) {
        self.warnings.push(Warning {
            file: self.file.clone(),
            line,
            text,
        });
    }

    /// One document, or one item of a `kind: List`.
    fn object(&mut self, doc: Value<'_>) {
        let kind = text(field(doc, "kind")).unwrap_or_default();
        let name = field(doc, "metadata")
            .and_then(|m| text(field(m, "name")))
            .unwrap_or_default();
        let what = format!("{kind} {name:?}");
        let fields = match kind.as_str() {
            "ClusterRole" | "Role" => ROLE,
            "ClusterRoleBinding" | "RoleBinding" => BINDING,
            "List" => LIST,
            // Other kinds are skipped by the loader, and so here.
            _ => return,
        };
        self.keys(doc, fields, &what, "");
        if let Some(metadata) = field(doc, "metadata") {
            self.keys(metadata, METADATA, &what, "metadata");
        }
        for (i, rule) in items(field(doc, "rules")).iter().enumerate() {
            self.keys(rule, RULE, &what, &format!("rules[{i}]"));
        }
        for item in items(field(doc, "items")) {
            self.object(item);
        }
        if kind.ends_with("Binding") {
            self.binding(doc, &kind, &what);
        }
    }

    fn binding(&mut self, doc: Value<'_>, kind: &str, what: &str) {
        let cluster_wide = kind == "ClusterRoleBinding";
        let namespace = field(doc, "metadata").and_then(|m| text(field(m, "namespace")));
        if let Some(role_ref) = field(doc, "roleRef") {
            self.keys(role_ref, ROLE_REF, what, "roleRef");
            let ref_kind = text(field(role_ref, "kind")).unwrap_or_default();
            let at = field(role_ref, "name").unwrap_or(role_ref);
            match ref_kind.as_str() {
                "ClusterRole" | "Role" if ref_kind == "ClusterRole" || !cluster_wide => {
                    self.role_refs.push(RoleRef {
                        file: self.file.clone(),
                        line: at.referenced.line(),
                        binding: what.to_owned(),
                        namespace: namespace.clone(),
                        kind: ref_kind.clone(),
                        name: text(field(role_ref, "name")).unwrap_or_default(),
                    });
                }
                _ => self.warn(
                    line(role_ref),
                    format!(
                        "{what}: roleRef.kind {ref_kind:?} is not {}: it allows nothing",
                        if cluster_wide {
                            "ClusterRole"
                        } else {
                            "ClusterRole or Role"
                        }
                    ),
                ),
            }
        }
        for (i, subject) in items(field(doc, "subjects")).iter().enumerate() {
            let at = format!("subjects[{i}]");
            self.keys(subject, SUBJECT, what, &at);
            let subject_kind = text(field(subject, "kind")).unwrap_or_default();
            let subject_name = text(field(subject, "name")).unwrap_or_default();
            match subject_kind.as_str() {
                "ServiceAccount" => {
                    let has_namespace =
                        text(field(subject, "namespace")).is_some_and(|ns| !ns.is_empty());
                    if cluster_wide && !has_namespace {
                        self.warn(
                            line(subject),
                            format!(
                                "{what}: {at} is ServiceAccount {subject_name:?} without a \
                                 namespace: it matches nobody (only a RoleBinding's subjects \
                                 default to its namespace; the apiserver refuses this one)"
                            ),
                        );
                    }
                }
                "User" | "Group" => {}
                other => self.warn(
                    line(subject),
                    format!(
                        "{what}: {at}.kind {other:?} is not User, Group or ServiceAccount: it \
                         matches nobody"
                    ),
                ),
            }
        }
    }

    /// Warns about each key of `map` that is not one of `fields`.
    fn keys(&mut self, map: Value<'_>, fields: &[&str], what: &str, at: &str) {
        let Node::Map(entries) = &map.value else {
            return;
        };
        for (key, _) in entries {
            let Node::Str(name) = &key.value else {
                continue;
            };
            if fields.contains(&name.as_str()) {
                continue;
            }
            let hint = yaml::did_you_mean(name, fields);
            self.warn(
                key.referenced.line(),
                format!(
                    "{what}: unknown key {} is ignored{hint}",
                    yaml::join(at, name)
                ),
            );
        }
    }
}

/// The value of key `name` in `map`, if it is a mapping that has it.
fn field<'n>(map: Value<'n>, name: &str) -> Option<Value<'n>> {
    let Node::Map(entries) = &map.value else {
        return None;
    };
    entries
        .iter()
        .find(|(key, _)| matches!(&key.value, Node::Str(k) if k == name))
        .map(|(_, value)| value)
}

fn text(value: Option<Value<'_>>) -> Option<String> {
    match &value?.value {
        Node::Str(s) => Some(s.clone()),
        _ => None,
    }
}

fn items(value: Option<Value<'_>>) -> Vec<Value<'_>> {
    match value.map(|v| &v.value) {
        Some(Node::Seq(items)) => items.iter().collect(),
        _ => Vec::new(),
    }
}

fn line(value: Value<'_>) -> u64 {
    value.referenced.line()
}
