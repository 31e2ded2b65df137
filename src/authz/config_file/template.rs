//! The values of `resourceAttributes`: Go templates, of which only `{{ .Value }}` means
//! anything to kube-rbac-proxy (the rewrite value). Any other template would render as
//! an empty string there, widening a namespaced review to the cluster; it is refused
//! while parsing, so the error has a line.

/// A string that may be exactly Go's `{{ .Value }}` (spacing free) or contain no
/// template at all. Anything else is refused while parsing, so the error has a line.
#[derive(Debug, Default, Clone)]
pub(super) struct Template {
    /// As written: what kube-rbac-proxy reviews when there are no rewrites.
    pub(super) raw: String,
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
                    "unsupported template {{{{ {inner} }}}} in {text:?}: only {{{{ .Value }}}} is \
                     supported (kube-rbac-proxy would review an empty value instead)"
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
        Ok(Self { raw: text, parts })
    }
}

impl Template {
    pub(super) fn render(&self, value: &str) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.as_str(),
                Part::Value => value,
            })
            .collect()
    }

    pub(super) fn uses_value(&self) -> bool {
        self.parts.contains(&Part::Value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_value_templates() {
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
        ] {
            assert!(Template::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }
}
