//! `--requestheader-*`, `--authentication-skip-lookup` and
//! `--authentication-tolerate-lookup-failure` into `FrontProxySettings`.
//!
//! When the cluster's settings are looked up is our one departure from
//! k8s.io/apiserver, which looks them up unless told not to: kube-rbac-proxy v0.x never
//! does, and trusting the cluster's client CA and front proxies would change who is
//! allowed for every sidecar swapped in for it. So the lookup happens for an invocation
//! written for kube-rbac-proxy's rewrite (any flag of the k8s.io/apiserver dialect,
//! `--authentication-skip-lookup=false` included), as that rewrite does, and never for
//! v0.x's flags (docs/front-proxy.md).

use super::{args::FrontProxyArgs, Problems};
use crate::authn::{
    front_proxy::RequestHeaders,
    lookup::{FrontProxySettings, Lookup, OnFailure, RequestHeaderFlags},
};

/// `rewrite`: the invocation uses kube-rbac-proxy's rewrite's flags.
pub(super) fn settings(
    args: FrontProxyArgs,
    rewrite: bool,
    problems: &mut Problems,
) -> FrontProxySettings {
    let FrontProxyArgs {
        requestheader_client_ca_file,
        requestheader_allowed_names,
        requestheader_username_headers,
        requestheader_group_headers,
        requestheader_extra_headers_prefix,
        requestheader_uid_headers,
        authentication_skip_lookup,
        authentication_tolerate_lookup_failure,
    } = args;
    let defaults = RequestHeaders::flag_defaults();
    let mut given = Vec::new();
    let mut list = |flag: &'static str, values: Vec<String>, default: Vec<String>| {
        if values.is_empty() {
            return default;
        }
        given.push(flag);
        // `--flag=` is an empty list, as pflag reads it.
        if values.len() == 1 && values[0].is_empty() {
            return Vec::new();
        }
        if values.iter().any(|v| v.trim().is_empty()) {
            problems.add(format!("empty value in {flag}"));
        }
        values
    };
    let headers = RequestHeaders {
        username: list(
            "--requestheader-username-headers",
            requestheader_username_headers,
            defaults.username,
        ),
        uid: list(
            "--requestheader-uid-headers",
            requestheader_uid_headers,
            defaults.uid,
        ),
        group: list(
            "--requestheader-group-headers",
            requestheader_group_headers,
            defaults.group,
        ),
        extra_prefixes: list(
            "--requestheader-extra-headers-prefix",
            requestheader_extra_headers_prefix,
            defaults.extra_prefixes,
        ),
        allowed_names: list(
            "--requestheader-allowed-names",
            requestheader_allowed_names,
            defaults.allowed_names,
        ),
    };
    let lookup = match (authentication_skip_lookup, rewrite) {
        (Some(true), _) | (_, false) => Lookup::Off,
        _ => Lookup::On(match authentication_tolerate_lookup_failure {
            Some(true) => OnFailure::Tolerate,
            _ => OnFailure::Fatal,
        }),
    };
    let flags = requestheader_client_ca_file
        .filter(|file| !file.is_empty())
        .map(|file| RequestHeaderFlags {
            ca_file: file.into(),
            headers,
        });
    if flags.is_none() {
        for flag in given {
            problems.warn(format!(
                "{flag} has no effect without --requestheader-client-ca-file: front proxies \
                 are then those of the cluster's configmap \
                 kube-system/extension-apiserver-authentication (headers and all), if it is \
                 looked up, else none (as in k8s.io/apiserver)"
            ));
        }
    }
    FrontProxySettings { flags, lookup }
}
