//! The two flag dialects made one: the k8s.io/apiserver flags of kube-rbac-proxy's
//! rewrite (`args/apiserver.rs`) are folded into the scrape-guard flags they alias
//! before any group is validated. A setting given in both dialects must agree: the
//! same value is fine, different values are a startup error naming both flags, never a
//! silent pick.

use std::{fmt, net::IpAddr, path::PathBuf};

use super::{
    args::{ApiserverArgs, CacheArgs, FrontProxyArgs, KubeArgs, ServingArgs},
    go::ListenAddress,
    Problems,
};

/// k8s.io/apiserver's defaults where only half of an address is given.
const APISERVER_BIND_ADDRESS: &str = "0.0.0.0";
const APISERVER_SECURE_PORT: u16 = 443;
/// The serving pair k8s.io/apiserver looks for in `--cert-dir`.
const CERT_DIR_PAIR: (&str, &str) = ("apiserver.crt", "apiserver.key");

/// Folds the aliases into the scrape-guard flags; returns the front-proxy flags, and
/// whether the invocation is written for kube-rbac-proxy's rewrite (any flag of its
/// dialect given), for `front_proxy::settings`.
pub(super) fn resolve(
    apiserver: ApiserverArgs,
    serving: &mut ServingArgs,
    kube: &mut KubeArgs,
    cache: &mut CacheArgs,
    problems: &mut Problems,
) -> (FrontProxyArgs, bool) {
    let rewrite = apiserver.any_given();
    for problem in apiserver.refused() {
        problems.add(problem);
    }
    let ApiserverArgs {
        bind_address,
        secure_port,
        cert_dir,
        http2_max_streams_per_connection,
        disable_http2_serving,
        authentication_kubeconfig,
        authorization_kubeconfig,
        authentication_token_webhook_cache_ttl,
        authorization_webhook_cache_authorized_ttl,
        authorization_webhook_cache_unauthorized_ttl,
        tls_sni_cert_key,
        front_proxy,
        // Refused above.
        permit_port_sharing: _,
        authorization_always_allow_paths: _,
    } = apiserver;

    listen(
        bind_address,
        secure_port,
        &mut serving.secure_listen_address,
        problems,
    );
    // The flags' listener's, read with its other TLS files (`listeners::from_flags`).
    serving.tls_sni_cert_key = tls_sni_cert_key;
    if let Some(dir) = cert_dir {
        cert_pair(&dir, serving, problems);
    }
    alias(
        problems,
        (
            "--http2-max-concurrent-streams",
            &mut serving.http2_max_concurrent_streams,
        ),
        // 0 is k8s.io/apiserver's "the default".
        (
            "--http2-max-streams-per-connection",
            http2_max_streams_per_connection.filter(|n| *n != 0),
        ),
    );
    alias(
        problems,
        ("--http2-disable", &mut serving.http2_disable),
        ("--disable-http2-serving", disable_http2_serving),
    );
    if let (Some(authn), Some(authz)) = (&authentication_kubeconfig, &authorization_kubeconfig) {
        if authn != authz {
            problems.add(format!(
                "--authentication-kubeconfig {} and --authorization-kubeconfig {} differ: \
                 scrape-guard sends TokenReviews and SubjectAccessReviews with one kubeconfig \
                 (--kubeconfig)",
                authn.display(),
                authz.display()
            ));
        }
    }
    alias(
        problems,
        ("--kubeconfig", &mut kube.kubeconfig),
        ("--authentication-kubeconfig", authentication_kubeconfig),
    );
    alias(
        problems,
        ("--kubeconfig", &mut kube.kubeconfig),
        ("--authorization-kubeconfig", authorization_kubeconfig),
    );
    alias(
        problems,
        ("--auth-cache-ttl", &mut cache.auth_cache_ttl),
        (
            "--authentication-token-webhook-cache-ttl",
            authentication_token_webhook_cache_ttl,
        ),
    );
    alias(
        problems,
        (
            "--auth-negative-cache-ttl",
            &mut cache.auth_negative_cache_ttl,
        ),
        (
            "--authentication-token-webhook-cache-ttl",
            authentication_token_webhook_cache_ttl,
        ),
    );
    alias(
        problems,
        ("--authz-allow-ttl", &mut cache.authz_allow_ttl),
        (
            "--authorization-webhook-cache-authorized-ttl",
            authorization_webhook_cache_authorized_ttl,
        ),
    );
    alias(
        problems,
        ("--authz-deny-ttl", &mut cache.authz_deny_ttl),
        (
            "--authorization-webhook-cache-unauthorized-ttl",
            authorization_webhook_cache_unauthorized_ttl,
        ),
    );
    (front_proxy, rewrite)
}

/// `--bind-address` and `--secure-port` as a `--secure-listen-address`; each one given
/// must agree with the part of `--secure-listen-address` it names.
fn listen(
    bind_address: Option<String>,
    secure_port: Option<u16>,
    ours: &mut Option<ListenAddress>,
    problems: &mut Problems,
) {
    if bind_address.is_none() && secure_port.is_none() {
        return;
    }
    if let Some(host) = &bind_address {
        if host.parse::<IpAddr>().is_err() {
            problems.add(format!("--bind-address {host:?} is not an IP address"));
        }
    }
    if secure_port == Some(0) {
        problems.add("--secure-port must be between 1 and 65535");
    }
    let theirs = ListenAddress {
        host: bind_address
            .clone()
            .unwrap_or_else(|| APISERVER_BIND_ADDRESS.to_owned()),
        port: secure_port.unwrap_or(APISERVER_SECURE_PORT),
    };
    let Some(current) = ours else {
        *ours = Some(theirs);
        return;
    };
    let host_differs = bind_address.as_ref().is_some_and(|h| *h != current.host);
    let port_differs = secure_port.is_some_and(|p| p != current.port);
    if host_differs || port_differs {
        let given: Vec<String> = [
            bind_address.map(|h| format!("--bind-address {h}")),
            secure_port.map(|p| format!("--secure-port {p}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        problems.add(format!(
            "--secure-listen-address {current} and {} disagree: they set the same listener, \
             give one (or the same address)",
            given.join(" ")
        ));
    }
}

/// `--cert-dir`: its apiserver.crt/apiserver.key when no pair is given by file;
/// k8s.io/apiserver ignores it otherwise, and so does scrape-guard.
fn cert_pair(dir: &std::path::Path, serving: &mut ServingArgs, problems: &mut Problems) {
    if serving.tls_cert_file.is_some() || serving.tls_private_key_file.is_some() {
        return;
    }
    let (cert, key): (PathBuf, PathBuf) = (dir.join(CERT_DIR_PAIR.0), dir.join(CERT_DIR_PAIR.1));
    if cert.exists() && key.exists() {
        serving.tls_cert_file = Some(cert);
        serving.tls_private_key_file = Some(key);
    } else {
        problems.warn(format!(
            "--cert-dir {}: no {} and {} there; serving a self-signed certificate generated in \
             memory (kube-rbac-proxy would also write it to that directory)",
            dir.display(),
            CERT_DIR_PAIR.0,
            CERT_DIR_PAIR.1
        ));
    }
}

/// One setting under two names: the alias fills it, or must agree with it.
pub(super) fn alias<T: PartialEq + fmt::Debug>(
    problems: &mut Problems,
    (ours, slot): (&str, &mut Option<T>),
    (theirs, value): (&str, Option<T>),
) {
    let Some(value) = value else {
        return;
    };
    match slot {
        Some(current) if *current != value => problems.add(format!(
            "{ours} {current:?} and {theirs} {value:?} disagree: they are the same setting, give \
             one (or the same value)"
        )),
        Some(_) => {}
        None => *slot = Some(value),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::super::{Args, Config};

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["scrape-guard", "--upstream=http://127.0.0.1:9100/"];
        argv.extend_from_slice(args);
        let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        Config::try_from(args).map_err(|e| e.to_string())
    }

    #[test]
    fn apiserver_flags_alias_ours() {
        let config = parse(&[
            "--bind-address=127.0.0.1",
            "--secure-port=9443",
            "--http2-max-streams-per-connection=50",
            "--disable-http2-serving",
            "--authentication-kubeconfig=/k",
            "--authorization-kubeconfig=/k",
            "--authentication-token-webhook-cache-ttl=1m",
            "--authorization-webhook-cache-authorized-ttl=20s",
            "--authorization-webhook-cache-unauthorized-ttl=5s",
            "--authentication-tolerate-lookup-failure",
            "--authentication-skip-lookup=true",
        ])
        .unwrap();
        assert_eq!(config.listeners[0].listen.to_string(), "127.0.0.1:9443");
        assert_eq!(config.http.max_concurrent_streams, 50);
        assert!(!config.http.http2);
        assert_eq!(
            config.auth.apiserver.kubeconfig.as_deref(),
            Some("/k".as_ref())
        );
        assert_eq!(config.auth.authn.cache.positive, Duration::from_secs(60));
        assert_eq!(config.auth.authn.cache.negative, Duration::from_secs(60));
        assert_eq!(config.auth.authz.cache.positive, Duration::from_secs(20));
        assert_eq!(config.auth.authz.cache.negative, Duration::from_secs(5));

        let port_only = parse(&["--secure-port=8443"]).unwrap();
        assert_eq!(port_only.listeners[0].listen.to_string(), "0.0.0.0:8443");
        let zero_means_default = parse(&["--http2-max-streams-per-connection=0"]).unwrap();
        assert_eq!(zero_means_default.http.max_concurrent_streams, 100);
    }

    #[test]
    fn both_dialects_may_agree_but_not_contradict() {
        parse(&[
            "--secure-listen-address=127.0.0.1:9443",
            "--bind-address=127.0.0.1",
            "--secure-port=9443",
            "--kubeconfig=/k",
            "--authentication-kubeconfig=/k",
            "--authz-allow-ttl=1m",
            "--authorization-webhook-cache-authorized-ttl=60s",
        ])
        .unwrap();
        let table: [(&[&str], &[&str]); 5] = [
            (
                &["--secure-listen-address=:8443", "--secure-port=9443"],
                &["--secure-listen-address :8443", "--secure-port 9443"],
            ),
            (
                &[
                    "--http2-max-concurrent-streams=10",
                    "--http2-max-streams-per-connection=20",
                ],
                &[
                    "--http2-max-concurrent-streams",
                    "--http2-max-streams-per-connection",
                ],
            ),
            (
                &["--kubeconfig=/a", "--authorization-kubeconfig=/b"],
                &["--kubeconfig", "--authorization-kubeconfig"],
            ),
            (
                &[
                    "--authentication-kubeconfig=/a",
                    "--authorization-kubeconfig=/b",
                ],
                &["one kubeconfig"],
            ),
            (
                &[
                    "--auth-negative-cache-ttl=10s",
                    "--authentication-token-webhook-cache-ttl=2m",
                ],
                &[
                    "--auth-negative-cache-ttl",
                    "--authentication-token-webhook-cache-ttl",
                ],
            ),
        ];
        for (args, needles) in table {
            let err = parse(args).unwrap_err();
            for needle in needles {
                assert!(
                    err.contains(needle),
                    "{args:?}: missing {needle:?} in\n{err}"
                );
            }
        }
    }

    #[test]
    fn unsupported_apiserver_flags_say_what_to_use() {
        let table = [
            (
                "--tls-sni-cert-key=a.crt",
                "--tls-sni-cert-key \"a.crt\": expected",
            ),
            ("--permit-port-sharing", "one proxy per port"),
            (
                "--authorization-always-allow-paths=/healthz",
                "--ignore-paths",
            ),
            ("--bind-address=localhost", "not an IP address"),
            ("--secure-port=0", "between 1 and 65535"),
        ];
        for (flag, needle) in table {
            let err = parse(&[flag]).unwrap_err();
            assert!(err.contains(needle), "{flag}: {err}");
        }
        assert!(parse(&["--permit-port-sharing=false"]).is_ok());
        let config = parse(&["--tls-sni-cert-key=a.crt,a.key:a.test"]).unwrap();
        assert_eq!(
            config.listeners[0].tls.sni[0].to_string(),
            "a.crt,a.key:a.test"
        );
    }

    #[test]
    fn the_lookup_happens_for_the_rewrites_flags_only() {
        use crate::authn::lookup::{Lookup, OnFailure};
        let lookup = |args: &[&str]| parse(args).unwrap().auth.front_proxy.lookup;
        // kube-rbac-proxy v0.x's flags (and ours): never.
        assert_eq!(lookup(&[]), Lookup::Off);
        assert_eq!(
            lookup(&["--kubeconfig=/k", "--client-ca-file=/ca"]),
            Lookup::Off
        );
        // Any flag of the rewrite's dialect: as the rewrite does.
        assert_eq!(
            lookup(&["--authentication-skip-lookup=false"]),
            Lookup::On(OnFailure::Fatal)
        );
        assert_eq!(
            lookup(&["--authentication-kubeconfig=/k"]),
            Lookup::On(OnFailure::Fatal)
        );
        assert_eq!(
            lookup(&["--authentication-tolerate-lookup-failure"]),
            Lookup::On(OnFailure::Tolerate)
        );
        assert_eq!(
            lookup(&[
                "--authentication-kubeconfig=/k",
                "--authentication-skip-lookup"
            ]),
            Lookup::Off
        );
    }

    #[test]
    fn requestheader_flags_are_the_whole_front_proxy_configuration() {
        let config = parse(&["--requestheader-client-ca-file=/ca"]).unwrap();
        let flags = config.auth.front_proxy.flags.unwrap();
        assert_eq!(flags.ca_file, std::path::Path::new("/ca"));
        assert_eq!(
            flags.headers,
            crate::authn::front_proxy::RequestHeaders::flag_defaults()
        );
        let config = parse(&[
            "--requestheader-client-ca-file=/ca",
            "--requestheader-username-headers=X-A,X-B",
            "--requestheader-allowed-names=front-proxy",
            "--requestheader-uid-headers=X-Remote-Uid",
        ])
        .unwrap();
        let headers = config.auth.front_proxy.flags.unwrap().headers;
        assert_eq!(headers.username, ["X-A", "X-B"]);
        assert_eq!(headers.allowed_names, ["front-proxy"]);
        assert_eq!(headers.uid, ["X-Remote-Uid"]);
        // Without the CA file the header flags do nothing (the cluster's settings, if
        // any, are taken whole): a warning says so.
        let config = parse(&["--requestheader-username-headers=X-A"]).unwrap();
        assert!(config.auth.front_proxy.flags.is_none());
        assert!(
            config.warnings.iter().any(|w| w.contains(
                "--requestheader-username-headers has no effect without --requestheader-client-ca-file"
            )),
            "{:?}",
            config.warnings
        );
        let err = parse(&[
            "--requestheader-client-ca-file=/ca",
            "--requestheader-group-headers=a, ,b",
        ])
        .unwrap_err();
        assert!(
            err.contains("empty value in --requestheader-group-headers"),
            "{err}"
        );
    }

    #[test]
    fn cert_dir_supplies_the_pair_when_none_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let config = parse(&[&format!("--cert-dir={}", dir.path().display())]).unwrap();
        assert!(config.warnings.iter().any(|w| w.contains("--cert-dir")));
        std::fs::write(dir.path().join("apiserver.crt"), "").unwrap();
        std::fs::write(dir.path().join("apiserver.key"), "").unwrap();
        let config = parse(&[&format!("--cert-dir={}", dir.path().display())]).unwrap();
        assert!(
            matches!(&config.listeners[0].tls.source, crate::tls::TlsSource::Files { cert, .. } if cert.ends_with("apiserver.crt"))
        );
    }
}
