//! `--listeners-file`: several listeners in one process. Each forwards to its own
//! upstream and decides by its own rules, on one apiserver client and one set of
//! caches; each one's files reload on their own; its name is in the metrics and logs;
//! a bad file is a startup error naming the file, the line and the listener.

use scrape_guard_testkit as support;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use support::{
    client, client_with, eventually, free_port, get, Echo, FakeApiserver, Pki, Process, Proxy,
    SCRAPER,
};

const BIN: &str = env!("CARGO_BIN_EXE_scrape-guard");

/// A second scraper, for the second listener.
const TELEMETRY: &str = "system:serviceaccount:monitoring:telemetry";

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A `static:` rule allowing `user` to `get` `/metrics`, as a listener's authorization.
fn allow(user: &str) -> String {
    format!("    - user: {{name: \"{user}\"}}\n      verb: get\n      path: /metrics\n")
}

fn paths(echo: &Echo) -> Vec<String> {
    echo.seen().iter().map(|s| s.uri.clone()).collect()
}

/// The own metrics, scraped as `token` (allowed by the first listener's policy).
async fn own_metrics(pki: &Pki, port: u16, token: &str) -> String {
    let url = format!("https://localhost:{port}/metrics");
    let reply = get(&client(pki, false), &url, Some(token), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

#[tokio::test]
async fn each_listener_forwards_to_its_own_upstream_and_authorizes_by_its_own_rules() {
    support::install_crypto();
    let pki = Pki::new();
    let other = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("scraper", SCRAPER);
    api.add_token("telemetry", TELEMETRY);
    // Nothing is granted in the cluster: every allow below is a listener's own rule.
    let (main_up, telemetry_up) = (Echo::start().await, Echo::start().await);
    let file = pki.dir.path().join("listeners.yaml");
    std::fs::write(
        &file,
        format!(
            "listeners:\n\
             - name: main\n  secureListenAddress: 127.0.0.1:0\n  upstream: {main}\n\
             \x20 tlsCertFile: {cert}\n  tlsPrivateKeyFile: {key}\n  clientCAFile: {ca}\n\
             \x20 allowPaths: [/metrics]\n  authorization:\n    static:\n{scraper}{cert_user}\
             - name: telemetry\n  secureListenAddress: 127.0.0.1:0\n  upstream: {telemetry}\n\
             \x20 tlsCertFile: {other_cert}\n  tlsPrivateKeyFile: {other_key}\n\
             \x20 authHeaderFieldsEnabled: true\n  authorization:\n    static:\n{telemetry_user}",
            main = main_up.url(),
            telemetry = telemetry_up.url(),
            cert = pki.cert_path.display(),
            key = pki.key_path.display(),
            ca = pki.ca_path.display(),
            other_cert = other.cert_path.display(),
            other_key = other.key_path.display(),
            scraper = allow(SCRAPER),
            cert_user = allow("cert-user"),
            telemetry_user = allow(TELEMETRY),
        ),
    )
    .unwrap();
    let proxy = Proxy::start_listeners(&api, &file, &[]).await;
    let names: Vec<&str> = proxy.listeners.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["main", "telemetry"]);
    assert_eq!(
        proxy.addr, proxy.listeners[0].1,
        "the first listener's address"
    );

    // Each listener serves its own certificate: these clients trust one CA each.
    let (to_main, to_telemetry) = (client(&pki, false), client(&other, false));
    let main = proxy.listener_url("main", "/metrics");
    let telemetry = proxy.listener_url("telemetry", "/metrics");
    assert_eq!(get(&to_main, &main, Some("scraper"), &[]).await.status, 200);
    assert_eq!(
        get(&to_main, &main, Some("telemetry"), &[]).await.status,
        403
    );
    let reply = get(&to_telemetry, &telemetry, Some("telemetry"), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        get(&to_telemetry, &telemetry, Some("scraper"), &[])
            .await
            .status,
        403
    );
    // Path policy: main allows /metrics only; telemetry authorizes /debug (and denies it).
    let debug = proxy.listener_url("main", "/debug");
    assert_eq!(
        get(&to_main, &debug, Some("scraper"), &[]).await.status,
        404
    );
    let debug = proxy.listener_url("telemetry", "/debug");
    assert_eq!(
        get(&to_telemetry, &debug, Some("telemetry"), &[])
            .await
            .status,
        403
    );
    // A client certificate names a user where the listener has a client CA only.
    let identity = pki.client_cert("cert-user", &[]);
    let with_cert = client_with(&pki, false, Some(&identity));
    assert_eq!(get(&with_cert, &main, None, &[]).await.status, 200);
    let with_cert = client_with(&other, false, Some(&identity));
    assert_eq!(get(&with_cert, &telemetry, None, &[]).await.status, 401);

    // Each upstream got its own listener's allowed scrapes, with its identity headers.
    assert_eq!(paths(&main_up), ["/metrics", "/metrics"]);
    assert_eq!(paths(&telemetry_up), ["/metrics"]);
    assert!(main_up.seen()[0].headers.get("x-remote-user").is_none());
    assert_eq!(telemetry_up.seen()[0].headers["x-remote-user"], TELEMETRY);
    // Two tokens, two TokenReviews whichever listener they went to; a SubjectAccessReview
    // only for what no listener's rule allowed (each denied).
    assert_eq!(api.token_reviews(), 2);
    assert_eq!(api.sars(), 3);
}

#[tokio::test]
async fn listeners_share_the_apiserver_client_and_its_caches_and_label_their_metrics() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("scraper", SCRAPER);
    api.add_token("fresh", SCRAPER);
    api.allow(SCRAPER, "get", "/metrics");
    let (a_up, b_up) = (Echo::start().await, Echo::start().await);
    let file = pki.dir.path().join("listeners.yaml");
    let tls = format!(
        "  tlsCertFile: {}\n  tlsPrivateKeyFile: {}\n",
        pki.cert_path.display(),
        pki.key_path.display()
    );
    std::fs::write(
        &file,
        format!(
            "listeners:\n\
             - name: a\n  secureListenAddress: 127.0.0.1:0\n  upstream: {}\n{tls}\
             - name: b\n  secureListenAddress: 127.0.0.1:0\n  upstream: {}\n{tls}",
            a_up.url(),
            b_up.url()
        ),
    )
    .unwrap();
    let port = free_port();
    let endpoints = format!("--proxy-endpoints-port={port}");
    let proxy = Proxy::start_listeners(&api, &file, &[&endpoints]).await;
    let c = client(&pki, false);
    let (a, b) = (
        proxy.listener_url("a", "/metrics"),
        proxy.listener_url("b", "/metrics"),
    );
    assert_eq!(get(&c, &a, Some("scraper"), &[]).await.status, 200);
    assert_eq!(get(&c, &b, Some("scraper"), &[]).await.status, 200);
    assert_eq!(get(&c, &a, Some("scraper"), &[]).await.status, 200);
    assert_eq!(
        (api.token_reviews(), api.sars()),
        (1, 1),
        "one TokenReview and one SubjectAccessReview for the token, across both listeners"
    );
    let text = own_metrics(&pki, port, "scraper").await;
    assert_contains(&text, &[
        "scrape_guard_requests_total{listener=\"a\",code=\"200\"} 2",
        "scrape_guard_requests_total{listener=\"b\",code=\"200\"} 1",
        "scrape_guard_authentication_total{listener=\"a\",result=\"authenticated\",source=\"apiserver\"} 1",
        "scrape_guard_authentication_total{listener=\"a\",result=\"authenticated\",source=\"cache\"} 1",
        "scrape_guard_authentication_total{listener=\"b\",result=\"authenticated\",source=\"cache\"} 1",
        "scrape_guard_authorization_total{listener=\"a\",result=\"allowed\",source=\"apiserver\"} 1",
        "scrape_guard_authorization_total{listener=\"a\",result=\"allowed\",source=\"cache\"} 1",
        "scrape_guard_authorization_total{listener=\"b\",result=\"allowed\",source=\"cache\"} 1",
        "scrape_guard_request_duration_seconds_count{listener=\"b\"} 1",
        "scrape_guard_upstream_duration_seconds_count{listener=\"a\"} 2",
        "scrape_guard_certificate_expiry_timestamp_seconds{listener=\"a\"}",
        "scrape_guard_certificate_expiry_timestamp_seconds{listener=\"b\"}",
        // The own /metrics scrape is the process's, not a listener's.
        "scrape_guard_authentication_total{result=\"authenticated\",source=\"cache\"} 1",
        "scrape_guard_authorization_total{result=\"allowed\",source=\"cache\"} 1",
        // Shared: one cache, one review counter.
        "scrape_guard_cache_entries{cache=\"authentication\"} 1",
        "scrape_guard_review_duration_seconds_count{review=\"tokenreview\"} 1",
    ]);

    // Concurrent first scrapes of one new token on both listeners share one review.
    api.set_delay(Duration::from_millis(300));
    let scrapes = (0..8).map(|i| {
        let c = c.clone();
        let url = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move { get(&c, &url, Some("fresh"), &[]).await.status })
    });
    for scrape in scrapes.collect::<Vec<_>>() {
        assert_eq!(scrape.await.unwrap(), 200);
    }
    api.set_delay(Duration::ZERO);
    assert_eq!(
        api.token_reviews(),
        2,
        "the second token: one TokenReview for 8 scrapes"
    );
    assert_eq!(
        api.sars(),
        1,
        "the same user asking the same: still the one decision"
    );
    assert_eq!(a_up.seen().len() + b_up.seen().len(), 3 + 8);

    let text = own_metrics(&pki, port, "scraper").await;
    assert_contains(
        &text,
        &[
            "scrape_guard_requests_total{listener=\"a\",code=\"200\"} 6",
            "scrape_guard_requests_total{listener=\"b\",code=\"200\"} 5",
            "scrape_guard_cache_entries{cache=\"authentication\"} 2",
            "scrape_guard_review_duration_seconds_count{review=\"tokenreview\"} 2",
        ],
    );
    let authentications: usize = text
        .lines()
        .filter(|l| l.starts_with("scrape_guard_authentication_total{listener="))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(
        authentications, 11,
        "every scrape authenticated once:\n{text}"
    );

    let ready = get(&c, &format!("https://localhost:{port}/readyz"), None, &[]).await;
    assert_eq!(ready.status, 200);
    let body = ready.text();
    assert!(
        body.contains("[+]certificate/a ok\n[+]certificate/b ok\n"),
        "{body}"
    );
}

#[tokio::test]
async fn beside_a_file_the_flags_listener_is_default_and_first() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("scraper", SCRAPER);
    api.add_token("telemetry", TELEMETRY);
    let (flags_up, file_up) = (Echo::start().await, Echo::start().await);
    let dir = pki.dir.path();
    let (file, krp) = (dir.join("listeners.yaml"), dir.join("krp.yaml"));
    std::fs::write(
        &krp,
        format!(
            "authorization:\n  static:\n{}",
            allow(SCRAPER).replace("    ", "  ")
        ),
    )
    .unwrap();
    std::fs::write(
        &file,
        format!(
            "listeners:\n- name: telemetry\n  secureListenAddress: 127.0.0.1:0\n  upstream: {}\n\
             \x20 tlsCertFile: {}\n  tlsPrivateKeyFile: {}\n  authorization:\n    static:\n{}",
            file_up.url(),
            pki.cert_path.display(),
            pki.key_path.display(),
            allow(TELEMETRY)
        ),
    )
    .unwrap();
    let port = free_port();
    let proxy = Proxy::start(
        &pki,
        &api,
        &flags_up.url(),
        &[
            &format!("--listeners-file={}", file.display()),
            &format!("--config-file={}", krp.display()),
            &format!("--proxy-endpoints-port={port}"),
        ],
    )
    .await;
    let names: Vec<&str> = proxy.listeners.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["default", "telemetry"]);
    assert_eq!(
        proxy.addr, proxy.listeners[0].1,
        "the flags' listener first"
    );
    let c = client(&pki, false);
    let telemetry = proxy.listener_url("telemetry", "/metrics");
    assert_eq!(
        get(&c, &proxy.url("/metrics"), Some("scraper"), &[])
            .await
            .status,
        200
    );
    assert_eq!(
        get(&c, &proxy.url("/metrics"), Some("telemetry"), &[])
            .await
            .status,
        403
    );
    assert_eq!(
        get(&c, &telemetry, Some("telemetry"), &[]).await.status,
        200
    );
    assert_eq!(get(&c, &telemetry, Some("scraper"), &[]).await.status, 403);
    assert_eq!((flags_up.seen().len(), file_up.seen().len()), (1, 1));
    // The own /metrics: authorized by the first listener's policy (the flags' --config-file).
    let text = own_metrics(&pki, port, "scraper").await;
    let config_gauge = format!(
        "listener=\"default\",flag=\"--config-file\",file=\"{}\"",
        krp.display()
    );
    assert_eq!(reload_status(&text, &config_gauge), "1", "{text}");
    assert_contains(&text, &[
        "scrape_guard_requests_total{listener=\"default\",code=\"200\"} 1",
        "scrape_guard_requests_total{listener=\"telemetry\",code=\"200\"} 1",
        "scrape_guard_authorization_total{listener=\"default\",result=\"allowed\",source=\"local\"} 1",
        "scrape_guard_authorization_total{result=\"allowed\",source=\"local\"} 1",
    ]);
    assert!(
        !text.contains("scrape_guard_config_last_reload_successful{flag=\"--config-file\""),
        "the default listener's file, once, with its label:\n{text}"
    );
}

/// Waits (bounded) until `check` answers `want`.
async fn wait_for<F, Fut, T>(mut check: F, want: T, what: &str)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
    T: PartialEq + std::fmt::Debug,
{
    eventually(Duration::from_secs(20), || {
        let check = check();
        async {
            match check.await {
                got if got == want => Ok(()),
                got => Err(format!("{what}: {got:?}, want {want:?}")),
            }
        }
    })
    .await;
}

/// Waits (bounded) until the reload gauge with `labels` reads `want` in the own metrics;
/// returns those metrics.
async fn wait_for_gauge(pki: &Pki, port: u16, labels: &str, want: &str) -> String {
    eventually(Duration::from_secs(20), || async {
        let text = own_metrics(pki, port, "scraper").await;
        match reload_status(&text, labels) {
            got if got == want => Ok(text),
            got => Err(format!("{labels}: {got:?}, want {want:?}")),
        }
    })
    .await
}

/// Fails naming the first of `needles` that `text` lacks.
fn assert_contains(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

/// The value of the reload gauge for one file, as a listener sees it ("" if absent).
fn reload_status(text: &str, labels: &str) -> String {
    let prefix = format!("scrape_guard_config_last_reload_successful{{{labels}}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_listeners_broken_config_keeps_its_last_good_version_and_the_others_still_reload() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("scraper", SCRAPER);
    api.add_token("telemetry", TELEMETRY);
    let (main_up, telemetry_up) = (Echo::start().await, Echo::start().await);
    let dir = pki.dir.path();
    let (file, krp) = (dir.join("listeners.yaml"), dir.join("krp.yaml"));
    let tls = format!(
        "  tlsCertFile: {}\n  tlsPrivateKeyFile: {}\n",
        pki.cert_path.display(),
        pki.key_path.display()
    );
    // main: an authorization block in the listeners file; telemetry: a kube-rbac-proxy
    // config file of its own.
    let listeners = |main_rules: &str, main_upstream: &str| {
        format!(
            "listeners:\n\
             - name: main\n  secureListenAddress: 127.0.0.1:0\n  upstream: {main_upstream}\n{tls}\
             \x20 authorization:\n    static:\n{main_rules}\
             - name: telemetry\n  secureListenAddress: 127.0.0.1:0\n  upstream: {}\n{tls}\
             \x20 configFile: {}\n",
            telemetry_up.url(),
            krp.display()
        )
    };
    let krp_file =
        |rules: &str| format!("authorization:\n  static:\n{}", rules.replace("    ", "  "));
    std::fs::write(&file, listeners(&allow(SCRAPER), &main_up.url())).unwrap();
    std::fs::write(&krp, krp_file(&allow(TELEMETRY))).unwrap();
    let port = free_port();
    let endpoints = format!("--proxy-endpoints-port={port}");
    let proxy = Proxy::start_listeners(&api, &file, &[&endpoints]).await;
    let c = client(&pki, false);
    let status = |listener: &'static str, token: &'static str| {
        let (c, url) = (c.clone(), proxy.listener_url(listener, "/metrics"));
        async move { get(&c, &url, Some(token), &[]).await.status.as_u16() }
    };
    let main_gauge = format!(
        "listener=\"main\",flag=\"--listeners-file\",file=\"{}\"",
        file.display()
    );
    let telemetry_gauge = format!(
        "listener=\"telemetry\",flag=\"--config-file\",file=\"{}\"",
        krp.display()
    );
    let layout_gauge = format!("flag=\"--listeners-file\",file=\"{}\"", file.display());
    assert_eq!(status("main", "scraper").await, 200);
    assert_eq!(status("main", "telemetry").await, 403);
    assert_eq!(status("telemetry", "telemetry").await, 200);
    assert_eq!(status("telemetry", "scraper").await, 403);
    let text = own_metrics(&pki, port, "scraper").await;
    for gauge in [&main_gauge, &telemetry_gauge, &layout_gauge] {
        assert_eq!(reload_status(&text, gauge), "1", "{gauge} in\n{text}");
    }

    // main's block breaks (a type kube-rbac-proxy refuses too) while telemetry's file
    // grants the scraper: telemetry takes its new version, main keeps its last good one.
    let broken = "    - resourceRequest: maybe\n";
    write_atomically(&file, &listeners(broken, &main_up.url()));
    write_atomically(
        &krp,
        &krp_file(&format!("{}{}", allow(TELEMETRY), allow(SCRAPER))),
    );
    wait_for(
        || status("telemetry", "scraper"),
        200,
        "telemetry's new config",
    )
    .await;
    let text = wait_for_gauge(&pki, port, &main_gauge, "0").await;
    assert_eq!(reload_status(&text, &telemetry_gauge), "1");
    assert_eq!(
        reload_status(&text, &layout_gauge),
        "1",
        "only a block changed"
    );
    assert_eq!(
        status("main", "scraper").await,
        200,
        "main's last good block"
    );
    assert_eq!(status("main", "telemetry").await, 403);

    // Now the other way round: main's block is fixed (and grants telemetry), telemetry's
    // file breaks.
    write_atomically(
        &krp,
        "authorization:\n  static:\n  - resourceRequest: \"true\"\n",
    );
    write_atomically(
        &file,
        &listeners(
            &format!("{}{}", allow(SCRAPER), allow(TELEMETRY)),
            &main_up.url(),
        ),
    );
    wait_for(|| status("main", "telemetry"), 200, "main's fixed block").await;
    let text = wait_for_gauge(&pki, port, &telemetry_gauge, "0").await;
    assert_eq!(reload_status(&text, &main_gauge), "1");
    assert_eq!(
        status("telemetry", "scraper").await,
        200,
        "telemetry's last good file"
    );
    assert_eq!(status("telemetry", "telemetry").await, 200);

    // A change outside the blocks (main's upstream) takes effect at the next start: it
    // is flagged, and main keeps forwarding where it did.
    let elsewhere = Echo::start().await;
    write_atomically(
        &file,
        &listeners(
            &format!("{}{}", allow(SCRAPER), allow(TELEMETRY)),
            &elsewhere.url(),
        ),
    );
    wait_for_gauge(&pki, port, &layout_gauge, "0").await;
    let before = main_up.seen().len();
    assert_eq!(status("main", "scraper").await, 200);
    assert_eq!(main_up.seen().len(), before + 1);
    assert!(elsewhere.seen().is_empty());
}

/// Runs the binary with `args` until it exits (bounded): exit code and stderr.
fn run(args: &[String]) -> (i32, String) {
    let mut child = Process::kill_on_drop(
        Command::new(BIN)
            .args(args)
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running: {args:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code().unwrap_or(-1), err)
}

/// The token of `standalone`'s token file (it authenticates as `SCRAPER`).
const FILE_TOKEN: &str = "sg-listeners-secret-7f3a";

/// A standalone setup (a token file, no apiserver) with this listeners file.
fn standalone(dir: &Path, listeners: &str) -> Vec<String> {
    let (file, tokens) = (dir.join("listeners.yaml"), dir.join("tokens.csv"));
    std::fs::write(&file, listeners).unwrap();
    std::fs::write(&tokens, format!("{FILE_TOKEN},{SCRAPER},1\n")).unwrap();
    vec![
        format!("--listeners-file={}", file.display()),
        format!("--token-auth-file={}", tokens.display()),
    ]
}

#[test]
fn bad_listeners_are_startup_errors_naming_the_file_the_line_and_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("listeners.yaml").display().to_string();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let port = free_port();
    let table: [(String, i32, String); 6] = [
        (
            format!("listeners:\n- {{name: a, secureListenAddress: ':{port}', upstream: 'http://x/'}}\n- {{name: a, secureListenAddress: '127.0.0.1:1', upstream: 'http://x/'}}\n"),
            2,
            format!("--listeners-file {file} line 3: listener a: the name is taken by the listener at line 2"),
        ),
        (
            format!("listeners:\n- {{name: a, secureListenAddress: ':{port}', upstream: 'http://x/'}}\n- {{name: b, secureListenAddress: '127.0.0.1:{port}', upstream: 'http://x/'}}\n"),
            2,
            format!("--listeners-file {file} line 3: listener b: secureListenAddress 127.0.0.1:{port} is listener a's (line 2) too"),
        ),
        (
            "listeners:\n- name: a\n  secureListenAddress: ':1'\n  upstreem: http://x/\n".to_owned(),
            2,
            format!("--listeners-file {file}: line 4: unknown key listeners[0].upstreem; did you mean upstream?"),
        ),
        (
            "listeners:\n- name: a\n  secureListenAddress: ':1'\n  upstream: http://x/\n  authorization:\n    static:\n    - resourceRequest: \"true\"\n".to_owned(),
            1,
            format!("--listeners-file {file} line 2: listener a: line 7: authorization.static[0].resourceRequest must be true or false, not the string \"true\" (kube-rbac-proxy refuses it too)"),
        ),
        (
            format!("listeners:\n- {{name: a, secureListenAddress: '127.0.0.1:{port}', upstream: 'http://x/'}}\n- {{name: b, secureListenAddress: '127.0.0.1:{taken_port}', upstream: 'http://x/'}}\n"),
            1,
            format!("--listeners-file {file} line 3: listener b: secureListenAddress 127.0.0.1:{taken_port}: "),
        ),
        (
            "listeners:\n- name: a\n  secureListenAddress: ':1'\n  upstream: http://x/\n  tlsCertFile: /nonexistent/tls.crt\n  tlsPrivateKeyFile: /nonexistent/tls.key\n".to_owned(),
            1,
            format!("--listeners-file {file} line 2: listener a: tlsCertFile/tlsPrivateKeyFile /nonexistent/tls.crt: "),
        ),
    ];
    for (yaml, want_code, want) in table {
        let (code, err) = run(&standalone(dir.path(), &yaml));
        assert_eq!(code, want_code, "{yaml}\n{err}");
        assert!(err.contains(&want), "{yaml}\nwant {want:?} in\n{err}");
    }
    drop(taken);
}

#[tokio::test]
async fn each_listeners_name_is_in_its_logs_and_the_startup_lines() {
    support::install_crypto();
    let pki = Pki::new();
    let echo = Echo::start().await;
    let (a, b) = (free_port(), free_port());
    let tls = format!(
        "  tlsCertFile: {}\n  tlsPrivateKeyFile: {}\n",
        pki.cert_path.display(),
        pki.key_path.display()
    );
    let yaml = format!(
        "listeners:\n\
         - name: a\n  secureListenAddress: 127.0.0.1:{a}\n  upstream: {up}\n{tls}\
         \x20 authorization:\n    static:\n{rule}\
         - name: b\n  secureListenAddress: 127.0.0.1:{b}\n  upstream: {up}\n{tls}\
         \x20 authorization:\n    static:\n{rule}    statik: []\n",
        up = echo.url(),
        rule = allow(SCRAPER),
    );
    let mut args = standalone(pki.dir.path(), &yaml);
    args.extend(["--access-log".to_owned(), "--log-format=json".to_owned()]);
    let child = Process::kill_on_drop(
        Command::new(BIN)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    for port in [a, b] {
        eventually(Duration::from_secs(20), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map(drop)
                .map_err(|e| format!("nothing on {port}: {e}"))
        })
        .await;
    }
    let h1 = get(
        &client(&pki, false),
        &format!("https://localhost:{a}/metrics"),
        Some(FILE_TOKEN),
        &[],
    )
    .await;
    assert_eq!(h1.status, 200);
    let h2 = get(
        &client(&pki, true),
        &format!("https://localhost:{b}/metrics"),
        Some(FILE_TOKEN),
        &[],
    )
    .await;
    assert_eq!(
        (h2.status.as_u16(), h2.version),
        (200, http::Version::HTTP_2)
    );
    let (status, logs) = support::terminate(child).await;
    assert_eq!(status.code(), Some(0), "{logs}");
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let listener_of =
        |line: &serde_json::Value| line["span"]["listener"].as_str().map(str::to_owned);
    let message = |line: &serde_json::Value| {
        line["fields"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let serving = lines
        .iter()
        .find(|l| message(l) == "scrape-guard serving")
        .unwrap_or_else(|| panic!("no startup line:\n{logs}"));
    assert_eq!(
        serving["fields"]["listeners"],
        format!("a 127.0.0.1:{a}, b 127.0.0.1:{b}"),
        "{logs}"
    );
    for (name, port) in [("a", a), ("b", b)] {
        assert!(
            lines.iter().any(|l| message(l) == "listener serving"
                && listener_of(l).as_deref() == Some(name)
                && l["fields"]["listen"] == format!("127.0.0.1:{port}")),
            "no startup line of listener {name}:\n{logs}"
        );
        // Its access line, HTTP/1.1 on a and HTTP/2 on b, carries its name.
        assert!(
            lines
                .iter()
                .any(|l| l["target"] == "access" && listener_of(l).as_deref() == Some(name)),
            "no access line of listener {name}:\n{logs}"
        );
    }
    // b's block has a key kube-rbac-proxy ignores: a warning with the file and line,
    // in b's span.
    let warning = lines
        .iter()
        .find(|l| message(l).contains("unknown key authorization.statik is ignored"))
        .unwrap_or_else(|| panic!("no warning about statik:\n{logs}"));
    assert_eq!(listener_of(warning).as_deref(), Some("b"), "{logs}");
    assert!(
        message(warning).contains("listeners.yaml line 22"),
        "{logs}"
    );
    assert!(!logs.contains(FILE_TOKEN), "a token in the logs:\n{logs}");
}

/// The policy of a listener of `--listeners-file` is always exactly what its entry
/// names, or its previous policy whole (the log and the reload gauge saying so): an
/// edit that moves a policy between an `authorization:` block and a `configFile:`, a
/// rename, or a new `configFile` path takes a restart, and until then nothing about
/// who gets in changes. Every edit an operator makes, one after the other.
#[tokio::test]
async fn a_listeners_policy_is_its_entrys_or_the_previous_one_whole_on_every_edit() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("scraper", SCRAPER);
    api.add_token("telemetry", TELEMETRY);
    // The scraper may only `get /metrics`; telemetry may get services in monitoring,
    // which is what both listeners' policies ask.
    api.allow(SCRAPER, "get", "/metrics");
    api.allow_resource(TELEMETRY, "get", "monitoring", "services");
    let (main_up, side_up) = (Echo::start().await, Echo::start().await);
    let dir = pki.dir.path();
    let file = dir.join("listeners.yaml");
    let (side_krp, main_krp, other_krp) = (
        dir.join("side.yaml"),
        dir.join("main.yaml"),
        dir.join("other.yaml"),
    );
    let services =
        "resourceAttributes: {namespace: monitoring, resource: services, subresource: metrics}";
    let krp = format!("authorization:\n  {services}\n");
    for path in [&side_krp, &main_krp, &other_krp] {
        std::fs::write(path, &krp).unwrap();
    }
    let tls = format!(
        "  tlsCertFile: {}\n  tlsPrivateKeyFile: {}\n",
        pki.cert_path.display(),
        pki.key_path.display()
    );
    // Each entry as written: its name, its address and upstream, then its policy.
    let entry = |name: &str, which: &Echo, policy: &str| {
        format!(
            "- name: {name}\n  secureListenAddress: 127.0.0.1:0\n  upstream: {}\n{tls}{policy}",
            which.url()
        )
    };
    let block = |extra: &str| format!("  authorization:\n    {services}\n{extra}");
    let config_file = |path: &Path| format!("  configFile: {}\n", path.display());
    let write = |entries: &[String]| {
        write_atomically(&file, &format!("listeners:\n{}", entries.concat()));
    };
    let original = [
        entry("main", &main_up, &block("")),
        entry("side", &side_up, &config_file(&side_krp)),
    ];
    write(&original);
    let port = free_port();
    let endpoints = format!("--proxy-endpoints-port={port}");
    let proxy = Proxy::start_listeners(&api, &file, &[&endpoints]).await;
    let c = client(&pki, false);
    // The listeners by address: names move in the file, sockets do not.
    let (main_url, side_url) = (
        proxy.listener_url("main", "/metrics"),
        proxy.listener_url("side", "/metrics"),
    );
    let status = |url: &str, token: &'static str| {
        let (c, url) = (c.clone(), url.to_owned());
        async move { get(&c, &url, Some(token), &[]).await.status.as_u16() }
    };
    // Both listeners ask for services/metrics: the scraper is out, telemetry in.
    let decisions = || async {
        [
            status(&main_url, "scraper").await,
            status(&main_url, "telemetry").await,
            status(&side_url, "scraper").await,
            status(&side_url, "telemetry").await,
        ]
    };
    const AS_AT_START: [u16; 4] = [403, 200, 403, 200];
    assert_eq!(decisions().await, AS_AT_START);
    let gauge = |listener: &str, flag: &str, path: &Path| {
        format!(
            "listener=\"{listener}\",flag=\"{flag}\",file=\"{}\"",
            path.display()
        )
    };
    let main_gauge = gauge("main", "--listeners-file", &file);
    let side_gauge = gauge("side", "--config-file", &side_krp);
    let layout_gauge = format!("flag=\"--listeners-file\",file=\"{}\"", file.display());
    let wait = |labels: String, want: &'static str| {
        let pki = &pki;
        async move { wait_for_gauge(pki, port, &labels, want).await }
    };
    // Back to the original file: everything reloads and is as at start.
    let restore = || async {
        write(&original);
        for labels in [&main_gauge, &side_gauge, &layout_gauge] {
            wait(labels.clone(), "1").await;
        }
        assert_eq!(decisions().await, AS_AT_START);
    };

    // 1. main's block moved into a configFile (the same policy, in another place):
    // refused, main keeps its block whole (the scraper was let in here).
    write(&[
        entry("main", &main_up, &config_file(&main_krp)),
        original[1].clone(),
    ]);
    wait(main_gauge.clone(), "0").await;
    wait(layout_gauge.clone(), "0").await;
    assert_eq!(decisions().await, AS_AT_START, "block to configFile");
    restore().await;

    // 2. side's configFile moved into a block: refused the same way.
    write(&[original[0].clone(), entry("side", &side_up, &block(""))]);
    wait(side_gauge.clone(), "0").await;
    assert_eq!(decisions().await, AS_AT_START, "configFile to block");
    restore().await;

    // 3. The names swapped: each entry is the other listener's; both refused (the
    // scraper was let in at main's address, which found no block under its name).
    write(&[
        entry("side", &main_up, &block("")),
        entry("main", &side_up, &config_file(&side_krp)),
    ]);
    wait(main_gauge.clone(), "0").await;
    wait(side_gauge.clone(), "0").await;
    assert_eq!(decisions().await, AS_AT_START, "names swapped");
    restore().await;

    // 4. side's configFile path changed, and the file it named before now grants the
    // scraper: neither file is in force until a restart, side's policy stays whole.
    write_atomically(
        &other_krp,
        &format!(
            "authorization:\n  static:\n{}",
            allow(SCRAPER).replace("    ", "  ")
        ),
    );
    write_atomically(&side_krp, &std::fs::read_to_string(&other_krp).unwrap());
    write(&[
        original[0].clone(),
        entry("side", &side_up, &config_file(&other_krp)),
    ]);
    wait(side_gauge.clone(), "0").await;
    assert_eq!(decisions().await, AS_AT_START, "a configFile path changed");
    write_atomically(&side_krp, &krp);
    restore().await;

    // 5. Reordered, with main's block granting the scraper: each entry still
    // describes its listener, so main takes its new block; the order takes a restart.
    let main_granting = entry(
        "main",
        &main_up,
        &format!("  authorization:\n    static:\n{}", allow(SCRAPER)),
    );
    write(&[original[1].clone(), main_granting.clone()]);
    wait(layout_gauge.clone(), "0").await;
    wait_for(
        || status(&main_url, "scraper"),
        200,
        "main's new block, reordered",
    )
    .await;
    assert_eq!(status(&side_url, "scraper").await, 403);
    assert_eq!(
        reload_status(&own_metrics(&pki, port, "scraper").await, &main_gauge),
        "1"
    );
    restore().await;

    // 6. side removed: it still serves, with its policy as it was; main follows its
    // block. 7. A listener added: the others follow their entries.
    write(std::slice::from_ref(&main_granting));
    wait(side_gauge.clone(), "0").await;
    wait_for(
        || status(&main_url, "scraper"),
        200,
        "main's block, side removed",
    )
    .await;
    assert_eq!(status(&side_url, "scraper").await, 403, "side as it was");
    assert_eq!(status(&side_url, "telemetry").await, 200, "side as it was");
    restore().await;
    let extra = entry("extra", &side_up, &block(""));
    write(&[main_granting, original[1].clone(), extra]);
    wait_for(
        || status(&main_url, "scraper"),
        200,
        "main's block, extra added",
    )
    .await;
    wait(layout_gauge.clone(), "0").await;
    assert_eq!(
        reload_status(&own_metrics(&pki, port, "scraper").await, &side_gauge),
        "1"
    );
    restore().await;
}
