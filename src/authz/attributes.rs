//! What a request asks to do, in the apiserver's terms: the attributes of a
//! SubjectAccessReview, the verb for an HTTP method, the wording of a 403, and the cache
//! key of a decision.

use std::{borrow::Cow, sync::Arc};

use http::Method;

use crate::{
    cache::{digest_fields, Key},
    identity::User,
};

/// What a request asks to do. `path` is always the request path (static rules match
/// it), shared between the records of one request; `resource` is set when
/// `--config-file` maps requests to resource attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub path: Arc<str>,
    pub resource: Option<ResourceAttributes>,
}

/// The resource half of a SubjectAccessReview.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    pub namespace: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

/// The apiserver's mapping of HTTP methods to verbs for non-resource requests.
pub(crate) fn verb_for(method: &Method) -> Cow<'static, str> {
    match *method {
        Method::GET | Method::HEAD => "get".into(),
        Method::POST => "create".into(),
        Method::PUT => "update".into(),
        Method::PATCH => "patch".into(),
        Method::DELETE => "delete".into(),
        ref other => other.as_str().to_ascii_lowercase().into(),
    }
}

impl Attributes {
    /// Non-resource attributes for a request.
    pub fn new(method: &Method, path: &str) -> Self {
        Self::non_resource(&verb_for(method), path)
    }

    /// Non-resource attributes: `verb` on `path`.
    pub fn non_resource(verb: &str, path: &str) -> Self {
        Self {
            verb: verb.to_owned(),
            path: Arc::from(path),
            resource: None,
        }
    }

    /// What was asked, in the apiserver's words: `get path "/metrics"`, or
    /// `get resource "pods" in API group "" in the namespace "ns"`.
    pub fn action(&self) -> String {
        let verb = &self.verb;
        match &self.resource {
            None => format!("{verb} path {:?}", self.path),
            Some(r) => {
                let resource = if r.subresource.is_empty() {
                    r.resource.clone()
                } else {
                    format!("{}/{}", r.resource, r.subresource)
                };
                let scope = if r.namespace.is_empty() {
                    "at the cluster scope".to_owned()
                } else {
                    format!("in the namespace {:?}", r.namespace)
                };
                format!(
                    "{verb} resource {resource:?} in API group {:?} {scope}",
                    r.group
                )
            }
        }
    }

    pub(super) fn cache_key(&self, user: &User) -> Key {
        let resource = self.resource.clone().unwrap_or_default();
        let mut fields: Vec<&[u8]> = vec![
            b"sar/v2",
            user.name.as_bytes(),
            user.uid.as_bytes(),
            self.verb.as_bytes(),
            // A resource review does not carry the path: requests for different paths
            // that ask the same resource question share one review.
            if self.resource.is_none() {
                self.path.as_bytes()
            } else {
                b""
            },
            if self.resource.is_some() {
                b"resource"
            } else {
                b"path"
            },
            resource.namespace.as_bytes(),
            resource.group.as_bytes(),
            resource.version.as_bytes(),
            resource.resource.as_bytes(),
            resource.subresource.as_bytes(),
            resource.name.as_bytes(),
        ];
        // Counts delimit the variable-length lists so no two users share a key.
        let group_count = user.groups.len().to_le_bytes();
        fields.push(&group_count);
        fields.extend(user.groups.iter().map(|g| g.as_bytes()));
        let extra_counts: Vec<[u8; 8]> =
            user.extra.values().map(|v| v.len().to_le_bytes()).collect();
        for ((key, values), count) in user.extra.iter().zip(&extra_counts) {
            fields.push(key.as_bytes());
            fields.push(count);
            fields.extend(values.iter().map(|v| v.as_bytes()));
        }
        digest_fields(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_from_methods() {
        let table = [
            (Method::GET, "get"),
            (Method::HEAD, "get"),
            (Method::POST, "create"),
            (Method::PUT, "update"),
            (Method::PATCH, "patch"),
            (Method::DELETE, "delete"),
            (Method::OPTIONS, "options"),
            (Method::from_bytes(b"PROPFIND").unwrap(), "propfind"),
        ];
        for (method, verb) in table {
            assert_eq!(Attributes::new(&method, "/metrics").verb, verb, "{method}");
        }
    }

    #[test]
    fn cache_keys_separate_users_and_attributes() {
        let user = |name: &str, groups: &[&str]| User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..User::default()
        };
        let get = Attributes::new(&Method::GET, "/metrics");
        let base = get.cache_key(&user("a", &["g"]));
        assert_eq!(base, get.cache_key(&user("a", &["g"])));
        let different = [
            get.cache_key(&user("b", &["g"])),
            get.cache_key(&user("a", &["g", "h"])),
            get.cache_key(&user("a", &[])),
            Attributes::new(&Method::POST, "/metrics").cache_key(&user("a", &["g"])),
            Attributes::new(&Method::GET, "/metrics/").cache_key(&user("a", &["g"])),
        ];
        for key in different {
            assert_ne!(base, key);
        }
        // Group boundaries matter: ["ab"] is not ["a", "b"].
        assert_ne!(
            get.cache_key(&user("a", &["ab"])),
            get.cache_key(&user("a", &["a", "b"]))
        );
    }
}
