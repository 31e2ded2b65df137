//! The audit log (`--audit-log-profile=metadata`, the OpenShift AI fork's): allowed,
//! denied and unauthenticated requests as the fork writes them, with our `unmapped`
//! additions; nothing for paths the fork does not audit; no token, cookie or query in
//! the log; `none` writes nothing; a profile the fork lacks and a log that cannot be
//! opened are startup errors naming the flag; and a writer stuck on a pipe nobody reads
//! never holds a request up: the full queue drops, counts, and writes the gap afterwards.

use scrape_guard_testkit as support;

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::Path,
    process::Command,
    sync::mpsc,
    time::Duration,
};

use serde_json::{json, Value};
use support::{client, eventually, get, Echo, FakeApiserver, Pki, Proxy, SCRAPER};

const TOKEN: &str = "audit-secret-token-3f9a";
const DENIED_TOKEN: &str = "audit-denied-token-77c1";
const STRANGER: &str = "system:serviceaccount:default:stranger";

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[tokio::test]
async fn allowed_denied_and_unauthenticated_requests_are_audited_as_the_fork_writes_them() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token(TOKEN, SCRAPER);
    api.add_token(DENIED_TOKEN, STRANGER);
    api.allow(SCRAPER, "get", "/metrics");
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let path = format!("--audit-log-path={}", log.display());
    let flags = [
        "--audit-log-profile=metadata",
        "--audit-resource-name=fraud-detector",
        "--audit-resource-namespace=models",
        "--audit-resource-type=InferenceService",
        "--audit-ai-provider=KServe",
        "--ignore-paths=/healthz",
        path.as_str(),
    ];
    let proxy = Proxy::start(&pki, &api, &echo.url(), &flags).await;
    let c = client(&pki, false);
    let cookie = [("cookie", "session=cookie-secret-5d2e")];
    let secret_query = proxy.url("/metrics?token=query-secret-8b1f");
    assert_eq!(
        get(&c, &secret_query, Some(TOKEN), &cookie).await.status,
        200
    );
    assert_eq!(
        get(&c, &proxy.url("/metrics"), Some(TOKEN), &[])
            .await
            .status,
        200
    );
    let denied = get(&c, &proxy.url("/metrics"), Some(DENIED_TOKEN), &[]).await;
    assert_eq!(denied.status, 403);
    assert_eq!(get(&c, &proxy.url("/metrics"), None, &[]).await.status, 401);
    // Not guarded, so not audited (as the fork's --ignore-paths).
    assert_eq!(get(&c, &proxy.url("/healthz"), None, &[]).await.status, 200);
    proxy.shutdown().await;

    let text = std::fs::read_to_string(&log).unwrap();
    for secret in [
        TOKEN,
        DENIED_TOKEN,
        "cookie-secret-5d2e",
        "query-secret-8b1f",
    ] {
        assert!(!text.contains(secret), "{secret} in the audit log:\n{text}");
    }
    let events = lines(&text);
    assert_eq!(events.len(), 4, "one event per guarded request:\n{text}");
    let (first, again, denied, unauthenticated) = (&events[0], &events[1], &events[2], &events[3]);

    for event in &events {
        assert_eq!(event["class_uid"], 6003);
        assert_eq!(event["type_uid"], 600399);
        assert_eq!(event["metadata"]["version"], "1.9.0");
        assert_eq!(event["metadata"]["profiles"], json!(["ai_operation"]));
        assert_eq!(event["api"]["operation"], "GET /metrics");
        assert_eq!(event["http_request"]["url"], json!({"path": "/metrics"}));
        assert_eq!(event["src_endpoint"]["ip"], "127.0.0.1");
        assert_eq!(event["dst_endpoint"]["ip"], "127.0.0.1");
        assert_eq!(
            event["resources"],
            json!([{"name": "fraud-detector", "namespace": "models",
                    "type": "InferenceService", "role_id": 1, "role": "Target"}])
        );
        assert_eq!(
            event["ai_model"],
            json!({"name": "fraud-detector", "ai_provider": "KServe"})
        );
        assert!(event["metadata"]["logged_time"].as_i64() >= event["time"].as_i64());
    }

    assert_eq!(
        (&first["status"], &first["status_code"]),
        (&json!("Success"), &json!("200"))
    );
    assert_eq!(first["http_response"]["code"], 200);
    assert_eq!(first["actor"]["user"]["name"], SCRAPER);
    assert_eq!(first["actor"]["user"]["type_id"], 4);
    let ours = &first["unmapped"]["scrape_guard"];
    assert_eq!(
        (&ours["decision"], &ours["source"]),
        (&json!("allow"), &json!("apiserver"))
    );
    assert_eq!(again["unmapped"]["scrape_guard"]["source"], "cache");

    assert_eq!(
        (&denied["status"], &denied["status_code"]),
        (&json!("Failure"), &json!("403"))
    );
    assert_eq!(denied["status_id"], 2);
    assert_eq!(denied["actor"]["user"]["name"], STRANGER);
    assert_eq!(denied["unmapped"]["scrape_guard"]["decision"], "deny");
    assert!(denied["unmapped"]["scrape_guard"]["rule"].is_string());

    assert_eq!(unauthenticated["status_code"], "401");
    assert_eq!(
        unauthenticated["actor"]["user"],
        json!({"name": "Unknown", "type_id": 0})
    );
    assert_eq!(unauthenticated["unmapped"]["scrape_guard"], json!({}));
}

#[tokio::test]
async fn profile_none_writes_nothing() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token(TOKEN, SCRAPER);
    api.allow(SCRAPER, "get", "/metrics");
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let path = format!("--audit-log-path={}", log.display());
    // The resource flags alone, as a KServe sidecar with auditing off might carry them.
    let flags = [
        "--audit-resource-name=m",
        "--audit-ai-provider=KServe",
        path.as_str(),
    ];
    let proxy = Proxy::start(&pki, &api, &echo.url(), &flags).await;
    let c = client(&pki, false);
    assert_eq!(
        get(&c, &proxy.url("/metrics"), Some(TOKEN), &[])
            .await
            .status,
        200
    );
    assert_eq!(get(&c, &proxy.url("/metrics"), None, &[]).await.status, 401);
    proxy.shutdown().await;
    assert!(
        !log.exists(),
        "the default profile is none: no file, no line"
    );
}

/// The read end of a FIFO, opened (so the proxy's open of the write end returns) and
/// never read until `drain` is called.
fn fifo(path: &Path) -> mpsc::Receiver<File> {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo");
    let (tx, rx) = mpsc::channel();
    let path = path.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(File::open(path).unwrap());
    });
    rx
}

fn dropped_total(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("scrape_guard_audit_events_dropped_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no dropped counter in:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_writer_never_blocks_requests_and_the_gap_counts_every_loss() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token(TOKEN, SCRAPER);
    api.allow(SCRAPER, "get", "/metrics");
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pipe = dir.path().join("audit.fifo");
    let reader = fifo(&pipe);
    let path = format!("--audit-log-path={}", pipe.display());
    let port = support::free_port().to_string();
    let admin = format!("--proxy-endpoints-port={port}");
    let flags = [
        "--audit-log-profile=metadata",
        path.as_str(),
        admin.as_str(),
    ];
    let proxy = Proxy::start(&pki, &api, &echo.url(), &flags).await;
    let reader = reader.recv_timeout(Duration::from_secs(10)).unwrap();

    // Nobody reads: the pipe fills (64 KiB, some 90 events), then the queue (1024),
    // and every request after that must still be answered.
    const REQUESTS: usize = 1600;
    let c = client(&pki, false);
    let url = proxy.url("/metrics");
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (c, url) = (c.clone(), url.clone());
        tasks.spawn(async move {
            for _ in (worker..REQUESTS).step_by(8) {
                assert_eq!(get(&c, &url, Some(TOKEN), &[]).await.status, 200);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let metrics_url = format!("https://127.0.0.1:{port}/metrics");
    let dropped = dropped_total(&get(&c, &metrics_url, Some(TOKEN), &[]).await.text());
    assert!(
        dropped as usize >= REQUESTS - 1024 - 200,
        "dropped only {dropped}"
    );

    // Now read: the writer catches up, writes the gap, and ends at shutdown.
    let drained = std::thread::spawn(move || {
        BufReader::new(reader)
            .lines()
            .map(|line| serde_json::from_str::<Value>(&line.unwrap()).unwrap())
            .collect::<Vec<_>>()
    });
    proxy.shutdown().await;
    eventually(Duration::from_secs(30), || {
        let finished = drained.is_finished();
        async move { finished.then_some(()).ok_or("the writer has not finished") }
    })
    .await;
    let lines = drained.join().unwrap();
    let gaps: Vec<&Value> = lines.iter().filter(|l| l["class_uid"] == 0).collect();
    assert!(!gaps.is_empty(), "no gap event");
    for gap in &gaps {
        assert_eq!(gap["activity_name"], "Audit Event Loss");
        assert_eq!(gap["status_code"], "audit_queue_full");
        assert!(gap["end_time"].as_i64() >= gap["start_time"].as_i64());
    }
    let counted: u64 = gaps.iter().map(|g| g["count"].as_u64().unwrap()).sum();
    assert_eq!(
        counted, dropped,
        "the gaps count every loss, as the metric does"
    );
    let events = lines.len() - gaps.len();
    assert_eq!(
        events as u64 + dropped,
        REQUESTS as u64,
        "every request written or counted"
    );
}

#[test]
fn a_profile_the_fork_lacks_or_an_unopenable_log_is_a_startup_error_naming_the_flag() {
    let bin = env!("CARGO_BIN_EXE_scrape-guard");
    let run = |args: &[&str]| {
        let output = Command::new(bin)
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr)
    };
    let (code, stderr) = run(&[
        "--upstream=http://127.0.0.1:9100/",
        "--audit-log-profile=request",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--audit-log-profile"), "{stderr}");
    assert!(
        stderr.contains(r#"must be one of "none" or "metadata""#),
        "{stderr}"
    );

    let (code, stderr) = run(&[
        "--upstream=http://127.0.0.1:9100/",
        "--audit-log-profile=metadata",
        "--audit-log-path=/nonexistent-dir/audit.jsonl",
    ]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("--audit-log-path /nonexistent-dir/audit.jsonl"),
        "{stderr}"
    );
}
