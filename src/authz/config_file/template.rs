//! The values of `resourceAttributes`: a small subset of Go's `text/template`, enough
//! for what kube-rbac-proxy and its opendatahub fork put in them.
//!
//! - Top-level `resourceAttributes` (kube-rbac-proxy): only `{{ .Value }}`, the rewrite
//!   value. Any other template would render as an empty string there, widening a
//!   namespaced review to the cluster; it is refused while parsing, so the error has a
//!   line.
//! - `endpoints` (the fork's "Format 2"): `.Value`, `.FromHeader`, `.FromQueryString`,
//!   `.FromMethod` (the fork's `TemplateData`), and ours: `.NodeName` (`NODE_NAME`, from
//!   the downward API) and `index .PathParams "name"` (or `.PathParams.name`), a capture
//!   of the endpoint's path. The fork fails such a template at request time (400), so a
//!   file using them is never read more loosely there.
//!
//! Pipelines, functions and control structures are refused: none of the configs these
//! proxies ship use them, and a half-supported template language would be worse.

/// A string with `{{ field }}` holes, parsed once.
#[derive(Debug, Default, Clone)]
pub(super) struct Template {
    /// As written: what kube-rbac-proxy reviews when there are no rewrites.
    pub(super) raw: String,
    parts: Vec<Part>,
}

/// What a `{{ }}` may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Field {
    Value,
    FromHeader,
    FromQueryString,
    FromMethod,
    /// Ours: the node this proxy runs on (`NODE_NAME`).
    NodeName,
    /// Ours: a `{name}` segment of the endpoint's path.
    PathParam(String),
}

/// Which fields a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// Top-level `resourceAttributes`: `{{ .Value }}` only.
    Rewrite,
    /// `endpoints[].mappings[].resources[].resourceAttributes`.
    Endpoint,
}

/// The values a template is rendered with.
#[derive(Debug, Default)]
pub(super) struct Data<'a> {
    pub(super) value: &'a str,
    pub(super) from_header: &'a str,
    pub(super) from_query_string: &'a str,
    pub(super) from_method: &'a str,
    pub(super) node_name: &'a str,
    pub(super) path_params: &'a [(String, String)],
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Field(Field),
}

impl TryFrom<String> for Template {
    type Error = String;

    /// A top-level `resourceAttributes` value.
    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(text, Dialect::Rewrite)
    }
}

impl Template {
    pub(super) fn parse(text: String, dialect: Dialect) -> Result<Self, String> {
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
            parts.push(Part::Field(field(inner, dialect, &text)?));
            rest = &rest[start + end + 2..];
        }
        if rest.contains("}}") {
            return Err(format!("stray '}}}}' in {text:?}"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { raw: text, parts })
    }

    /// Top-level `resourceAttributes` with one rewrite value.
    pub(super) fn render(&self, value: &str) -> String {
        self.render_with(&Data {
            value,
            ..Data::default()
        })
    }

    pub(super) fn render_with(&self, data: &Data<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            out.push_str(match part {
                Part::Text(text) => text,
                Part::Field(Field::Value) => data.value,
                Part::Field(Field::FromHeader) => data.from_header,
                Part::Field(Field::FromQueryString) => data.from_query_string,
                Part::Field(Field::FromMethod) => data.from_method,
                Part::Field(Field::NodeName) => data.node_name,
                Part::Field(Field::PathParam(name)) => data
                    .path_params
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or("", |(_, v)| v.as_str()),
            });
        }
        out
    }

    pub(super) fn uses_value(&self) -> bool {
        self.uses(&Field::Value)
    }

    pub(super) fn uses(&self, field: &Field) -> bool {
        self.parts.contains(&Part::Field(field.clone()))
    }

    /// The fields this template names.
    pub(super) fn fields(&self) -> impl Iterator<Item = &Field> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f),
            Part::Text(_) => None,
        })
    }
}

/// The field `{{ inner }}` names, if this dialect knows it.
fn field(inner: &str, dialect: Dialect, text: &str) -> Result<Field, String> {
    if dialect == Dialect::Rewrite {
        return match inner {
            ".Value" => Ok(Field::Value),
            _ => Err(format!(
                "unsupported template {{{{ {inner} }}}} in {text:?}: only {{{{ .Value }}}} is \
                 supported (kube-rbac-proxy would review an empty value instead)"
            )),
        };
    }
    let words: Vec<&str> = inner.split_whitespace().collect();
    let param = |name: &str| -> Result<Field, String> {
        if is_capture_name(name) {
            Ok(Field::PathParam(name.to_owned()))
        } else {
            Err(format!("{name:?} in {text:?} is not a capture name"))
        }
    };
    match words.as_slice() {
        [".Value"] => Ok(Field::Value),
        [".FromHeader"] => Ok(Field::FromHeader),
        [".FromQueryString"] => Ok(Field::FromQueryString),
        [".FromMethod"] => Ok(Field::FromMethod),
        [".NodeName"] => Ok(Field::NodeName),
        ["index", ".PathParams", quoted] => {
            match quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
                Some(name) => param(name),
                None => Err(format!(
                    "index .PathParams wants a quoted name, not {quoted} in {text:?}"
                )),
            }
        }
        [one] if one.starts_with(".PathParams.") => param(&one[".PathParams.".len()..]),
        _ => Err(format!(
            "unsupported template {{{{ {inner} }}}} in {text:?}: supported are .Value, \
             .FromHeader, .FromQueryString, .FromMethod, .NodeName and index .PathParams \"name\""
        )),
    }
}

/// A capture's name, `{name}` in an endpoint's path: a Go identifier, so that
/// `.PathParams.name` can name it too.
pub(super) fn is_capture_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_value_templates_at_the_top_level() {
        let t = Template::try_from("ns-{{.Value}}-{{ .Value }}".to_owned()).unwrap();
        assert_eq!(t.render("a"), "ns-a-a");
        assert!(t.uses_value());
        assert_eq!(t.raw, "ns-{{.Value}}-{{ .Value }}");
        let plain = Template::try_from("pods".to_owned()).unwrap();
        assert!(!plain.uses_value());
        for bad in [
            "{{ .Namespace }}",
            "{{ .Value",
            "x }}",
            "{{ .Value | printf \"%s\" }}",
            "{{ .FromHeader }}",
        ] {
            assert!(Template::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoint_templates_render_every_field() {
        let parse = |t: &str| Template::parse(t.to_owned(), Dialect::Endpoint);
        let params = [("ns".to_owned(), "team-a".to_owned())];
        let data = Data {
            value: "v",
            from_header: "h",
            from_query_string: "q",
            from_method: "create",
            node_name: "node-1",
            path_params: &params,
        };
        let table = [
            ("{{.Value}}/{{ .FromHeader }}/{{.FromQueryString}}", "v/h/q"),
            ("{{ .FromMethod }}", "create"),
            ("{{ .NodeName }}", "node-1"),
            ("ns-{{ index .PathParams \"ns\" }}", "ns-team-a"),
            ("{{ .PathParams.ns }}", "team-a"),
            ("{{ index .PathParams \"other\" }}", ""),
            ("literal", "literal"),
        ];
        for (text, want) in table {
            assert_eq!(parse(text).unwrap().render_with(&data), want, "{text}");
        }
        for bad in [
            "{{ .Namespace }}",
            "{{ index .PathParams ns }}",
            "{{ index .PathParams \"a-b\" }}",
            "{{ .Value | lower }}",
            "{{ if .Value }}x{{ end }}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(is_capture_name("ns_1") && !is_capture_name("1ns") && !is_capture_name(""));
    }
}
