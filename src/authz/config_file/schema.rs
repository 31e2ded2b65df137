//! kube-rbac-proxy's config structs, field by field (its `pkg/authz` `Config`, with the
//! `verb` of `resourceAttributes` the opendatahub fork adds), filled from the node tree
//! by `yaml`'s rules; then what the result means, where that may surprise.

use super::{
    Authorization, ConfigFile, ResourceTemplate, Rewrites, StaticRule, Template, UserMatch,
};
use crate::yaml::{join, take, Decoder, Node, Value};

/// The file's nodes → a `ConfigFile`, with the notes worth logging.
pub(super) fn config(
    docs: &[serde_saphyr::Spanned<Node>],
    d: &mut Decoder,
) -> Result<ConfigFile, String> {
    let Some(root) = docs.first() else {
        return Ok(ConfigFile::default());
    };
    if let Some(second) = docs.get(1) {
        d.warn(
            second.referenced.line(),
            format!(
                "only the first YAML document is read, as kube-rbac-proxy does; {} more ignored",
                docs.len() - 1
            ),
        );
    }
    let root_maps = d.objects(&[root], "the file")?;
    let Some(maps) = root_maps else {
        return Ok(ConfigFile::default());
    };
    // `excludePaths` and `upstreams` are Deckhouse's fork's, read by `config` at startup
    // (its `upstreams.rs`); each upstream's `authorization:` is found by its route.
    let [authorization, _exclude_paths, upstreams] =
        take(d.fields(&maps, "", &["authorization", "excludePaths", "upstreams"])?);
    let authorization = match d.objects(&authorization, "authorization")? {
        Some(maps) => authorization_of(&maps, d)?,
        None if !upstreams.is_empty() => Authorization::default(),
        None => {
            d.warn(
                root.referenced.line(),
                "no authorization key: the file configures nothing (kube-rbac-proxy does not \
                 start with such a file)",
            );
            Authorization::default()
        }
    };
    Ok(explained(ConfigFile { authorization }, d))
}

/// An `authorization:` block on its own (a listener's in `--listeners-file`): read as
/// the same key of a config file is.
pub(super) fn block(node: Value<'_>, d: &mut Decoder) -> Result<ConfigFile, String> {
    let authorization = match d.objects(&[node], "authorization")? {
        Some(maps) => authorization_of(&maps, d)?,
        None => Authorization::default(),
    };
    Ok(explained(ConfigFile { authorization }, d))
}

fn explained(config: ConfigFile, d: &mut Decoder) -> ConfigFile {
    explain(&config, d);
    config
}

fn authorization_of(maps: &[Value<'_>], d: &mut Decoder) -> Result<Authorization, String> {
    let at = "authorization";
    let [rewrites, resource_attributes, statics, endpoints] = take(d.fields(
        maps,
        at,
        &["rewrites", "resourceAttributes", "static", "endpoints"],
    )?);
    let endpoints = super::endpoints::endpoints(&endpoints, d)?;
    let rewrites = match d.objects(&rewrites, "authorization.rewrites")? {
        Some(maps) => Some(rewrites_of(&maps, d)?),
        None => None,
    };
    let resource_attributes =
        match d.objects(&resource_attributes, "authorization.resourceAttributes")? {
            Some(maps) => Some(resource_template_of(&maps, d)?),
            None => None,
        };
    let mut static_rules = Vec::new();
    if let Some(items) = d.list(&statics, "authorization.static")? {
        for (i, item) in items.iter().enumerate() {
            let at = format!("authorization.static[{i}]");
            let rule = match d.objects(&[item], &at)? {
                Some(maps) => static_rule_of(&maps, &at, d)?,
                // Go decodes `null` into a struct as nothing: a rule with every field
                // empty.
                None => StaticRule::default(),
            };
            static_rules.push(StaticRule {
                line: item.referenced.line(),
                ..rule
            });
        }
    }
    Ok(Authorization {
        resource_attributes,
        rewrites,
        static_rules,
        endpoints,
    })
}

fn rewrites_of(maps: &[Value<'_>], d: &mut Decoder) -> Result<Rewrites, String> {
    let at = "authorization.rewrites";
    let [query, header] = take(d.fields(maps, at, &["byQueryParameter", "byHttpHeader"])?);
    let mut name = |values: Vec<Value<'_>>, key: &str| -> Result<String, String> {
        let at = join(at, key);
        let Some(maps) = d.objects(&values, &at)? else {
            return Ok(String::new());
        };
        let [name] = take(d.fields(&maps, &at, &["name"])?);
        Ok(d.string(&name, &join(&at, "name"))?
            .map(|(name, _)| name)
            .unwrap_or_default())
    };
    Ok(Rewrites {
        line: maps[0].referenced.line(),
        by_query_parameter: name(query, "byQueryParameter")?,
        by_http_header: name(header, "byHttpHeader")?,
    })
}

fn resource_template_of(maps: &[Value<'_>], d: &mut Decoder) -> Result<ResourceTemplate, String> {
    let at = "authorization.resourceAttributes";
    let [namespace, api_group, api_version, resource, subresource, name, verb] = take(d.fields(
        maps,
        at,
        &[
            "namespace",
            "apiGroup",
            "apiVersion",
            "resource",
            "subresource",
            "name",
            "verb",
        ],
    )?);
    let mut template = |values: Vec<Value<'_>>, key: &str| -> Result<Template, String> {
        let at = join(at, key);
        match d.string(&values, &at)? {
            None => Ok(Template::default()),
            Some((text, line)) => {
                Template::try_from(text).map_err(|e| format!("line {line}: {at}: {e}"))
            }
        }
    };
    Ok(ResourceTemplate {
        line: maps[0].referenced.line(),
        namespace: template(namespace, "namespace")?,
        api_group: template(api_group, "apiGroup")?,
        api_version: template(api_version, "apiVersion")?,
        resource: template(resource, "resource")?,
        subresource: template(subresource, "subresource")?,
        name: template(name, "name")?,
        verb: d
            .string(&verb, &join(at, "verb"))?
            .map(|(verb, _)| verb)
            .unwrap_or_default(),
    })
}

fn static_rule_of(maps: &[Value<'_>], at: &str, d: &mut Decoder) -> Result<StaticRule, String> {
    // `User` has no JSON tag in kube-rbac-proxy: Go's field name, matched case-insensitively.
    let [user, verb, namespace, api_group, resource, subresource, name, resource_request, path] =
        take(d.fields(
            maps,
            at,
            &[
                "User",
                "verb",
                "namespace",
                "apiGroup",
                "resource",
                "subresource",
                "name",
                "resourceRequest",
                "path",
            ],
        )?);
    let text = |d: &mut Decoder, values: Vec<Value<'_>>, key: &str| -> Result<String, String> {
        Ok(d.string(&values, &join(at, key))?
            .map(|(s, _)| s)
            .unwrap_or_default())
    };
    let user = match d.objects(&user, &join(at, "user"))? {
        Some(maps) => {
            let at = join(at, "user");
            let [name, groups] = take(d.fields(&maps, &at, &["name", "groups"])?);
            UserMatch {
                name: text(d, name, "user.name")?,
                groups: d.strings(&groups, &join(&at, "groups"))?,
            }
        }
        None => UserMatch::default(),
    };
    Ok(StaticRule {
        line: 0,
        user,
        verb: text(d, verb, "verb")?,
        namespace: text(d, namespace, "namespace")?,
        api_group: text(d, api_group, "apiGroup")?,
        resource: text(d, resource, "resource")?,
        subresource: text(d, subresource, "subresource")?,
        name: text(d, name, "name")?,
        resource_request: d.boolean(&resource_request, &join(at, "resourceRequest"))?,
        path: text(d, path, "path")?,
    })
}

/// What the file means where that is likely to surprise: settings kube-rbac-proxy
/// accepts but that have no effect, deny everything, or allow more than they seem to.
fn explain(config: &ConfigFile, d: &mut Decoder) {
    let authz = &config.authorization;
    match (&authz.rewrites, &authz.resource_attributes) {
        (Some(rewrites), None) => d.warn(
            rewrites.line,
            "authorization.rewrites has no effect without authorization.resourceAttributes \
             (kube-rbac-proxy ignores it too): requests are reviewed as `get` etc. on their path",
        ),
        (Some(rewrites), Some(_)) => {
            if rewrites.by_query_parameter.is_empty() && rewrites.by_http_header.is_empty() {
                d.warn(
                    rewrites.line,
                    "authorization.rewrites names neither byQueryParameter.name nor \
                     byHttpHeader.name: every request is refused with 400, as kube-rbac-proxy does",
                );
            } else if !rewrites.by_http_header.is_empty() && rewrites.header().is_none() {
                d.warn(
                    rewrites.line,
                    format!(
                        "authorization.rewrites.byHttpHeader.name {:?} is not a header name: no \
                         request carries it",
                        rewrites.by_http_header
                    ),
                );
            }
        }
        (None, Some(template)) if template.uses_value() => d.warn(
            template.line,
            "authorization.resourceAttributes uses {{ .Value }} but no rewrites say where the \
             value comes from: the text is reviewed literally, as kube-rbac-proxy does, so every \
             request is denied",
        ),
        _ => {}
    }
    if let Some(template) = &authz.resource_attributes {
        if !template.verb.is_empty() {
            d.info(
                template.line,
                format!(
                    "authorization.resourceAttributes.verb: every request is reviewed as {:?} \
                     whatever its method (as in the opendatahub kube-rbac-proxy; upstream \
                     kube-rbac-proxy ignores this key and reviews POST as create, and so on)",
                    template.verb
                ),
            );
        }
    }
    for (i, rule) in authz.static_rules.iter().enumerate() {
        let at = format!("authorization.static[{i}]");
        let resource_fields = [
            &rule.namespace,
            &rule.api_group,
            &rule.resource,
            &rule.subresource,
            &rule.name,
        ];
        let never = if rule.resource_request && !rule.path.is_empty() {
            Some("resource requests have no path")
        } else if !rule.resource_request && resource_fields.iter().any(|f| !f.is_empty()) {
            Some("resource fields only match with resourceRequest: true")
        } else if !rule.resource_request
            && authz.resource_attributes.is_some()
            && authz.endpoints.list.is_empty()
        {
            Some("resourceAttributes makes every request a resource request")
        } else {
            None
        };
        if let Some(why) = never {
            d.warn(
                rule.line,
                format!("{at} never matches ({why}), in kube-rbac-proxy either"),
            );
        } else if rule.user.name.is_empty() && rule.user.groups.is_empty() {
            d.warn(
                rule.line,
                format!("{at} names no user or group: it allows every authenticated caller"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{self as decode, Level};

    fn decoded(yaml: &str) -> Result<(ConfigFile, Vec<String>), String> {
        let docs = decode::parse(yaml)?;
        let mut d = Decoder::default();
        let config = config(&docs, &mut d)?;
        d.notes.sort_by_key(|n| n.line);
        let notes = d
            .notes
            .iter()
            .filter(|n| n.level == Level::Warn)
            .map(|n| format!("line {}: {}", n.line, n.text))
            .collect();
        Ok((config, notes))
    }

    #[test]
    fn keys_match_case_insensitively_and_unknown_ones_are_named() {
        let (config, notes) = decoded(
            "Authorization:\n  ResourceAttributes:\n    APIGroup: kubeflow.org\n    \
             RESOURCE: notebooks\n    resourceName: nb\n    verb: get\n  labels: {a: b}\n",
        )
        .unwrap();
        let template = config.authorization.resource_attributes.unwrap();
        assert_eq!(template.api_group.render(""), "kubeflow.org");
        assert_eq!(template.resource.render(""), "notebooks");
        assert_eq!(template.name.render(""), "");
        assert_eq!(template.verb, "get");
        assert_eq!(
            notes,
            [
                "line 5: unknown key authorization.resourceAttributes.resourceName is ignored \
                 (kube-rbac-proxy ignores it too); did you mean name?",
                "line 7: unknown key authorization.labels is ignored (kube-rbac-proxy ignores it \
                 too)"
            ]
        );
    }

    #[test]
    fn folded_duplicates_apply_in_byte_order_and_objects_merge() {
        let (config, notes) = decoded(
            "authorization:\n  resourceAttributes: {namespace: a, resource: pods}\n  \
             ResourceAttributes: {namespace: b, name: x}\n",
        )
        .unwrap();
        let template = config.authorization.resource_attributes.unwrap();
        // "ResourceAttributes" sorts first, so the lower-case one is applied last.
        assert_eq!(template.namespace.render(""), "a");
        assert_eq!(template.name.render(""), "x");
        assert_eq!(template.resource.render(""), "pods");
        assert!(notes[0].contains("given as ResourceAttributes and resourceAttributes"));
    }

    #[test]
    fn scalars_become_go_strings_and_type_errors_name_the_line() {
        let (config, notes) = decoded(
            "authorization:\n  static:\n  - user: {name: 1.50, groups: [7, on]}\n    \
             resourceRequest: no\n    verb: ~\n",
        )
        .unwrap();
        let rule = &config.authorization.static_rules[0];
        assert_eq!(rule.user.name, "1.5");
        assert_eq!(rule.user.groups, ["7", "true"]);
        assert!(!rule.resource_request);
        assert_eq!(rule.verb, "");
        assert!(notes
            .iter()
            .any(|n| n.starts_with("line 3:") && n.contains("\"1.5\"")));

        for (yaml, needle) in [
            (
                "authorization:\n  static:\n  - resourceRequest: \"true\"\n",
                "line 3: authorization.static[0].resourceRequest must be true or false",
            ),
            (
                "authorization:\n  resourceAttributes:\n    namespace: [a]\n",
                "line 3: authorization.resourceAttributes.namespace must be a string",
            ),
            ("authorization:\n  static: {user: x}\n", "must be a list"),
            ("authorization: [a]\n", "authorization must be a mapping"),
            ("just text\n", "the file must be a mapping"),
        ] {
            let err = decoded(yaml).unwrap_err();
            assert!(err.contains(needle), "{yaml}\n→ {err}");
        }
    }
}
