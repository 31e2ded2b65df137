//! deploy/mixin/ against a real Prometheus: it loads the PrometheusRule's rules,
//! scrapes scrape-guard's own /metrics on the probes port, and an alert fires when a
//! file scrape-guard watches is broken.
//!
//! promtool's unit tests (deploy/mixin/tests.yaml, run by deploy/mixin/check.sh) pin
//! every alert's expression, `for:` and annotations on synthetic series; this test
//! proves the same rules on the series the real binary exports, through a real scrape.

use std::time::Duration;

use serde_json::Value;

use super::support::{
    eventually, repo_path, write_file, Cluster, Prometheus, RecordingUpstream, ScrapeGuard,
    PROMETHEUS_SA,
};

/// A valid kube-rbac-proxy config file that changes nothing for /metrics: one static
/// rule for a path nobody asks for (everything else goes to a SubjectAccessReview).
const CONFIG: &str = "authorization:\n  static:\n    - user: {name: nobody}\n      \
                      verb: get\n      resourceRequest: false\n      path: /nothing\n";

/// The rule groups of deploy/mixin/prometheusrule.yaml as a Prometheus rule file: its
/// `spec:`, dedented (as check.sh makes it), with every `for:` cut to 5s so that a
/// test waits seconds, not minutes (promtool's tests check the real durations).
fn rule_file() -> String {
    let path = repo_path("deploy/mixin/prometheusrule.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let spec = text
        .split_once("\nspec:\n")
        .unwrap_or_else(|| panic!("{}: no top-level spec:", path.display()))
        .1;
    spec.lines()
        .map(|line| {
            let line = line.strip_prefix("  ").unwrap_or(line);
            match line.find("for: ") {
                Some(at) if line[..at].trim().is_empty() => format!("{}for: 5s", &line[..at]),
                _ => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The alerts named `name` in `alerts`, by state.
fn alerts_named<'a>(alerts: &'a [Value], name: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| a["labels"]["alertname"] == name)
        .collect()
}

/// Prometheus (rules evaluated every second) loads every alert of the mixin and
/// scrapes the guard's own /metrics; while the `--config-file` is good,
/// ScrapeGuardReloadFailing is silent; once the file is broken on disk it fires, with
/// the flag, the file and the runbook; once the file is fixed it resolves.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn mixin_alert_fires_on_a_broken_config_file() {
    let cluster = Cluster::shared().await;
    let dir = cluster.dir().join("mixin");
    std::fs::create_dir_all(&dir).expect("creating the mixin test's dir");
    let config = dir.join("config.yaml");
    write_file(&config, CONFIG);
    let upstream = RecordingUpstream::start().await;
    let guard = ScrapeGuard::launch(&cluster, "mixin", &upstream.url())
        .with_endpoints_port()
        .arg(format!("--config-file={}", config.display()))
        .start()
        .await;
    let own_metrics = guard.endpoints_addr();

    let rules = dir.join("rules.yaml");
    write_file(&rules, &rule_file());
    let token = dir.join("token");
    write_file(&token, &cluster.mint_token(PROMETHEUS_SA).await);
    let prometheus = Prometheus::launch(
        &dir,
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files: ['{rules}']\n\
             scrape_configs:\n  - job_name: scrape-guard\n    scheme: https\n    \
             tls_config: {{insecure_skip_verify: true}}\n    \
             authorization: {{credentials_file: {token}}}\n    \
             static_configs: [{{targets: ['{own_metrics}']}}]\n",
            rules = rules.display(),
            token = token.display(),
        ),
    )
    .await;

    // Every alert of the PrometheusRule is loaded and healthy.
    let groups = prometheus.rule_groups().await.expect("/api/v1/rules");
    let loaded: Vec<&str> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter(|r| r["type"] == "alerting")
        .filter_map(|r| r["name"].as_str())
        .collect();
    let source = rule_file();
    let declared = source.matches("- alert: ").count();
    assert_eq!(
        loaded.len(),
        declared,
        "Prometheus loaded {loaded:?}; the PrometheusRule declares {declared} alerts"
    );

    // The file is good and Prometheus sees it so, through the guarded /metrics.
    let reload_ok = "scrape_guard_config_last_reload_successful{flag=\"--config-file\"}";
    eventually(
        Duration::from_secs(30),
        "the --config-file gauge at 1",
        || async {
            match prometheus.query(reload_ok).await?.as_slice() {
                [sample] if sample["value"][1] == "1" => Ok(()),
                other => Err(format!(
                    "{reload_ok}: {other:?}; target: {}",
                    prometheus.last_error("scrape-guard").await
                )),
            }
        },
    )
    .await;
    let alerts = prometheus.alerts().await.expect("/api/v1/alerts");
    assert!(
        alerts_named(&alerts, "ScrapeGuardReloadFailing").is_empty(),
        "ScrapeGuardReloadFailing with a good file: {alerts:#?}"
    );

    write_file(&config, "authorization: [\n");
    let file = config.display().to_string();
    let firing = eventually(
        Duration::from_secs(60),
        "ScrapeGuardReloadFailing firing",
        || async {
            let alerts = prometheus.alerts().await?;
            alerts_named(&alerts, "ScrapeGuardReloadFailing")
                .into_iter()
                .find(|a| a["state"] == "firing")
                .cloned()
                .ok_or_else(|| format!("not firing: {alerts:?}"))
        },
    )
    .await;
    println!("firing: {firing}");
    let labels = &firing["labels"];
    assert_eq!(labels["flag"], "--config-file", "{firing}");
    assert_eq!(labels["file"], file.as_str(), "{firing}");
    assert_eq!(labels["severity"], "warning", "{firing}");
    let runbook = firing["annotations"]["runbook_url"].as_str().unwrap_or("");
    assert!(
        runbook.ends_with("docs/runbooks.md#scrapeguardreloadfailing"),
        "runbook_url: {runbook}"
    );
    // The guard still answers with the last good policy meanwhile.
    let reply = guard.get("/metrics", None).await;
    assert_eq!(reply.status, 401, "{}", reply.describe());

    write_file(&config, CONFIG);
    eventually(
        Duration::from_secs(60),
        "ScrapeGuardReloadFailing resolved",
        || async {
            let alerts = prometheus.alerts().await?;
            match alerts_named(&alerts, "ScrapeGuardReloadFailing").as_slice() {
                [] => Ok(()),
                some => Err(format!("still there: {some:?}")),
            }
        },
    )
    .await;
}
