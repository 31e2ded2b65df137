//! `--config-file`: kube-rbac-proxy's authorization config, read as kube-rbac-proxy
//! reads it.
//!
//! ```yaml
//! authorization:
//!   resourceAttributes: {namespace, apiGroup, apiVersion, resource, subresource, name, verb}
//!   rewrites:
//!     byQueryParameter: {name: "<param>"}
//!     byHttpHeader:     {name: "<header>"}
//!   static:
//!   - user: {name: <string>, groups: [..]}
//!     verb: ..; namespace: ..; apiGroup: ..; resource: ..; subresource: ..; name: ..
//!     resourceRequest: <bool>; path: <string>
//! ```
//!
//! Every file kube-rbac-proxy starts with is accepted (`yaml.rs` has its YAML rules:
//! keys in any case, unknown keys ignored with a warning naming key, file and line), and
//! means what it means there — including settings that have no effect or deny
//! everything, which are warned about (`schema.rs`). The hard errors are what
//! kube-rbac-proxy refuses too, and templates other than `{{ .Value }}`, which it would
//! render as an empty string (a cluster-wide review where a namespaced one was meant).
//!
//! Two deliberate differences: `resourceAttributes.verb` is honoured as in the
//! opendatahub fork (upstream ignores the key), and `user.groups` in a static rule is
//! honoured (any listed group matches; upstream ignores it). As in kube-rbac-proxy, a
//! request no static rule allows goes on to a SubjectAccessReview.

mod endpoints;
mod read;
mod schema;
mod template;

use std::{borrow::Cow, sync::Arc};

use http::{HeaderMap, HeaderName, Method, Uri};

use self::{endpoints::Endpoints, template::Template};
use super::{plan::Plan, rewrite, verb_for, Attributes, ResourceAttributes};
use crate::{error::ProxyError, identity::User};

/// The parsed config file.
#[derive(Debug, Default, Clone)]
pub(super) struct ConfigFile {
    authorization: Authorization,
}

#[derive(Debug, Default, Clone)]
struct Authorization {
    resource_attributes: Option<ResourceTemplate>,
    rewrites: Option<Rewrites>,
    static_rules: Vec<StaticRule>,
    /// The fork's "Format 2": tried first; a path none matches gets the rest.
    endpoints: Endpoints,
}

/// `resourceAttributes`: the resource every request is reviewed as.
#[derive(Debug, Default, Clone)]
struct ResourceTemplate {
    line: u64,
    namespace: Template,
    api_group: Template,
    api_version: Template,
    resource: Template,
    subresource: Template,
    name: Template,
    /// Empty: the verb of the request's method.
    verb: String,
}

/// `rewrites`: where the `{{ .Value }}`s come from. An empty name is no source.
#[derive(Debug, Default, Clone)]
struct Rewrites {
    line: u64,
    by_query_parameter: String,
    by_http_header: String,
}

/// One static rule; empty fields match anything.
#[derive(Debug, Default, Clone)]
pub(super) struct StaticRule {
    line: u64,
    user: UserMatch,
    verb: String,
    namespace: String,
    api_group: String,
    resource: String,
    subresource: String,
    name: String,
    resource_request: bool,
    path: String,
}

#[derive(Debug, Default, Clone)]
struct UserMatch {
    name: String,
    groups: Vec<String>,
}

impl ConfigFile {
    /// What a request must be allowed to do: the first endpoint matching its path
    /// decides (`endpoints.rs`); otherwise `attributes`.
    pub(super) fn plan(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<Plan, ProxyError> {
        match self
            .authorization
            .endpoints
            .plan(method, uri, headers, path)
        {
            Some(plan) => plan,
            None => self.attributes(method, uri, headers, path).map(Plan::from),
        }
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
        let Some(template) = &self.authorization.resource_attributes else {
            // Rewrites without resourceAttributes change nothing, in kube-rbac-proxy too.
            return Ok(vec![Attributes::new(method, path)]);
        };
        let verb: Cow<'_, str> = if template.verb.is_empty() {
            verb_for(method)
        } else {
            Cow::Borrowed(&template.verb)
        };
        let path: Arc<str> = Arc::from(path);
        let Some(rewrites) = &self.authorization.rewrites else {
            return Ok(vec![template.literal(&verb, &path)]);
        };
        let query = Some(rewrites.by_query_parameter.as_str()).filter(|n| !n.is_empty());
        let header = rewrites.header();
        let values = rewrite::values(query, header.as_ref().map(HeaderName::as_str), uri, headers)?;
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

impl Rewrites {
    /// The header values come from, if it names a valid one.
    fn header(&self) -> Option<HeaderName> {
        let name = self.by_http_header.trim();
        (!name.is_empty())
            .then(|| HeaderName::try_from(name).ok())
            .flatten()
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

    fn uses_value(&self) -> bool {
        self.fields().iter().any(|t| t.uses_value())
    }

    /// The record with one rewrite value templated in.
    fn record(&self, verb: &str, path: &Arc<str>, value: &str) -> Attributes {
        self.build(verb, path, |t| t.render(value))
    }

    /// The record with no rewrites: kube-rbac-proxy uses the text as written.
    fn literal(&self, verb: &str, path: &Arc<str>) -> Attributes {
        self.build(verb, path, |t| t.raw.clone())
    }

    fn build(&self, verb: &str, path: &Arc<str>, text: impl Fn(&Template) -> String) -> Attributes {
        Attributes {
            verb: verb.to_owned(),
            path: Arc::clone(path),
            resource: Some(ResourceAttributes {
                namespace: text(&self.namespace),
                group: text(&self.api_group),
                version: text(&self.api_version),
                resource: text(&self.resource),
                subresource: text(&self.subresource),
                name: text(&self.name),
            }),
        }
    }
}

impl StaticRule {
    /// kube-rbac-proxy's `StaticAuthorizationConfig.Matches`: every non-empty field
    /// equal, `resourceRequest` equal. A non-resource request has empty resource fields
    /// and a resource request an empty path, as kube-rbac-proxy builds them. Groups are
    /// ours: any listed group matches.
    fn matches(&self, user: &User, attributes: &Attributes) -> bool {
        let any = |want: &str, got: &str| want.is_empty() || want == got;
        let none = ResourceAttributes::default();
        let (resource, path) = match &attributes.resource {
            Some(r) => (r, ""),
            None => (&none, &*attributes.path),
        };
        self.resource_request == attributes.resource.is_some()
            && any(&self.user.name, &user.name)
            && (self.user.groups.is_empty()
                || self.user.groups.iter().any(|g| user.groups.contains(g)))
            && any(&self.verb, &attributes.verb)
            && any(&self.path, path)
            && any(&self.namespace, &resource.namespace)
            && any(&self.api_group, &resource.group)
            && any(&self.resource, &resource.resource)
            && any(&self.subresource, &resource.subresource)
            && any(&self.name, &resource.name)
    }
}

#[cfg(test)]
mod tests;
