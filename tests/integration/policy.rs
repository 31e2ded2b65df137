//! Local policy over real TLS: standalone mode with the shipped example, local RBAC and
//! static rules composing with SubjectAccessReview, config-file resource attributes,
//! hot reload, and the 403 doctor's output.

use scrape_guard_testkit as support;

use std::{path::Path, process::Command, time::Duration};

use support::{client, eventually, get, Echo, FakeApiserver, Pki, Proxy, METRICS_PAGE};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/standalone");
const SA: &str = "system:serviceaccount:monitoring:prometheus";

fn example(file: &str) -> String {
    format!("{EXAMPLE}/{file}")
}

#[tokio::test]
async fn standalone_mode_serves_the_shipped_example_offline() {
    support::install_crypto();
    let pki = Pki::new();
    let echo = Echo::start().await;
    let proxy = Proxy::start_with(
        &pki,
        &echo.url(),
        &[
            &format!("--token-auth-file={}", example("tokens.csv")),
            &format!("--rbac-file={}", example("rbac.yaml")),
        ],
    )
    .await;
    let c = client(&pki, false);
    let url = proxy.url("/metrics");
    let allowed = get(&c, &url, Some("prometheus-demo-token"), &[]).await;
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.text(), METRICS_PAGE);
    let denied = get(&c, &url, Some("intruder-demo-token"), &[]).await;
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.json()["message"],
        "forbidden: User \"system:serviceaccount:default:intruder\" cannot get path \"/metrics\""
    );
    assert_eq!(get(&c, &url, Some("unknown-token"), &[]).await.status, 401);
    assert_eq!(get(&c, &url, None, &[]).await.status, 401);
    assert_eq!(
        echo.seen().len(),
        1,
        "only the allowed scrape was forwarded"
    );
}

#[tokio::test]
async fn local_allows_skip_the_review_and_local_noes_fall_through_to_it() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("prom", SA);
    api.add_token("other", "system:serviceaccount:team:app");
    api.allow("system:serviceaccount:team:app", "get", "/metrics");
    let config = pki.dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "authorization:\n  static:\n  - user: {groups: [ops]}\n    verb: get\n    path: /federate\n",
    )
    .unwrap();
    api.add_user(
        "ops",
        support::FakeUser {
            name: "oncall".into(),
            uid: "9".into(),
            groups: vec!["ops".into()],
            audiences: vec!["https://kubernetes.default.svc".into()],
        },
    );
    let echo = Echo::start().await;
    let proxy = Proxy::start(
        &pki,
        &api,
        &echo.url(),
        &[
            &format!("--rbac-file={}", example("rbac.yaml")),
            &format!("--config-file={}", config.display()),
        ],
    )
    .await;
    let c = client(&pki, false);

    // Allowed by local RBAC: a TokenReview, but no SubjectAccessReview.
    assert_eq!(
        get(&c, &proxy.url("/metrics"), Some("prom"), &[])
            .await
            .status,
        200
    );
    assert_eq!((api.token_reviews(), api.sars()), (1, 0));

    // Allowed by a static rule matching a group (kube-rbac-proxy ignores groups).
    assert_eq!(
        get(&c, &proxy.url("/federate"), Some("ops"), &[])
            .await
            .status,
        200
    );
    assert_eq!(api.sars(), 0);

    // Local "no" falls through to the apiserver, which says yes.
    assert_eq!(
        get(&c, &proxy.url("/metrics"), Some("other"), &[])
            .await
            .status,
        200
    );
    assert_eq!(api.sars(), 1);

    // Local "no" and apiserver "no": 403.
    assert_eq!(
        get(&c, &proxy.url("/federate"), Some("prom"), &[])
            .await
            .status,
        403
    );
    assert_eq!(api.sars(), 2);
}

#[tokio::test]
async fn config_file_rewrites_become_resource_reviews() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("prom", SA);
    let config = pki.dir.path().join("config.yaml");
    std::fs::write(
        &config,
        r#"authorization:
  resourceAttributes:
    namespace: "{{ .Value }}"
    apiGroup: monitoring.coreos.com
    apiVersion: v1
    resource: prometheusrules
  rewrites:
    byQueryParameter: {name: namespace}
"#,
    )
    .unwrap();
    let echo = Echo::start().await;
    let proxy = Proxy::start(
        &pki,
        &api,
        &echo.url(),
        &[&format!("--config-file={}", config.display())],
    )
    .await;
    let c = client(&pki, false);

    let reply = get(&c, &proxy.url("/api/v1/rules"), Some("prom"), &[]).await;
    assert_eq!(
        reply.status, 400,
        "a rewrite with no value is a bad request"
    );
    assert_eq!(
        api.token_reviews(),
        1,
        "authenticated first (as kube-rbac-proxy does), then refused"
    );

    // An unauthenticated caller's rewrite values are never looked at: 401, no review.
    let reply = get(
        &c,
        &proxy.url("/api/v1/rules?namespace=a&namespace=b"),
        Some("junk"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 401);
    assert_eq!(api.sars(), 0);

    let reply = get(
        &c,
        &proxy.url("/api/v1/rules?namespace=team-a"),
        Some("prom"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.json()["message"],
        "forbidden: User \"system:serviceaccount:monitoring:prometheus\" cannot get resource \
         \"prometheusrules\" in API group \"monitoring.coreos.com\" in the namespace \"team-a\""
    );
    let spec = api.last_sar_spec();
    assert_eq!(spec["resourceAttributes"]["namespace"], "team-a");
    assert_eq!(spec["resourceAttributes"]["group"], "monitoring.coreos.com");
    assert_eq!(spec["resourceAttributes"]["resource"], "prometheusrules");
    assert_eq!(spec["resourceAttributes"]["verb"], "get");
    assert!(spec.get("nonResourceAttributes").is_none());
}

#[tokio::test]
async fn token_and_rbac_files_reload_and_broken_versions_keep_the_last_good_one() {
    support::install_crypto();
    let pki = Pki::new();
    let dir = pki.dir.path();
    let tokens = dir.join("tokens.csv");
    let rbac = dir.join("rbac.yaml");
    std::fs::copy(example("tokens.csv"), &tokens).unwrap();
    std::fs::copy(example("rbac.yaml"), &rbac).unwrap();
    let echo = Echo::start().await;
    let proxy = Proxy::start_with(
        &pki,
        &echo.url(),
        &[
            &format!("--token-auth-file={}", tokens.display()),
            &format!("--rbac-file={}", rbac.display()),
        ],
    )
    .await;
    let c = client(&pki, false);
    let url = proxy.url("/metrics");
    let status = |token: &'static str| {
        let (c, url) = (c.clone(), url.clone());
        async move { get(&c, &url, Some(token), &[]).await.status.as_u16() }
    };
    assert_eq!(status("intruder-demo-token").await, 403);

    // Grant the intruder; the new RBAC applies without a restart.
    let granted = std::fs::read_to_string(&rbac).unwrap().replace(
        "    name: prometheus\n    namespace: monitoring\n",
        "    name: intruder\n    namespace: default\n",
    );
    write_atomically(&rbac, &granted);
    wait_for(|| status("intruder-demo-token"), 200).await;

    // A broken RBAC file is ignored: the last good version stays in force.
    write_atomically(&rbac, "kind: ClusterRole\nmetadata: [broken\n");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(status("intruder-demo-token").await, 200);

    // A new token appears; a broken token file keeps the last good tokens.
    let mut csv = std::fs::read_to_string(&tokens).unwrap();
    csv.push_str("new-token,system:serviceaccount:default:intruder,1003\n");
    write_atomically(&tokens, &csv);
    wait_for(|| status("new-token"), 200).await;
    write_atomically(&tokens, "new-token,\"unterminated\n");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(status("new-token").await, 200);
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn wait_for<F, Fut>(mut check: F, want: u16)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    eventually(Duration::from_secs(20), || {
        let check = check();
        async move {
            let got = check.await;
            if got == want {
                Ok(())
            } else {
                Err(format!("still {got}, want {want} after 20s"))
            }
        }
    })
    .await
}

const BIN: &str = env!("CARGO_BIN_EXE_scrape-guard");

/// Runs the binary in `dir`: (exit code, stdout, stderr).
fn doctor_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("KUBECONFIG")
        .env_remove("SCRAPE_GUARD_LOG")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The doctor's (exit code, stdout, stderr), run in the standalone example's directory.
fn doctor(args: &[&str]) -> (i32, String, String) {
    doctor_in(Path::new(EXAMPLE), args)
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create)",
            path.display()
        )
    });
    assert_eq!(actual, want, "{name} differs from the golden file");
}

/// The diagnosis on stderr, the RBAC alone on stdout, so that `>> rbac.yaml` appends
/// nothing else.
#[test]
fn can_i_explains_a_deny_and_prints_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "intruder-demo-token\n").unwrap();
    let (code, out, err) = doctor(&[
        "can-i",
        &format!("--token-file={}", token.display()),
        "--token-auth-file=tokens.csv",
        "--rbac-file=rbac.yaml",
    ]);
    assert_eq!(code, 1, "{err}");
    golden("can-i-denied.txt", &err);
    golden("can-i-denied.yaml", &out);
}

#[test]
fn can_i_explains_an_allow() {
    let (code, out, err) = doctor(&[
        "can-i",
        &format!("--as={SA}"),
        "--as-group=system:serviceaccounts",
        "--token-auth-file=tokens.csv",
        "--rbac-file=rbac.yaml",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "", "nothing to apply: stdout stays empty");
    golden("can-i-allowed.txt", &err);
}

#[test]
fn can_i_reports_an_unknown_token_as_not_authenticated() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "nobody-knows-me").unwrap();
    let (code, out, err) = doctor(&[
        "can-i",
        &format!("--token-file={}", token.display()),
        "--token-auth-file=tokens.csv",
    ]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert!(err.contains("401 Unauthorized"), "{err}");
    assert!(
        !err.contains("nobody-knows-me"),
        "the token is never printed"
    );
}

#[test]
fn can_i_as_a_user_needs_only_the_policy_file_offline() {
    let (code, _, err) = doctor(&[
        "can-i",
        &format!("--as={SA}"),
        "--as-group=system:serviceaccounts",
        "--rbac-file=rbac.yaml",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("decision:  allowed"), "{err}");
}

/// What the doctor prints on stdout, appended twice (`scrape-guard rbac >> file`, then
/// can-i's advice `>> file`) to the shipped RBAC file, still loads with the loader
/// `--rbac-file` uses, and grants what each said.
#[test]
fn the_doctors_output_appended_twice_keeps_the_rbac_file_valid() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rbac.yaml");
    std::fs::copy(example("rbac.yaml"), &file).unwrap();
    let append = |text: &str| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    let (code, rbac, err) = doctor_in(
        dir.path(),
        &[
            "rbac",
            "--serviceaccount=team-a/scraper",
            "--path=/federate",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(rbac.starts_with("---\n"), "{rbac}");
    append(&rbac);
    let token = dir.path().join("token");
    std::fs::write(&token, "intruder-demo-token\n").unwrap();
    let (code, grant, err) = doctor_in(
        dir.path(),
        &[
            "can-i",
            &format!("--token-file={}", token.display()),
            &format!("--token-auth-file={}", example("tokens.csv")),
            "--rbac-file=rbac.yaml",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("scrape-guard can-i ... >> rbac.yaml"),
        "the advice names the file to append to:\n{err}"
    );
    assert!(grant.starts_with("---\n"), "{grant}");
    append(&grant);
    // The file as it is now, read by can-i's own --rbac-file loading: each grant allows,
    // the shipped one still does, and the loader has nothing to warn about.
    for (user, path) in [
        ("system:serviceaccount:team-a:scraper", "/federate"),
        ("system:serviceaccount:default:intruder", "/metrics"),
        (SA, "/metrics"),
    ] {
        let (code, out, err) = doctor_in(
            dir.path(),
            &[
                "can-i",
                &format!("--as={user}"),
                &format!("--path={path}"),
                "--rbac-file=rbac.yaml",
            ],
        );
        assert_eq!(code, 0, "{user} {path}:\n{err}{out}");
        assert!(!err.contains("WARN"), "{err}");
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.matches("\n---\n").count(), 5, "{text}");
}

#[test]
fn can_i_without_a_subject_names_both_ways_to_give_one() {
    let output = Command::new(BIN).arg("can-i").output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--token-file") && err.contains("--as"),
        "{err}"
    );
}

#[test]
fn can_i_exits_2_on_errors() {
    let (code, out, err) = doctor(&[
        "can-i",
        "--token-file=/nonexistent",
        "--token-auth-file=/nonexistent.csv",
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(out, "");
    assert!(err.contains("/nonexistent"), "{err}");
}

#[test]
fn rbac_prints_the_grant_for_a_service_account() {
    let (code, out, _) = doctor(&["rbac", "--serviceaccount=monitoring/prometheus-k8s"]);
    assert_eq!(code, 0);
    golden("rbac-serviceaccount.txt", &out);
    let (code, out, _) = doctor(&[
        "rbac",
        "--user=alice",
        "--path=/metrics",
        "--path=/federate*",
        "--verb=get",
    ]);
    assert_eq!(code, 0);
    golden("rbac-user-paths.txt", &out);
    let (code, out, _) = doctor(&["rbac", "--serviceaccount=prometheus-k8s"]);
    assert_eq!(code, 2, "NAMESPACE/NAME is required");
    assert_eq!(out, "");
}
