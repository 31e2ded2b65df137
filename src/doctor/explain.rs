//! `can-i` for a request the config file's `endpoints` decide: which endpoint, mapping
//! and rule decided, and by which authorizer — and the RBAC for a denied resource rule.

use std::fmt::Write as _;

use super::{quote, sanitize_name, slug_part, Subject};
use crate::{
    apiserver::Requester,
    authz::{Attributes, Authorizer, Combine, Plan},
    identity::{Source, User},
};

/// What `explain` found: allowed or not, and the record to grant when not.
pub(super) struct Explained {
    pub(super) allowed: bool,
    pub(super) grant: Option<Attributes>,
}

/// Decides `plan` for `user` record by record, as the proxy does, writing one line per
/// rule (`endpoint 2 (/api/{ns}/jobs), mapping 1 (GET), rule 1: get
/// jobs.trustyai.opendatahub.io in ns=x: denied by SubjectAccessReview: …`).
pub(super) async fn explain(
    authz: &Authorizer,
    user: &User,
    plan: &Plan,
    out: &mut String,
) -> Result<Explained, String> {
    let checks = match plan {
        Plan::Refuse { action, reason } => {
            let _ = writeln!(out, "request:   {action}");
            let _ = writeln!(out, "by:        {reason}: refused without a review (403)");
            return Ok(Explained {
                allowed: false,
                grant: None,
            });
        }
        Plan::Check(checks) => checks,
    };
    let origin = checks.origin.as_deref().unwrap_or("the config file");
    let how = match checks.combine {
        Combine::All => "every rule must allow",
        Combine::Any => "the first rule that allows decides (anyOf)",
    };
    let _ = writeln!(
        out,
        "endpoint:  {origin}: {how}; decided by {}",
        checks.authorizers.names().join(", ")
    );
    let mut grant = None;
    for (i, record) in checks.records.iter().enumerate() {
        let outcome = authz
            .decide_by(user, record, checks.authorizers, Requester::Process)
            .await
            .map_err(|e| e.to_string())?;
        let verdict = if outcome.allowed { "allowed" } else { "denied" };
        let reason = if outcome.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", outcome.reason)
        };
        let _ = writeln!(
            out,
            "by:        {origin}, rule {}: {}: {verdict} by {}{reason}",
            i + 1,
            short(record),
            authorizer(outcome.source)
        );
        match (outcome.allowed, checks.combine) {
            (true, Combine::Any) => {
                return Ok(Explained {
                    allowed: true,
                    grant: None,
                })
            }
            (false, Combine::All) => {
                return Ok(Explained {
                    allowed: false,
                    grant: Some(record.clone()),
                })
            }
            (false, Combine::Any) => {
                grant.get_or_insert_with(|| record.clone());
            }
            (true, Combine::All) => {}
        }
    }
    Ok(Explained {
        allowed: grant.is_none(),
        grant,
    })
}

fn authorizer(source: Source) -> &'static str {
    match source {
        Source::Local => "local policy",
        Source::Apiserver | Source::Cache | Source::Stale => "SubjectAccessReview",
        Source::Standalone => "the standalone default (no apiserver)",
        Source::Certificate => "client certificate",
        Source::Oidc => "OIDC issuer",
    }
}

/// `get jobs.trustyai.opendatahub.io in ns=x`, `get nodes/metrics name=n`.
pub(super) fn short(record: &Attributes) -> String {
    let Some(r) = &record.resource else {
        return format!("{} path {:?}", record.verb, record.path);
    };
    let mut text = format!("{} {}", record.verb, r.resource);
    if !r.subresource.is_empty() {
        let _ = write!(text, "/{}", r.subresource);
    }
    if !r.group.is_empty() {
        let _ = write!(text, ".{}", r.group);
    }
    if !r.namespace.is_empty() {
        let _ = write!(text, " in ns={}", r.namespace);
    }
    if !r.name.is_empty() {
        let _ = write!(text, " name={}", r.name);
    }
    text
}

/// The Role (or ClusterRole, for a cluster-scoped record) and binding that grant a
/// resource record to `subject`; like `rbac_yaml`, it starts with `---`.
pub(super) fn resource_rbac_yaml(subject: &Subject, record: &Attributes) -> String {
    let r = record.resource.clone().unwrap_or_default();
    let resource = if r.subresource.is_empty() {
        r.resource.clone()
    } else {
        format!("{}/{}", r.resource, r.subresource)
    };
    let role = format!(
        "scrape-guard-{}-{}",
        slug_part(&record.verb),
        slug_part(&resource)
    );
    let binding = sanitize_name(&format!("{role}:{}", subject.binding_suffix()));
    let (kind, namespace) = if r.namespace.is_empty() {
        ("ClusterRole", String::new())
    } else {
        ("Role", format!("\n  namespace: {}", quote(&r.namespace)))
    };
    let names = if r.name.is_empty() {
        String::new()
    } else {
        format!("\n    resourceNames: [{}]", quote(&r.name))
    };
    format!(
        "---\n\
         # Grants `{}` to {}.\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: {kind}\n\
         metadata:\n  name: {role}{namespace}\n\
         rules:\n  - apiGroups: [{}]\n    resources: [{}]\n    verbs: [{}]{names}\n\
         ---\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: {kind}Binding\n\
         metadata:\n  name: {}{namespace}\n\
         roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: {kind}\n  name: {role}\n\
         subjects:\n{}",
        short(record),
        super::describe(subject),
        serde_json::to_string(&r.group).unwrap_or_default(),
        quote(&resource),
        quote(&record.verb),
        quote(&binding),
        subject.yaml(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::ResourceAttributes;

    #[test]
    fn the_role_parses_back_into_rbac_that_allows_the_record() {
        let record = Attributes {
            verb: "get".into(),
            path: "/api/x/jobs".into(),
            resource: Some(ResourceAttributes {
                namespace: "x".into(),
                group: "trustyai.opendatahub.io".into(),
                resource: "evaluationjobs".into(),
                ..ResourceAttributes::default()
            }),
        };
        assert_eq!(
            short(&record),
            "get evaluationjobs.trustyai.opendatahub.io in ns=x"
        );
        let subject = Subject::for_user("system:serviceaccount:x:client");
        let yaml = resource_rbac_yaml(&subject, &record);
        let rbac =
            crate::authz::rbac::Rbac::parse(&[("generated".into(), yaml.clone().into_bytes())])
                .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let user = User {
            name: "system:serviceaccount:x:client".into(),
            ..User::default()
        };
        assert!(rbac.allows(&user, &record).is_some(), "{yaml}");
        assert!(yaml.contains("kind: RoleBinding"), "{yaml}");
    }
}
