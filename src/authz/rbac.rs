//! Local RBAC (`--rbac-file`): the cluster's own Role/ClusterRole/binding objects,
//! evaluated in-process with the apiserver's RBAC authorizer semantics.
//!
//! A scraper allowed here needs no SubjectAccessReview at all. Local RBAC only ever
//! allows: a "no" falls through to the apiserver, as in the apiserver's own authorizer
//! chain. Aggregated ClusterRoles are not expanded (their `rules` are used as written).

mod lint;

use std::{collections::HashMap, path::PathBuf};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use serde_json::Value;

pub(crate) use self::lint::Warning;
use super::Attributes;
use crate::identity::User;

/// The RBAC objects from every `--rbac-file`, indexed for evaluation.
#[derive(Debug, Default)]
pub(crate) struct Rbac {
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    role_bindings: Vec<RoleBinding>,
    /// Warnings found when the files were loaded (logged then).
    warnings: usize,
}

impl Rbac {
    /// Parses YAML files of RBAC objects: multi-document, or `kind: List`. Other kinds
    /// (a ServiceAccount in the same file) are skipped, so the manifests applied to the
    /// cluster can be handed over unchanged. Errors name the file and line; what loads
    /// but cannot do what was meant (`lint.rs`) is logged as a warning with its file and
    /// line, and counted in `warnings`.
    pub(crate) fn parse(files: &[(PathBuf, Vec<u8>)]) -> Result<Self, String> {
        let (mut rbac, warnings) = Self::parse_and_lint(files)?;
        for w in &warnings {
            tracing::warn!(file = %w.file, line = w.line, "--rbac-file {} line {}: {}", w.file, w.line, w.text);
        }
        rbac.warnings = warnings.len();
        Ok(rbac)
    }

    /// `parse`, and the warnings it logs.
    pub(crate) fn parse_and_lint(
        files: &[(PathBuf, Vec<u8>)],
    ) -> Result<(Self, Vec<Warning>), String> {
        let mut rbac = Self::default();
        let mut texts = Vec::with_capacity(files.len());
        for (path, bytes) in files {
            let origin = path.display();
            let text = std::str::from_utf8(bytes).map_err(|e| format!("{origin}: {e}"))?;
            let label = |e: String| e.replace("<input>", &origin.to_string());
            let docs: Vec<Value> = serde_saphyr::from_multiple(text)
                .map_err(|e| format!("{origin}: {}", label(e.to_string())))?;
            for doc in docs {
                rbac.add(doc).map_err(|e| match located(text) {
                    // The same mistake, found again by a typed reading that knows lines.
                    Some(at) => format!("{origin}: {e}\n{}", label(at)),
                    None => format!("{origin}: {e}"),
                })?;
            }
            texts.push((origin.to_string(), text));
        }
        let warnings = lint::lint(&texts, &rbac);
        Ok((rbac, warnings))
    }

    /// How many warnings the files had when they were loaded.
    pub(crate) fn warnings(&self) -> usize {
        self.warnings
    }

    fn add(&mut self, doc: Value) -> Result<(), String> {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let name = doc["metadata"]["name"].as_str().unwrap_or("?").to_owned();
        let what = || format!("{kind} {name:?}");
        let namespace = || {
            doc["metadata"]["namespace"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{} has no metadata.namespace", what()))
        };
        match kind.as_str() {
            "List" => {
                let Value::Array(items) = doc["items"].clone() else {
                    return Err("List without items".into());
                };
                for item in items {
                    self.add(item)?;
                }
            }
            "ClusterRole" => {
                let role: ClusterRole = from_value(&doc, &what)?;
                self.cluster_roles
                    .insert(name, role.rules.unwrap_or_default());
            }
            "Role" => {
                let namespace = namespace()?;
                let role: Role = from_value(&doc, &what)?;
                self.roles
                    .insert((namespace, name), role.rules.unwrap_or_default());
            }
            "ClusterRoleBinding" => self.cluster_role_bindings.push(from_value(&doc, &what)?),
            "RoleBinding" => {
                namespace()?;
                self.role_bindings.push(from_value(&doc, &what)?);
            }
            "" if doc.is_null() => {}
            "" => return Err("a document without kind".into()),
            other => tracing::debug!(kind = other, "--rbac-file: skipping a non-RBAC object"),
        }
        Ok(())
    }

    /// Which binding allows `attributes` for `user`, if any:
    /// `ClusterRoleBinding "b" → ClusterRole "r"`.
    pub(crate) fn allows(&self, user: &User, attributes: &Attributes) -> Option<String> {
        for binding in &self.cluster_role_bindings {
            if !subjects_match(binding.subjects.as_deref(), None, user) {
                continue;
            }
            if self.rules_allow(&binding.role_ref, None, attributes) {
                return Some(describe(
                    "ClusterRoleBinding",
                    binding.metadata.name.as_deref(),
                    &binding.role_ref,
                ));
            }
        }
        // RoleBindings grant only resource requests in their own namespace.
        let requested = attributes.resource.as_ref()?;
        for binding in &self.role_bindings {
            let namespace = binding.metadata.namespace.as_deref();
            if namespace != Some(requested.namespace.as_str())
                || !subjects_match(binding.subjects.as_deref(), namespace, user)
            {
                continue;
            }
            if self.rules_allow(&binding.role_ref, namespace, attributes) {
                return Some(describe(
                    "RoleBinding",
                    binding.metadata.name.as_deref(),
                    &binding.role_ref,
                ));
            }
        }
        None
    }

    fn rules_allow(
        &self,
        role_ref: &RoleRef,
        namespace: Option<&str>,
        attributes: &Attributes,
    ) -> bool {
        let rules = match (role_ref.kind.as_str(), namespace) {
            ("ClusterRole", _) => self.cluster_roles.get(&role_ref.name),
            ("Role", Some(ns)) => self.roles.get(&(ns.to_owned(), role_ref.name.clone())),
            _ => None,
        };
        rules.is_some_and(|rules| rules.iter().any(|rule| rule_allows(rule, attributes)))
    }

    /// Whether any object was loaded (an empty file set allows nothing).
    pub(crate) fn is_empty(&self) -> bool {
        self.cluster_role_bindings.is_empty() && self.role_bindings.is_empty()
    }
}

/// The RBAC fields of any document, typed, read straight from the YAML so that a
/// mistake comes with its line, column and a caret. Other kinds' fields are ignored.
#[derive(serde::Deserialize)]
#[expect(dead_code, reason = "read only to find where a document is malformed")]
struct Located {
    metadata: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
    rules: Option<Vec<PolicyRule>>,
    subjects: Option<Vec<Subject>>,
    #[serde(rename = "roleRef")]
    role_ref: Option<RoleRef>,
    items: Option<Vec<Located>>,
}

/// Where the file goes wrong, in serde-saphyr's words (line, column, snippet), if a
/// typed reading finds it.
fn located(text: &str) -> Option<String> {
    serde_saphyr::from_multiple::<Located>(text)
        .err()
        .map(|e| e.to_string())
}

fn from_value<T: serde::de::DeserializeOwned>(
    doc: &Value,
    what: &dyn Fn() -> String,
) -> Result<T, String> {
    serde_json::from_value(doc.clone()).map_err(|e| format!("{}: {e}", what()))
}

fn describe(kind: &str, name: Option<&str>, role_ref: &RoleRef) -> String {
    format!(
        "{kind} {:?} → {} {:?} (local RBAC)",
        name.unwrap_or_default(),
        role_ref.kind,
        role_ref.name
    )
}

/// The apiserver's `appliesTo`: User by name, Group by membership, ServiceAccount by
/// its `system:serviceaccount:<ns>:<name>` user name (namespace defaulting to the
/// RoleBinding's own).
fn subjects_match(
    subjects: Option<&[Subject]>,
    binding_namespace: Option<&str>,
    user: &User,
) -> bool {
    subjects
        .unwrap_or_default()
        .iter()
        .any(|subject| match subject.kind.as_str() {
            "User" => subject.name == user.name,
            "Group" => user.groups.contains(&subject.name),
            "ServiceAccount" => {
                let namespace = subject
                    .namespace
                    .as_deref()
                    .filter(|ns| !ns.is_empty())
                    .or(binding_namespace)
                    .unwrap_or_default();
                !namespace.is_empty()
                    && user.name == format!("system:serviceaccount:{namespace}:{}", subject.name)
            }
            _ => false,
        })
}

/// The apiserver's `RuleAllows`.
pub(crate) fn rule_allows(rule: &PolicyRule, attributes: &Attributes) -> bool {
    let verbs = rule.verbs.iter().any(|v| v == "*" || *v == attributes.verb);
    if !verbs {
        return false;
    }
    match &attributes.resource {
        None => rule
            .non_resource_urls
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|url| non_resource_url_matches(url, &attributes.path)),
        Some(requested) => {
            let groups = rule.api_groups.as_deref().unwrap_or_default();
            let group_ok = groups.iter().any(|g| g == "*" || *g == requested.group);
            let combined = if requested.subresource.is_empty() {
                requested.resource.clone()
            } else {
                format!("{}/{}", requested.resource, requested.subresource)
            };
            let resources = rule.resources.as_deref().unwrap_or_default();
            let resource_ok = resources.iter().any(|r| {
                r == "*"
                    || *r == combined
                    || (!requested.subresource.is_empty()
                        && r.strip_prefix("*/") == Some(requested.subresource.as_str()))
            });
            let names = rule.resource_names.as_deref().unwrap_or_default();
            let name_ok = names.is_empty() || names.contains(&requested.name);
            group_ok && resource_ok && name_ok
        }
    }
}

/// `*` matches everything; `/p*` is a prefix; anything else is exact. Case-sensitive,
/// no normalisation — as the apiserver does it.
pub(crate) fn non_resource_url_matches(rule: &str, path: &str) -> bool {
    if rule == "*" || rule == path {
        return true;
    }
    rule.strip_suffix('*')
        .is_some_and(|prefix| path.starts_with(prefix))
}

#[cfg(test)]
mod tests;
