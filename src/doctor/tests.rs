use super::*;
use crate::authz::Attributes;

#[test]
fn service_account_users_become_service_account_subjects() {
    assert_eq!(
        Subject::for_user("system:serviceaccount:monitoring:prometheus-k8s"),
        Subject::ServiceAccount {
            namespace: "monitoring".into(),
            name: "prometheus-k8s".into()
        }
    );
    for user in [
        "system:anonymous",
        "alice",
        "system:serviceaccount:ns",
        "system:serviceaccount::x",
    ] {
        assert_eq!(
            Subject::for_user(user),
            Subject::User(user.into()),
            "{user}"
        );
    }
}

#[test]
fn the_yaml_parses_back_into_rbac_that_allows_the_request() {
    let subject = Subject::for_user("system:serviceaccount:monitoring:prometheus-k8s");
    let yaml = rbac_yaml(&subject, &["/metrics".into(), "/federate*".into()], "get");
    let rbac = crate::authz::rbac::Rbac::parse(&[("generated".into(), yaml.clone().into_bytes())])
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let user = User {
        name: "system:serviceaccount:monitoring:prometheus-k8s".into(),
        ..User::default()
    };
    for path in ["/metrics", "/federate", "/federate/x"] {
        assert!(
            rbac.allows(&user, &Attributes::non_resource("get", path))
                .is_some(),
            "{path}\n{yaml}"
        );
    }
    assert!(rbac
        .allows(&user, &Attributes::non_resource("get", "/other"))
        .is_none());
    assert!(yaml.contains("Warning: a ClusterRole"));
    assert_eq!(rbac.warnings(), 0, "{yaml}");
    assert!(yaml.starts_with("---\n"), "{yaml}");
}

#[test]
fn quoting() {
    assert_eq!(quote("/metrics"), "/metrics");
    assert_eq!(quote("system:anonymous"), "\"system:anonymous\"");
    assert_eq!(quote("true"), "\"true\"");
    assert_eq!(quote("*"), "\"*\"");
    assert_eq!(quote("1.5"), "\"1.5\"");
}
