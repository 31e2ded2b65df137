//! `authorization.endpoints`: per-path, per-method resource rules, as the opendatahub
//! kube-rbac-proxy fork reads them ("Format 2", its `pkg/authz/endpoints.go`), plus a few
//! keys of ours (`docs/policy.md` says which).
//!
//! ```yaml
//! authorization:
//!   endpoints:
//!   - path: /api/v1/evaluations/jobs/*/events    # literal, `*` (one segment), {name} (ours)
//!     authorizers: [static, rbac, subjectAccessReview]   # ours; default all three
//!     mappings:
//!     - methods: [post]                          # case-insensitive
//!       resources:                               # all must allow (or `anyOf`, ours)
//!       - rewrites: {byHttpHeader: {name: X-Tenant}}
//!         resourceAttributes:                    # every field a template
//!           namespace: "{{ .FromHeader }}"
//!           apiGroup: trustyai.opendatahub.io
//!           resource: status-events
//!           verb: create                         # default: the method's verb
//! ```
//!
//! The request path is cleaned (Go's `path.Clean`) and split at `/`; an endpoint matches
//! when its own path, split the same way (not cleaned), has as many segments and each
//! is equal (percent-decoded, as Go compares `URL.Path`), `*` or a capture. The first
//! endpoint that matches decides; a path none matches is authorized by the rest of the
//! file. Within the endpoint the first mapping listing the method applies; none is a
//! 403 without a review.

mod read;

use std::{borrow::Cow, sync::Arc};

use http::{HeaderMap, Method, Uri};

pub(super) use self::read::endpoints;
use super::template::{Data, Template};
use crate::{
    authz::{
        plan::{Authorizers, Checks, Combine, Plan},
        rewrite, Attributes, ResourceAttributes,
    },
    error::ProxyError,
};

/// The `endpoints` list, in file order.
#[derive(Debug, Default, Clone)]
pub(super) struct Endpoints {
    pub(super) list: Vec<Endpoint>,
    /// `NODE_NAME` when the file was read, for `{{ .NodeName }}`.
    pub(super) node_name: Arc<str>,
}

#[derive(Debug, Default, Clone)]
pub(super) struct Endpoint {
    pub(super) line: u64,
    pub(super) path: String,
    pub(super) segments: Vec<Segment>,
    pub(super) mappings: Vec<Mapping>,
    pub(super) authorizers: Authorizers,
}

/// One `/`-separated part of an endpoint's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    Literal(String),
    /// `*`: any one segment.
    Any,
    /// `{name}` (ours): any one segment, available as `.PathParams.name`.
    Capture(String),
}

#[derive(Debug, Default, Clone)]
pub(super) struct Mapping {
    pub(super) line: u64,
    /// As written; matched case-insensitively.
    pub(super) methods: Vec<String>,
    pub(super) rules: Vec<Rule>,
    pub(super) combine: Combine,
}

/// One resource rule: one record to decide.
#[derive(Debug, Default, Clone)]
pub(super) struct Rule {
    pub(super) line: u64,
    /// `rewrites.byHttpHeader.name`: required in the request.
    pub(super) header: Option<String>,
    /// `rewrites.byQueryParameter.name`: required in the request.
    pub(super) query: Option<String>,
    pub(super) namespace: Template,
    pub(super) api_group: Template,
    pub(super) api_version: Template,
    pub(super) resource: Template,
    pub(super) subresource: Template,
    pub(super) name: Template,
    /// Empty (or rendering empty): the method's verb.
    pub(super) verb: Template,
}

impl Endpoints {
    /// The plan for a request whose path an endpoint matches; `None` when none does.
    pub(super) fn plan(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        path: &str,
    ) -> Option<Result<Plan, ProxyError>> {
        if self.list.is_empty() {
            return None;
        }
        let cleaned = clean(path);
        let segments: Vec<Cow<'_, str>> = cleaned.split('/').map(decode).collect();
        let (index, endpoint, params) = self
            .list
            .iter()
            .enumerate()
            .find_map(|(i, e)| e.matches(&segments).map(|params| (i, e, params)))?;
        let described = format!("endpoint {} ({})", index + 1, endpoint.path);
        let Some((m, mapping)) = endpoint
            .mappings
            .iter()
            .enumerate()
            .find(|(_, m)| m.lists(method))
        else {
            return Some(Ok(Plan::Refuse {
                action: format!("{method} path {path:?}"),
                reason: format!("{described} has no mapping for {method}"),
            }));
        };
        let origin = format!(
            "{described}, mapping {} ({})",
            m + 1,
            mapping.methods.join(", ")
        );
        let request = Request {
            method,
            uri,
            headers,
            path: Arc::from(path),
            params: &params,
            node_name: &self.node_name,
        };
        let records = mapping
            .rules
            .iter()
            .map(|rule| rule.record(&request))
            .collect::<Result<Vec<_>, _>>();
        Some(records.map(|records| {
            Plan::Check(Checks {
                records,
                combine: mapping.combine,
                authorizers: endpoint.authorizers,
                origin: Some(origin),
            })
        }))
    }
}

impl Endpoint {
    /// The captures, if the cleaned, split request path matches.
    fn matches(&self, request: &[Cow<'_, str>]) -> Option<Vec<(String, String)>> {
        if self.segments.len() != request.len() {
            return None;
        }
        let mut params = Vec::new();
        for (want, got) in self.segments.iter().zip(request) {
            match want {
                Segment::Any => {}
                Segment::Literal(text) if text == got => {}
                Segment::Literal(_) => return None,
                Segment::Capture(name) => params.push((name.clone(), got.to_string())),
            }
        }
        Some(params)
    }
}

impl Mapping {
    fn lists(&self, method: &Method) -> bool {
        self.methods
            .iter()
            .any(|m| m.eq_ignore_ascii_case(method.as_str()))
    }
}

/// What a rule's templates are rendered from.
struct Request<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    path: Arc<str>,
    params: &'a [(String, String)],
    node_name: &'a str,
}

impl Rule {
    /// The record this rule asks for; 400 when a rewrite's value is missing.
    fn record(&self, request: &Request<'_>) -> Result<Attributes, ProxyError> {
        let from_header = match &self.header {
            Some(name) => header_value(request.headers, name)?,
            None => String::new(),
        };
        let from_query_string = match &self.query {
            Some(name) => query_value(request.uri, name)?,
            None => String::new(),
        };
        let from_method = method_verb(request.method);
        let value = if from_header.is_empty() {
            &from_query_string
        } else {
            &from_header
        };
        let data = Data {
            value,
            from_header: &from_header,
            from_query_string: &from_query_string,
            from_method: &from_method,
            node_name: request.node_name,
            path_params: request.params,
        };
        let mut verb = self.verb.render_with(&data);
        if verb.is_empty() {
            verb = from_method.clone().into_owned();
        }
        Ok(Attributes {
            verb,
            path: Arc::clone(&request.path),
            resource: Some(ResourceAttributes {
                namespace: self.namespace.render_with(&data),
                group: self.api_group.render_with(&data),
                version: self.api_version.render_with(&data),
                resource: self.resource.render_with(&data),
                subresource: self.subresource.render_with(&data),
                name: self.name.render_with(&data),
            }),
        })
    }

    pub(super) fn templates(&self) -> [(&'static str, &Template); 7] {
        [
            ("namespace", &self.namespace),
            ("apiGroup", &self.api_group),
            ("apiVersion", &self.api_version),
            ("resource", &self.resource),
            ("subresource", &self.subresource),
            ("name", &self.name),
            ("verb", &self.verb),
        ]
    }
}

/// The fork's `HTTPToKubeVerb` (HEAD is `head` here, not `get`); a method it does not
/// know is its own name in lower case where the fork reviews an empty verb.
pub(super) fn method_verb(method: &Method) -> Cow<'static, str> {
    match *method {
        Method::GET => "get".into(),
        Method::POST => "create".into(),
        Method::PUT => "update".into(),
        Method::DELETE => "delete".into(),
        Method::PATCH => "patch".into(),
        Method::OPTIONS => "options".into(),
        Method::HEAD => "head".into(),
        ref other => other.as_str().to_ascii_lowercase().into(),
    }
}

/// The header's value; 400 when it is missing or empty (the fork's "required header is
/// missing"), not visible ASCII, or given twice with different values (the fork reviews
/// the first; the upstream may read another).
fn header_value(headers: &HeaderMap, name: &str) -> Result<String, ProxyError> {
    let mut found: Option<&str> = None;
    for value in headers.get_all(name) {
        let value = value.to_str().map_err(|_| {
            ProxyError::BadRequest("the endpoint rule's header value is not visible ASCII")
        })?;
        match found {
            Some(first) if first != value => {
                return Err(ProxyError::BadRequest(
                    "the endpoint rule's header is given twice with different values",
                ))
            }
            _ => found = Some(value),
        }
    }
    match found {
        Some(value) if !value.is_empty() => Ok(value.to_owned()),
        _ => Err(ProxyError::BadRequest(
            "a header the endpoint rule requires is missing",
        )),
    }
}

/// The query parameter's value (empty if given as `?name=`); 400 when it is absent,
/// not UTF-8, or given twice with different values.
fn query_value(uri: &Uri, name: &str) -> Result<String, ProxyError> {
    let values = rewrite::query_values(uri.query().unwrap_or_default(), name).ok_or(
        ProxyError::BadRequest("the endpoint rule's query parameter is not valid UTF-8"),
    )?;
    let Some(first) = values.first() else {
        return Err(ProxyError::BadRequest(
            "a query parameter the endpoint rule requires is missing",
        ));
    };
    if values.iter().any(|v| v != first) {
        return Err(ProxyError::BadRequest(
            "the endpoint rule's query parameter is given twice with different values",
        ));
    }
    Ok(first.clone())
}

/// Go's `path.Clean` for a request path: one slash between segments, no `.`, `..`
/// resolved (never above the root), no trailing slash; `""` is `/`.
pub(super) fn clean(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    format!("/{}", out.join("/"))
}

/// A path segment percent-decoded, as Go's `URL.Path` is (an invalid escape stays as
/// written; bytes that are not UTF-8 become U+FFFD and match no literal).
fn decode(segment: &str) -> Cow<'_, str> {
    if !segment.contains('%') {
        return Cow::Borrowed(segment);
    }
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests;
