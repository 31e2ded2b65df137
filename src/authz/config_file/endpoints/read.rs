//! `authorization.endpoints` from the node tree, with the fork's validation
//! (`ValidateAuthorizationConfig`: an empty path, no mappings, a mapping without methods
//! or resources, a blank rewrite name) and ours (captures, templates naming what cannot
//! be there, our keys' values). Every error names the line.

use std::sync::Arc;

use http::HeaderName;

use super::{Endpoint, Endpoints, Mapping, Rule, Segment};
use crate::{
    authz::{
        config_file::template::{is_capture_name, Dialect, Field, Template},
        plan::{Authorizers, Combine},
    },
    yaml::{join, take, Decoder, Value},
};

/// The environment variable `{{ .NodeName }}` reads (set it from the downward API,
/// `spec.nodeName`, as the kubelet's own name is).
pub(crate) const NODE_NAME_ENV: &str = "NODE_NAME";

/// The `endpoints` key's values → `Endpoints` (empty when unset).
pub(in crate::authz::config_file) fn endpoints(
    values: &[Value<'_>],
    d: &mut Decoder,
) -> Result<Endpoints, String> {
    let node_name: Arc<str> = std::env::var(NODE_NAME_ENV).unwrap_or_default().into();
    let Some(items) = d.list(values, "authorization.endpoints")? else {
        return Ok(Endpoints::default());
    };
    let mut list = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("authorization.endpoints[{i}]");
        let line = item.referenced.line();
        let endpoint = match d.objects(&[item], &at)? {
            Some(maps) => endpoint(&maps, &at, d)?,
            // Go decodes `null` into a struct as nothing: an endpoint with no path.
            None => Endpoint::default(),
        };
        let endpoint = Endpoint { line, ..endpoint };
        check(&endpoint, &at, &node_name, d)?;
        list.push(endpoint);
    }
    Ok(Endpoints { list, node_name })
}

fn endpoint(maps: &[Value<'_>], at: &str, d: &mut Decoder) -> Result<Endpoint, String> {
    let [path, mappings, authorizers] =
        take(d.fields(maps, at, &["path", "mappings", "authorizers"])?);
    let (path, path_line) = d
        .string(&path, &join(at, "path"))?
        .unwrap_or((String::new(), maps[0].referenced.line()));
    let at_path = format!("{at} (path {path:?})");
    let segments = segments(&path).map_err(|e| format!("line {path_line}: {at_path}: {e}"))?;
    let mut list = Vec::new();
    if let Some(items) = d.list(&mappings, &join(at, "mappings"))? {
        for (m, item) in items.iter().enumerate() {
            let at = format!("{at_path}: mappings[{m}]");
            let mapping = match d.objects(&[item], &at)? {
                Some(maps) => mapping(&maps, &at, d)?,
                None => Mapping::default(),
            };
            list.push(Mapping {
                line: item.referenced.line(),
                ..mapping
            });
        }
    }
    let authorizers = match authorizers.first() {
        None => Authorizers::default(),
        Some(first) => {
            let names = d.strings(&authorizers, &join(at, "authorizers"))?;
            let line = first.referenced.line();
            authorizers_of(&names).map_err(|e| format!("line {line}: {at}.authorizers: {e}"))?
        }
    };
    Ok(Endpoint {
        line: 0,
        path,
        segments,
        mappings: list,
        authorizers,
    })
}

fn mapping(maps: &[Value<'_>], at: &str, d: &mut Decoder) -> Result<Mapping, String> {
    let [methods, resources, any_of] =
        take(d.fields(maps, at, &["methods", "resources", "anyOf"])?);
    let methods = d.strings(&methods, &join(at, "methods"))?;
    let all = d
        .list(&resources, &join(at, "resources"))?
        .unwrap_or_default();
    let any = d.list(&any_of, &join(at, "anyOf"))?.unwrap_or_default();
    if !all.is_empty() && !any.is_empty() {
        return Err(format!(
            "line {}: {at}: give resources (all must allow) or anyOf (one must), not both",
            any[0].referenced.line()
        ));
    }
    let (items, combine, key) = if any.is_empty() {
        (all, Combine::All, "resources")
    } else {
        (any, Combine::Any, "anyOf")
    };
    let mut rules = Vec::with_capacity(items.len());
    for (r, item) in items.iter().enumerate() {
        let at = format!("{at}.{key}[{r}]");
        let rule = match d.objects(&[item], &at)? {
            Some(maps) => rule(&maps, &at, d)?,
            None => Rule::default(),
        };
        rules.push(Rule {
            line: item.referenced.line(),
            ..rule
        });
    }
    Ok(Mapping {
        line: 0,
        methods,
        rules,
        combine,
    })
}

fn rule(maps: &[Value<'_>], at: &str, d: &mut Decoder) -> Result<Rule, String> {
    let [rewrites, attributes] = take(d.fields(maps, at, &["rewrites", "resourceAttributes"])?);
    let mut rule = Rule::default();
    if let Some(maps) = d.objects(&rewrites, &join(at, "rewrites"))? {
        let at = join(at, "rewrites");
        let [query, header] = take(d.fields(&maps, &at, &["byQueryParameter", "byHttpHeader"])?);
        rule.query = rewrite_name(query, &join(&at, "byQueryParameter"), d)?;
        rule.header = rewrite_name(header, &join(&at, "byHttpHeader"), d)?;
    }
    if let Some(maps) = d.objects(&attributes, &join(at, "resourceAttributes"))? {
        let at = join(at, "resourceAttributes");
        let keys = [
            "namespace",
            "apiGroup",
            "apiVersion",
            "resource",
            "subresource",
            "name",
            "verb",
        ];
        let values: [Vec<Value<'_>>; 7] = take(d.fields(&maps, &at, &keys)?);
        let mut templates = Vec::with_capacity(7);
        for (values, key) in values.into_iter().zip(keys) {
            let at = join(&at, key);
            templates.push(match d.string(&values, &at)? {
                None => Template::default(),
                Some((text, line)) => Template::parse(text, Dialect::Endpoint)
                    .map_err(|e| format!("line {line}: {at}: {e}"))?,
            });
        }
        let [namespace, api_group, api_version, resource, subresource, name, verb]: [Template; 7] =
            templates
                .try_into()
                .map_err(|_| "seven templates".to_owned())?;
        rule = Rule {
            namespace,
            api_group,
            api_version,
            resource,
            subresource,
            name,
            verb,
            ..rule
        };
    }
    Ok(rule)
}

/// A rewrite's `{name: ...}`: `None` when unset or `null`; a blank name is an error, as
/// in the fork.
fn rewrite_name(
    values: Vec<Value<'_>>,
    at: &str,
    d: &mut Decoder,
) -> Result<Option<String>, String> {
    let Some(maps) = d.objects(&values, at)? else {
        return Ok(None);
    };
    let line = maps[0].referenced.line();
    let [name] = take(d.fields(&maps, at, &["name"])?);
    let name = d
        .string(&name, &join(at, "name"))?
        .map(|(name, _)| name)
        .unwrap_or_default();
    if name.trim().is_empty() {
        return Err(format!("line {line}: {at} must specify a non-empty name"));
    }
    if HeaderName::try_from(name.as_str()).is_err() && at.ends_with("byHttpHeader") {
        d.warn(
            line,
            format!("{at}.name {name:?} is not a header name: every request is refused with 400, as in the fork"),
        );
    }
    Ok(Some(name))
}

/// The segments of an endpoint's path, split as the fork splits it (not cleaned).
fn segments(path: &str) -> Result<Vec<Segment>, String> {
    let mut seen: Vec<&str> = Vec::new();
    path.split('/')
        .map(|segment| {
            if segment == "*" {
                return Ok(Segment::Any);
            }
            let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
                return Ok(Segment::Literal(segment.to_owned()));
            };
            if !is_capture_name(name) {
                return Err(format!(
                    "{segment:?} is not a capture: a name is a letter or '_', then letters, \
                     digits or '_'"
                ));
            }
            if seen.contains(&name) {
                return Err(format!("the capture {{{name}}} is given twice"));
            }
            seen.push(name);
            Ok(Segment::Capture(name.to_owned()))
        })
        .collect()
}

fn authorizers_of(names: &[String]) -> Result<Authorizers, String> {
    let mut chosen = Authorizers {
        static_rules: false,
        rbac: false,
        review: false,
    };
    for name in names {
        let flag = match name.to_ascii_lowercase().as_str() {
            "static" => &mut chosen.static_rules,
            "rbac" => &mut chosen.rbac,
            "subjectaccessreview" => &mut chosen.review,
            _ => {
                return Err(format!(
                    "unknown authorizer {name:?}: the choices are static, rbac and \
                     subjectAccessReview"
                ))
            }
        };
        *flag = true;
    }
    if chosen.names().is_empty() {
        return Err(
            "an empty list would deny every request: leave the key out for all three".into(),
        );
    }
    Ok(chosen)
}

/// The fork's `ValidateAuthorizationConfig` for one endpoint, then ours.
fn check(endpoint: &Endpoint, at: &str, node_name: &str, d: &mut Decoder) -> Result<(), String> {
    let line = endpoint.line;
    if endpoint.path.trim().is_empty() {
        return Err(format!("line {line}: {at}: path must be non-empty"));
    }
    let at = format!("{at} (path {:?})", endpoint.path);
    if endpoint.mappings.is_empty() {
        return Err(format!(
            "line {line}: {at}: mappings must contain at least one entry"
        ));
    }
    let path = &endpoint.path;
    if !path.starts_with('/') || (path.len() > 1 && (path.ends_with('/') || path.contains("//"))) {
        d.warn(
            line,
            format!(
                "{at} never matches: request paths are cleaned (a leading '/', no empty \
                 segment, no trailing '/') and this path is not; in the fork either"
            ),
        );
    }
    let captures: Vec<&str> = endpoint
        .segments
        .iter()
        .filter_map(|s| match s {
            Segment::Capture(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    if !captures.is_empty() {
        d.info(
            line,
            format!(
                "{at}: {{name}} captures are scrape-guard's; the fork reads them as literal text"
            ),
        );
    }
    for (m, mapping) in endpoint.mappings.iter().enumerate() {
        let at = format!("{at}: mappings[{m}]");
        let line = mapping.line;
        if mapping.methods.is_empty() {
            return Err(format!(
                "line {line}: {at} must specify a non-empty methods list"
            ));
        }
        if mapping.rules.is_empty() {
            return Err(format!(
                "line {line}: {at} must contain at least one resource rule"
            ));
        }
        for (r, rule) in mapping.rules.iter().enumerate() {
            let key = match mapping.combine {
                Combine::All => "resources",
                Combine::Any => "anyOf",
            };
            check_rule(rule, &format!("{at}.{key}[{r}]"), &captures, node_name, d)?;
        }
    }
    Ok(())
}

fn check_rule(
    rule: &Rule,
    at: &str,
    captures: &[&str],
    node_name: &str,
    d: &mut Decoder,
) -> Result<(), String> {
    let line = rule.line;
    for (key, template) in rule.templates() {
        for field in template.fields() {
            match field {
                Field::PathParam(name) if !captures.contains(&name.as_str()) => {
                    return Err(format!(
                        "line {line}: {at}.resourceAttributes.{key}: the path has no {{{name}}} capture"
                    ))
                }
                Field::NodeName if node_name.is_empty() => {
                    return Err(format!(
                        "line {line}: {at}.resourceAttributes.{key}: {{{{ .NodeName }}}} needs the \
                         {NODE_NAME_ENV} environment variable (from the downward API: \
                         fieldRef spec.nodeName)"
                    ))
                }
                Field::FromHeader if rule.header.is_none() => d.warn(
                    line,
                    format!("{at}.resourceAttributes.{key} uses .FromHeader without rewrites.byHttpHeader: it is empty, as in the fork"),
                ),
                Field::FromQueryString if rule.query.is_none() => d.warn(
                    line,
                    format!("{at}.resourceAttributes.{key} uses .FromQueryString without rewrites.byQueryParameter: it is empty, as in the fork"),
                ),
                Field::Value if rule.header.is_none() && rule.query.is_none() => d.warn(
                    line,
                    format!("{at}.resourceAttributes.{key} uses .Value without rewrites: it is empty, as in the fork"),
                ),
                _ => {}
            }
        }
    }
    if rule.templates().iter().all(|(_, t)| t.raw.is_empty()) {
        d.warn(
            line,
            format!(
                "{at} has no resourceAttributes: it is reviewed as a resource request with every \
                 field empty, as in the fork"
            ),
        );
    }
    Ok(())
}
