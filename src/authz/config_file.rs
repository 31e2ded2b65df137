//! `--config-file`: kube-rbac-proxy's authorization config, read unchanged.
//!
//! ```yaml
//! authorization:
//!   resourceAttributes: {namespace, apiGroup, apiVersion, resource, subresource, name}
//!   rewrites:
//!     byQueryParameter: {name: "<param>"}
//!     byHttpHeader:     {name: "<header>"}
//!   static:
//!   - user: {name: <string>, groups: [..]}
//!     verb: ..; namespace: ..; apiGroup: ..; resource: ..; subresource: ..; name: ..
//!     resourceRequest: <bool>; path: <string>
//! ```
//!
//! Two deliberate improvements on kube-rbac-proxy: `user.groups` in a static rule is
//! honoured (any listed group matches; kube-rbac-proxy ignores it), and static rules
//! compose with SubjectAccessReviews instead of replacing them. Unknown keys, templates
//! other than `{{ .Value }}` and contradictory settings are startup errors with a line.

use std::{path::PathBuf, sync::Arc};

use http::{HeaderMap, Method, Uri};
use serde::Deserialize;

use super::{rewrite, verb_for, Attributes, ResourceAttributes};
use crate::{error::ProxyError, identity::User};

/// The parsed, validated config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    #[serde(default)]
    authorization: Authorization,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Authorization {
    resource_attributes: Option<ResourceTemplate>,
    rewrites: Option<Rewrites>,
    #[serde(default, rename = "static")]
    static_rules: Vec<StaticRule>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResourceTemplate {
    #[serde(default)]
    namespace: Template,
    #[serde(default)]
    api_group: Template,
    #[serde(default)]
    api_version: Template,
    #[serde(default)]
    resource: Template,
    #[serde(default)]
    subresource: Template,
    #[serde(default)]
    name: Template,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Rewrites {
    by_query_parameter: Option<NameRef>,
    by_http_header: Option<NameRef>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameRef {
    name: String,
}

/// One static rule; empty fields match anything.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct StaticRule {
    #[serde(default)]
    user: UserMatch,
    #[serde(default)]
    verb: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    api_group: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    resource_request: bool,
    #[serde(default)]
    path: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserMatch {
    #[serde(default)]
    name: String,
    #[serde(default)]
    groups: Vec<String>,
}

/// A string that may be exactly Go's `{{ .Value }}` (spacing free) or contain no
/// template at all. Anything else is refused while parsing, so the error has a line.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(try_from = "String")]
struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Value,
}

impl TryFrom<String> for Template {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let end = rest[start..]
                .find("}}")
                .ok_or_else(|| format!("unclosed template in {text:?}"))?;
            let inner = rest[start + 2..start + end].trim();
            if inner != ".Value" {
                return Err(format!(
                    "unsupported template {{{{ {inner} }}}} in {text:?}: only {{{{ .Value }}}} is supported"
                ));
            }
            parts.push(Part::Value);
            rest = &rest[start + end + 2..];
        }
        if rest.contains("}}") {
            return Err(format!("stray '}}}}' in {text:?}"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }
}

impl Template {
    fn render(&self, value: &str) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.as_str(),
                Part::Value => value,
            })
            .collect()
    }

    fn uses_value(&self) -> bool {
        self.parts.contains(&Part::Value)
    }
}

impl ConfigFile {
    /// Parses and validates; errors name the file and, where the YAML parser can, the line.
    pub(super) fn parse(files: &[(PathBuf, Vec<u8>)]) -> Result<Self, String> {
        let Some((path, bytes)) = files.first() else {
            return Ok(Self::default());
        };
        let origin = path.display();
        let text = std::str::from_utf8(bytes).map_err(|e| format!("{origin}: {e}"))?;
        let file: Self = if text.trim().is_empty() {
            Self::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| format!("{origin}: {e}"))?
        };
        file.validate().map_err(|e| format!("{origin}: {e}"))?;
        Ok(file)
    }

    fn validate(&self) -> Result<(), String> {
        let authz = &self.authorization;
        if let Some(rewrites) = &authz.rewrites {
            let named = [&rewrites.by_query_parameter, &rewrites.by_http_header]
                .into_iter()
                .flatten()
                .any(|n| !n.name.trim().is_empty());
            if !named {
                return Err("authorization.rewrites names neither byQueryParameter.name nor byHttpHeader.name".into());
            }
            if authz.resource_attributes.is_none() {
                return Err("authorization.rewrites needs authorization.resourceAttributes (the values are templated into it)".into());
            }
            if let Some(header) = &rewrites.by_http_header {
                http::HeaderName::try_from(header.name.trim()).map_err(|_| {
                    format!(
                        "authorization.rewrites.byHttpHeader.name {:?} is not a header name",
                        header.name
                    )
                })?;
            }
        } else if let Some(template) = &authz.resource_attributes {
            if template.fields().iter().any(|t| t.uses_value()) {
                return Err("authorization.resourceAttributes uses {{ .Value }} but no rewrites say where the value comes from".into());
            }
        }
        for (i, rule) in authz.static_rules.iter().enumerate() {
            let resource_fields = [
                &rule.namespace,
                &rule.api_group,
                &rule.resource,
                &rule.subresource,
                &rule.name,
            ];
            if rule.resource_request && !rule.path.is_empty() {
                return Err(format!(
                    "authorization.static[{i}]: resourceRequest: true cannot also match a path"
                ));
            }
            if !rule.resource_request && resource_fields.iter().any(|f| !f.is_empty()) {
                return Err(format!(
                    "authorization.static[{i}]: resource fields need resourceRequest: true"
                ));
            }
        }
        Ok(())
    }

    /// The attributes to authorize for a request: one non-resource record (the path),
    /// one resource record, or with rewrites one per value — every one must be allowed.
    /// Rewrites with no value in the request are a 400, as in kube-rbac-proxy.
    pub(super) fn attributes(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<Vec<Attributes>, ProxyError> {
        let verb = verb_for(method);
        let Some(template) = &self.authorization.resource_attributes else {
            return Ok(vec![Attributes::non_resource(&verb, path)]);
        };
        let path: Arc<str> = Arc::from(path);
        let Some(rewrites) = &self.authorization.rewrites else {
            return Ok(vec![template.record(&verb, &path, "")]);
        };
        let query = rewrites
            .by_query_parameter
            .as_ref()
            .map(|n| n.name.as_str())
            .filter(|n| !n.is_empty());
        let header = rewrites
            .by_http_header
            .as_ref()
            .map(|n| n.name.trim())
            .filter(|n| !n.is_empty());
        let values = rewrite::values(query, header, uri, headers)?;
        Ok(values
            .iter()
            .map(|v| template.record(&verb, &path, v))
            .collect())
    }

    /// The first static rule that allows `attributes` for `user`, described.
    pub(super) fn static_allows(&self, user: &User, attributes: &Attributes) -> Option<String> {
        self.authorization
            .static_rules
            .iter()
            .position(|rule| rule.matches(user, attributes))
            .map(|i| format!("static rule {i} in --config-file"))
    }

    /// Whether the file adds anything beyond the default non-resource review.
    pub(super) fn has_static_rules(&self) -> bool {
        !self.authorization.static_rules.is_empty()
    }
}

impl ResourceTemplate {
    fn fields(&self) -> [&Template; 6] {
        [
            &self.namespace,
            &self.api_group,
            &self.api_version,
            &self.resource,
            &self.subresource,
            &self.name,
        ]
    }

    fn record(&self, verb: &str, path: &Arc<str>, value: &str) -> Attributes {
        Attributes {
            verb: verb.to_owned(),
            path: Arc::clone(path),
            resource: Some(ResourceAttributes {
                namespace: self.namespace.render(value),
                group: self.api_group.render(value),
                version: self.api_version.render(value),
                resource: self.resource.render(value),
                subresource: self.subresource.render(value),
                name: self.name.render(value),
            }),
        }
    }
}

impl StaticRule {
    fn matches(&self, user: &User, attributes: &Attributes) -> bool {
        let any = |want: &str, got: &str| want.is_empty() || want == got;
        let user_ok = any(&self.user.name, &user.name)
            && (self.user.groups.is_empty()
                || self.user.groups.iter().any(|g| user.groups.contains(g)));
        if !user_ok || !any(&self.verb, &attributes.verb) || !any(&self.path, &attributes.path) {
            return false;
        }
        match (&attributes.resource, self.resource_request) {
            (None, false) => true,
            (Some(r), true) => {
                any(&self.namespace, &r.namespace)
                    && any(&self.api_group, &r.group)
                    && any(&self.resource, &r.resource)
                    && any(&self.subresource, &r.subresource)
                    && any(&self.name, &r.name)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ConfigFile, String> {
        ConfigFile::parse(&[("config.yaml".into(), yaml.as_bytes().to_vec())])
    }

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..User::default()
        }
    }

    #[test]
    fn no_resource_attributes_means_a_non_resource_review_of_the_path() {
        let config = parse("authorization: {}\n").unwrap();
        let attrs = config
            .attributes(
                &Method::GET,
                &"/metrics?x=1".parse().unwrap(),
                &HeaderMap::new(),
                "/metrics",
            )
            .unwrap();
        assert_eq!(attrs, vec![Attributes::non_resource("get", "/metrics")]);
    }

    #[test]
    fn rewrites_template_one_record_per_value() {
        let config = parse(
            r#"
authorization:
  resourceAttributes:
    namespace: "{{ .Value }}"
    apiGroup: monitoring.coreos.com
    apiVersion: v1
    resource: prometheusrules
  rewrites:
    byQueryParameter: {name: namespace}
    byHttpHeader: {name: x-namespace}
"#,
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-namespace", "team-c".parse().unwrap());
        let attrs = config
            .attributes(
                &Method::GET,
                &"/api/v1/rules?namespace=team-a&namespace=team%2Db"
                    .parse()
                    .unwrap(),
                &headers,
                "/api/v1/rules",
            )
            .unwrap();
        let namespaces: Vec<&str> = attrs
            .iter()
            .map(|a| a.resource.as_ref().unwrap().namespace.as_str())
            .collect();
        assert_eq!(namespaces, ["team-a", "team-b", "team-c"]);
        let first = attrs[0].resource.as_ref().unwrap();
        assert_eq!(first.group, "monitoring.coreos.com");
        assert_eq!(first.resource, "prometheusrules");
        assert_eq!(attrs[0].verb, "get");

        let none = config.attributes(
            &Method::GET,
            &"/api/v1/rules".parse().unwrap(),
            &HeaderMap::new(),
            "/api/v1/rules",
        );
        assert!(matches!(none, Err(ProxyError::BadRequest(_))));
    }

    #[test]
    fn rewrite_values_are_deduplicated_capped_and_share_the_path() {
        let config = parse(
            r#"
authorization:
  resourceAttributes: {namespace: "{{ .Value }}", resource: pods, apiVersion: v1}
  rewrites:
    byQueryParameter: {name: namespace}
"#,
        )
        .unwrap();
        let path = format!("/{}", "p".repeat(16 * 1024));
        let attributes = |query: String| {
            let uri: Uri = format!("{path}?{query}").parse().unwrap();
            config.attributes(&Method::GET, &uri, &HeaderMap::new(), &path)
        };
        let repeated = vec!["namespace=a"; 4000].join("&");
        let attrs = attributes(repeated).unwrap();
        assert_eq!(attrs.len(), 1, "4,000 copies of one value are one review");

        let distinct = |n: usize| {
            (0..n)
                .map(|i| format!("namespace=ns{i}"))
                .collect::<Vec<_>>()
                .join("&")
        };
        let attrs = attributes(distinct(rewrite::MAX_VALUES)).unwrap();
        assert_eq!(attrs.len(), rewrite::MAX_VALUES);
        assert!(
            attrs.iter().all(|a| Arc::ptr_eq(&a.path, &attrs[0].path)),
            "one copy of the path for all records"
        );
        assert!(matches!(
            attributes(distinct(rewrite::MAX_VALUES + 1)),
            Err(ProxyError::BadRequest(_))
        ));
    }

    #[test]
    fn static_rules_honour_groups_and_wildcards() {
        let config = parse(
            r#"
authorization:
  static:
  - user: {name: system:serviceaccount:monitoring:prometheus-k8s}
    verb: get
    path: /metrics
  - user: {groups: [scrapers, ops]}
    path: /federate
  - resourceRequest: true
    resource: namespaces
    verb: get
"#,
        )
        .unwrap();
        let table = [
            (
                user("system:serviceaccount:monitoring:prometheus-k8s", &[]),
                Attributes::non_resource("get", "/metrics"),
                true,
            ),
            (
                user("system:serviceaccount:monitoring:prometheus-k8s", &[]),
                Attributes::non_resource("create", "/metrics"),
                false,
            ),
            (
                user("someone", &["ops"]),
                Attributes::non_resource("get", "/federate"),
                true,
            ),
            (
                user("someone", &["ops"]),
                Attributes::non_resource("delete", "/federate"),
                true,
            ),
            (
                user("someone", &["devs"]),
                Attributes::non_resource("get", "/federate"),
                false,
            ),
            (
                user("someone", &["ops"]),
                Attributes::non_resource("get", "/metrics"),
                false,
            ),
            (
                user("anyone", &[]),
                Attributes {
                    verb: "get".into(),
                    path: "/x".into(),
                    resource: Some(ResourceAttributes {
                        resource: "namespaces".into(),
                        ..Default::default()
                    }),
                },
                true,
            ),
            (
                user("anyone", &[]),
                Attributes::non_resource("get", "/namespaces"),
                false,
            ),
        ];
        for (who, attributes, want) in table {
            assert_eq!(
                config.static_allows(&who, &attributes).is_some(),
                want,
                "{} {attributes:?}",
                who.name
            );
        }
    }

    #[test]
    fn mistakes_are_startup_errors_with_a_line() {
        let table = [
            ("authorization:\n  statik: []\n", "line 2"),
            ("authorization:\n  resourceAttributes:\n    namespace: \"{{ .Namespace }}\"\n  rewrites: {byQueryParameter: {name: ns}}\n", "only {{ .Value }}"),
            ("authorization:\n  resourceAttributes: {namespace: \"{{ .Value }}\"}\n", "no rewrites"),
            ("authorization:\n  rewrites: {byQueryParameter: {name: ns}}\n", "needs authorization.resourceAttributes"),
            ("authorization:\n  static:\n  - {resourceRequest: true, path: /metrics}\n", "static[0]"),
            ("authorization:\n  static:\n  - {resource: pods}\n", "resourceRequest: true"),
        ];
        for (yaml, needle) in table {
            let err = parse(yaml).unwrap_err();
            assert!(
                err.contains("config.yaml") && err.contains(needle),
                "{yaml}\n→ {err}"
            );
        }
        assert!(parse("").is_ok(), "an empty file is an empty config");
    }
}
