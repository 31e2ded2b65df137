//! `--oidc-*` into `OidcSettings`: kube-apiserver's spellings folded in as aliases
//! (two values for one setting must agree), defaults as kube-rbac-proxy's (`email`,
//! `groups`, `RS256`), and what k8s.io/apiserver's OIDC authenticator refuses at
//! startup refused here too (no client ID, a non-https issuer, an unknown algorithm).

use super::{args::OidcArgs, dialect::alias, Problems};
use crate::authn::{jwt::Algorithm, OidcSettings};

pub(super) fn validate(args: OidcArgs, problems: &mut Problems) -> Option<OidcSettings> {
    let OidcArgs {
        mut oidc_issuer,
        mut oidc_client_id,
        oidc_ca_file,
        oidc_username_claim,
        oidc_groups_claim,
        oidc_username_prefix,
        oidc_groups_prefix,
        oidc_sign_alg,
        oidc_issuer_url,
        oidc_client_id_alias,
        oidc_signing_algs,
    } = args;
    alias(
        problems,
        ("--oidc-issuer", &mut oidc_issuer),
        ("--oidc-issuer-url", oidc_issuer_url),
    );
    alias(
        problems,
        ("--oidc-clientID", &mut oidc_client_id),
        ("--oidc-client-id", oidc_client_id_alias),
    );
    // Lists compare as sets: the order of accepted algorithms means nothing.
    let set = |mut names: Vec<String>| {
        names.iter_mut().for_each(|n| *n = n.trim().to_owned());
        names.sort();
        names.dedup();
        (!names.is_empty()).then_some(names)
    };
    let mut algorithms = set(oidc_sign_alg);
    alias(
        problems,
        ("--oidc-sign-alg", &mut algorithms),
        ("--oidc-signing-algs", set(oidc_signing_algs)),
    );
    let Some(issuer) = oidc_issuer else {
        let given = [
            ("--oidc-clientID", oidc_client_id.is_some()),
            ("--oidc-ca-file", oidc_ca_file.is_some()),
            ("--oidc-username-claim", oidc_username_claim.is_some()),
            ("--oidc-groups-claim", oidc_groups_claim.is_some()),
            ("--oidc-username-prefix", oidc_username_prefix.is_some()),
            ("--oidc-groups-prefix", oidc_groups_prefix.is_some()),
            ("--oidc-sign-alg", algorithms.is_some()),
        ];
        for (flag, _) in given.iter().filter(|(_, set)| *set) {
            // kube-rbac-proxy ignores them too.
            problems.warn(format!("{flag} is ignored without --oidc-issuer"));
        }
        return None;
    };
    if let Err(why) = issuer_url(&issuer) {
        problems.add(format!("--oidc-issuer {issuer:?} {why}"));
    }
    let client_id = oidc_client_id.unwrap_or_default();
    if client_id.is_empty() {
        problems.add("--oidc-clientID is required with --oidc-issuer");
    }
    let username_claim = oidc_username_claim.unwrap_or_else(|| "email".into());
    if username_claim.is_empty() {
        problems.add("--oidc-username-claim must not be empty");
    }
    let mut accepted = Vec::new();
    for name in algorithms.unwrap_or_else(|| vec!["RS256".into()]) {
        match Algorithm::from_name(&name) {
            Some(alg) if !accepted.contains(&alg) => accepted.push(alg),
            Some(_) => {}
            None => problems.add(format!(
                "--oidc-sign-alg {name:?} is not supported (one of {})",
                Algorithm::ALL.map(Algorithm::as_str).join(", ")
            )),
        }
    }
    Some(OidcSettings {
        issuer,
        client_id,
        ca_file: oidc_ca_file,
        username_claim,
        username_prefix: oidc_username_prefix.unwrap_or_default(),
        groups_claim: oidc_groups_claim.unwrap_or_else(|| "groups".into()),
        groups_prefix: oidc_groups_prefix.unwrap_or_default(),
        algorithms: accepted,
    })
}

/// k8s.io/apiserver's rules for an issuer URL: https, no user, query or fragment.
fn issuer_url(url: &str) -> Result<(), &'static str> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err("must be an https:// URL");
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err("has no host");
    }
    if authority.contains('@') {
        return Err("must not contain a username or password");
    }
    if url.contains('?') {
        return Err("must not contain a query");
    }
    if url.contains('#') {
        return Err("must not contain a fragment");
    }
    Ok(())
}
