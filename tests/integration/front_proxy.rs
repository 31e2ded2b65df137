//! Front-proxy (requestheader) authentication and the cluster lookup, over real TLS:
//! a certificate of the requestheader CA (with an allowed CN) makes the caller's headers
//! name the user; without one the headers are ignored; they never reach the upstream;
//! `kube-system/extension-apiserver-authentication` fills the configuration in when
//! the invocation is in kube-rbac-proxy's rewrite's flags, and a failed read is fatal
//! unless tolerated.

use scrape_guard_testkit as support;

use support::{client, client_with, get, pki::Ca, Echo, FakeApiserver, Pki, Proxy};

const SA: &str = "system:serviceaccount:monitoring:prometheus";

/// The headers a front proxy sets, and more of the same kind.
const NAMED: &[(&str, &str)] = &[
    ("X-Remote-User", "alice"),
    ("X-Remote-Group", "devs"),
    ("X-Remote-Extra-Scopes", "read"),
    ("X-Remote-Extra-Acme.com%2Fproject", "p1"),
];

/// A front-proxy CA written beside the test PKI, and the certificate of a proxy `cn`.
fn front_proxy_ca(pki: &Pki) -> (Ca, std::path::PathBuf) {
    let ca = Ca::new("front-proxy CA");
    let path = pki.dir.path().join("front-proxy-ca.crt");
    support::pki::write(&path, ca.pem());
    (ca, path)
}

fn identity(ca: &Ca, cn: &str) -> (String, String) {
    let cert = ca.client(cn, &["system:masters"]);
    (cert.cert_pem, cert.key_pem)
}

/// The identity headers the proxy sets, under names no front proxy uses.
const SEEN: [&str; 3] = [
    "--auth-header-fields-enabled",
    "--auth-header-user-field-name=X-Seen-User",
    "--auth-header-groups-field-name=X-Seen-Groups",
];

/// The user the upstream was told of last.
fn last_user(echo: &Echo) -> String {
    let seen = echo.seen();
    let last = seen.last().expect("nothing forwarded");
    last.headers["x-seen-user"].to_str().unwrap().to_owned()
}

/// No front-proxy header reached the upstream.
fn assert_unseen(echo: &Echo) {
    for seen in echo.seen() {
        let leaked: Vec<&str> = seen
            .headers
            .keys()
            .map(|k| k.as_str())
            .filter(|k| k.starts_with("x-remote-"))
            .collect();
        assert!(leaked.is_empty(), "forwarded {leaked:?} to {}", seen.uri);
    }
}

#[tokio::test]
async fn a_front_proxy_names_the_user_and_its_headers_stay_here() {
    support::install_crypto();
    let pki = Pki::new();
    let (proxies, proxies_path) = front_proxy_ca(&pki);
    let api = FakeApiserver::start(&pki).await;
    api.add_token("good", SA);
    api.allow(SA, "get", "/metrics");
    api.allow("alice", "get", "/metrics");
    api.allow("cert-user", "get", "/metrics");
    let echo = Echo::start().await;
    let proxy = Proxy::start(
        &pki,
        &api,
        &echo.url(),
        &[
            &format!("--client-ca-file={}", pki.ca_path.display()),
            &format!("--requestheader-client-ca-file={}", proxies_path.display()),
            "--requestheader-allowed-names=front-proxy",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--authentication-skip-lookup",
            SEEN[0],
            SEEN[1],
            SEEN[2],
        ],
    )
    .await;
    let url = proxy.url("/metrics");

    // The front proxy's certificate and headers: alice, asked about as alice.
    let front = client_with(&pki, false, Some(&identity(&proxies, "front-proxy")));
    let reply = get(&front, &url, None, NAMED).await;
    assert_eq!(reply.status, 200, "{}", reply.describe());
    assert_eq!(api.token_reviews(), 0);
    let sar = api.last_sar_spec();
    assert_eq!(sar["user"], "alice");
    assert_eq!(
        sar["groups"],
        serde_json::json!(["devs", "system:authenticated"])
    );
    assert_eq!(sar["extra"]["scopes"], serde_json::json!(["read"]));
    assert_eq!(sar["extra"]["acme.com/project"], serde_json::json!(["p1"]));

    // The same certificate without a username header is nobody: its CN is no user,
    // so the token decides (the apiserver's union: requestheader, x509, token).
    let reply = get(&front, &url, Some("good"), &[("X-Remote-Group", "devs")]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(last_user(&echo), SA);
    assert_eq!(get(&front, &url, None, &[]).await.status, 401);

    // A token beside the headers: the front proxy wins, as in the apiserver.
    let reply = get(&front, &url, Some("good"), NAMED).await;
    assert_eq!(reply.status, 200);
    assert_eq!(last_user(&echo), "alice");
    assert_eq!(
        echo.seen().last().unwrap().headers["x-seen-groups"],
        "devs|system:authenticated"
    );

    // A user the apiserver does not allow is refused under its own name.
    let reply = get(&front, &url, None, &[("X-Remote-User", "mallory")]).await;
    assert!(
        reply.is_status(
            403,
            Some("forbidden: User \"mallory\" cannot get path \"/metrics\"")
        ),
        "{}",
        reply.describe()
    );

    assert_eq!(echo.seen().len(), 3);
    assert_unseen(&echo);
    proxy.shutdown().await;
}

#[tokio::test]
async fn without_a_front_proxy_certificate_the_headers_are_ignored() {
    support::install_crypto();
    let pki = Pki::new();
    let (proxies, proxies_path) = front_proxy_ca(&pki);
    let api = FakeApiserver::start(&pki).await;
    api.add_token("good", SA);
    api.allow(SA, "get", "/metrics");
    api.allow("alice", "get", "/metrics");
    api.allow("cert-user", "get", "/metrics");
    api.allow("intruder", "get", "/metrics");
    let echo = Echo::start().await;
    let proxy = Proxy::start(
        &pki,
        &api,
        &echo.url(),
        &[
            &format!("--client-ca-file={}", pki.ca_path.display()),
            &format!("--requestheader-client-ca-file={}", proxies_path.display()),
            "--requestheader-allowed-names=front-proxy",
            SEEN[0],
            SEEN[1],
            SEEN[2],
        ],
    )
    .await;
    let url = proxy.url("/metrics");

    // No certificate: the token's user, whatever the headers say.
    let plain = client(&pki, false);
    assert_eq!(get(&plain, &url, Some("good"), NAMED).await.status, 200);
    assert_eq!(last_user(&echo), SA);
    assert_eq!(get(&plain, &url, None, NAMED).await.status, 401);

    // A certificate of the client CA (the wrong CA for a front proxy): its own CN.
    let cert_user = client_with(&pki, false, Some(&pki.client_cert("cert-user", &[])));
    assert_eq!(get(&cert_user, &url, None, NAMED).await.status, 200);
    assert_eq!(last_user(&echo), "cert-user");

    // The right CA, a CN not in --requestheader-allowed-names: the headers are
    // ignored, and the CN names nobody either; the token decides.
    let intruder = client_with(&pki, false, Some(&identity(&proxies, "intruder")));
    assert_eq!(get(&intruder, &url, None, NAMED).await.status, 401);
    assert_eq!(get(&intruder, &url, Some("good"), NAMED).await.status, 200);
    assert_eq!(last_user(&echo), SA);

    assert_eq!(echo.seen().len(), 3);
    assert_unseen(&echo);
    proxy.shutdown().await;
}

/// What kube-apiserver publishes, for the fake one to serve.
fn publish(api: &FakeApiserver, clients: &str, proxies: &str) {
    api.set_config_map(
        "kube-system",
        "extension-apiserver-authentication",
        &[
            ("client-ca-file", clients),
            ("requestheader-client-ca-file", proxies),
            ("requestheader-allowed-names", r#"["front-proxy"]"#),
            ("requestheader-username-headers", r#"["X-Remote-User"]"#),
            ("requestheader-group-headers", r#"["X-Remote-Group"]"#),
            (
                "requestheader-extra-headers-prefix",
                r#"["X-Remote-Extra-"]"#,
            ),
        ],
    );
}

#[tokio::test]
async fn the_lookup_fills_in_the_cluster_client_ca_and_front_proxies() {
    support::install_crypto();
    let pki = Pki::new();
    let (proxies, _) = front_proxy_ca(&pki);
    let api = FakeApiserver::start(&pki).await;
    publish(&api, &pki.ca_pem, proxies.pem());
    api.add_token("good", SA);
    api.allow(SA, "get", "/metrics");
    api.allow("alice", "get", "/metrics");
    api.allow("cert-user", "get", "/metrics");
    let echo = Echo::start().await;
    // The rewrite's flags: the lookup is on, as there.
    let proxy = Proxy::start(
        &pki,
        &api,
        &echo.url(),
        &["--authentication-skip-lookup=false"],
    )
    .await;
    assert_eq!(api.config_map_reads(), 1);
    let url = proxy.url("/metrics");

    let front = client_with(&pki, false, Some(&identity(&proxies, "front-proxy")));
    assert_eq!(get(&front, &url, None, NAMED).await.status, 200);
    assert_eq!(api.last_sar_spec()["user"], "alice");
    assert_eq!(
        api.last_sar_spec()["extra"]["scopes"],
        serde_json::json!(["read"])
    );
    // The cluster's allowed names hold.
    let intruder = client_with(&pki, false, Some(&identity(&proxies, "intruder")));
    assert_eq!(get(&intruder, &url, None, NAMED).await.status, 401);
    // The cluster's client CA authenticates its certificates as their CN.
    let cert_user = client_with(&pki, false, Some(&pki.client_cert("cert-user", &[])));
    assert_eq!(get(&cert_user, &url, None, &[]).await.status, 200);
    assert_eq!(api.last_sar_spec()["user"], "cert-user");
    assert_unseen(&echo);
    proxy.shutdown().await;

    // kube-rbac-proxy v0.x's flags (a kubeconfig, nothing of the rewrite): no lookup,
    // so nobody is trusted that was not before: the headers are ignored.
    let cluster = FakeApiserver::start(&pki).await;
    publish(&cluster, &pki.ca_pem, proxies.pem());
    cluster.add_token("good", SA);
    cluster.allow(SA, "get", "/metrics");
    cluster.allow("alice", "get", "/metrics");
    let v0 = Proxy::start(&pki, &cluster, &echo.url(), &[]).await;
    let api = cluster;
    let url = v0.url("/metrics");
    assert_eq!(get(&front, &url, None, NAMED).await.status, 401);
    assert_eq!(get(&front, &url, Some("good"), NAMED).await.status, 200);
    assert_eq!(api.last_sar_spec()["user"], SA);
    assert_eq!(
        api.config_map_reads(),
        0,
        "v0.x flags looked the cluster up"
    );
    v0.shutdown().await;
}

/// Starts scrape-guard from `flags`; its startup error, if any.
async fn start_error(pki: &Pki, api: &FakeApiserver, flags: &[&str]) -> Option<String> {
    let mut argv = vec![
        "scrape-guard".to_owned(),
        "--secure-listen-address=127.0.0.1:0".into(),
        format!("--tls-cert-file={}", pki.cert_path.display()),
        format!("--tls-private-key-file={}", pki.key_path.display()),
        "--upstream=http://127.0.0.1:1/".into(),
        format!("--authentication-kubeconfig={}", api.kubeconfig.display()),
    ];
    argv.extend(flags.iter().map(|f| f.to_string()));
    let args = <scrape_guard::Args as clap::Parser>::try_parse_from(argv).unwrap();
    let config = scrape_guard::Config::try_from(args).unwrap();
    match scrape_guard::start(config).await {
        Ok(running) => {
            running.shutdown().await;
            None
        }
        Err(error) => Some(error.to_string()),
    }
}

#[tokio::test]
async fn a_failed_lookup_is_fatal_unless_tolerated_and_an_absent_configmap_is_none() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;

    // Absent: no error (nothing is trusted from it), as in k8s.io/apiserver.
    assert_eq!(start_error(&pki, &api, &[]).await, None);
    assert_eq!(api.config_map_reads(), 1);
    // And while nothing is in force no certificate is asked for: a client that has one
    // of an unknown CA is not refused for it, its token decides.
    api.add_token("good", SA);
    api.allow(SA, "get", "/metrics");
    let echo = Echo::start().await;
    let proxy = Proxy::start(
        &pki,
        &api,
        &echo.url(),
        &["--authentication-skip-lookup=false"],
    )
    .await;
    let stranger = identity(&Ca::new("nobody's CA"), "front-proxy");
    let with_cert = client_with(&pki, false, Some(&stranger));
    let url = proxy.url("/metrics");
    assert_eq!(get(&with_cert, &url, Some("good"), NAMED).await.status, 200);
    assert_unseen(&echo);
    proxy.shutdown().await;

    // Forbidden: the Role is not bound. Fatal by default, naming the fix.
    api.forbid_config_maps();
    let error = start_error(&pki, &api, &[])
        .await
        .expect("started without the lookup");
    assert!(
        error.contains("kube-system/extension-apiserver-authentication")
            && error.contains("forbidden")
            && error.contains("extension-apiserver-authentication-reader"),
        "{error}"
    );
    assert_eq!(
        start_error(&pki, &api, &["--authentication-tolerate-lookup-failure"]).await,
        None
    );
    assert_eq!(
        start_error(&pki, &api, &["--authentication-skip-lookup"]).await,
        None
    );
    // With the front-proxy CA from the flags, only the client CA was looked up: as in
    // k8s.io/apiserver, that failure is not fatal.
    let (_, proxies_path) = front_proxy_ca(&pki);
    let flag = format!("--requestheader-client-ca-file={}", proxies_path.display());
    assert_eq!(start_error(&pki, &api, &[&flag]).await, None);
}
