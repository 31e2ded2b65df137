//! A real Prometheus 2.42 scraping scrape-guard every second. Debian's build has no
//! kubernetes_sd, so targets are static_configs in a generated prometheus.yml; the
//! bearer token comes from a credentials_file, as a pod's service-account token would.

use std::{
    net::SocketAddr,
    ops::Deref,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use super::{
    free_port,
    http::{self},
    pki,
    process::{Process, Tail},
    Cluster, Tool,
};

/// How a job checks scrape-guard's certificate.
pub(crate) enum ScrapeTls {
    /// Verified against the suite's CA.
    VerifyWithCa(PathBuf),
    /// Not verified (kube-prometheus' ServiceMonitor: insecureSkipVerify).
    InsecureSkipVerify,
}

/// One scrape job: a target behind scrape-guard and the token to present.
pub(crate) struct Job<'a> {
    pub(crate) name: &'a str,
    pub(crate) target: SocketAddr,
    pub(crate) tls: ScrapeTls,
    pub(crate) token: &'a str,
}

pub(crate) struct Prometheus {
    // (read by its Drop: stopped by PID)
    _process: Process,
    api: PrometheusApi,
}

/// Prometheus' HTTP API (queries, targets), apart from the process.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PrometheusApi {
    addr: SocketAddr,
}

impl Prometheus {
    pub(crate) async fn start(cluster: &Cluster, jobs: &[Job<'_>]) -> Self {
        let dir = cluster.dir();
        let mut config =
            String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
        for job in jobs {
            let token_file = dir.join(format!("token-{}", job.name));
            pki::write(&token_file, job.token);
            let tls = match &job.tls {
                ScrapeTls::VerifyWithCa(ca) => format!("{{ca_file: {}}}", ca.display()),
                ScrapeTls::InsecureSkipVerify => "{insecure_skip_verify: true}".into(),
            };
            config.push_str(&format!(
                "  - job_name: {name}\n    scheme: https\n    tls_config: {tls}\n    \
                 authorization: {{credentials_file: {token}}}\n    \
                 static_configs: [{{targets: ['{target}']}}]\n",
                name = job.name,
                token = token_file.display(),
                target = job.target,
            ));
        }
        Self::launch(dir, &config).await
    }

    /// Starts Prometheus with `config` (written to `dir`/prometheus.yml) on a free
    /// 127.0.0.1 port and waits until it is ready.
    pub(crate) async fn launch(dir: &Path, config: &str) -> Self {
        Self::launch_with(dir, config, &[]).await
    }

    /// [`Prometheus::launch`] with more flags (`--enable-feature=…`).
    pub(crate) async fn launch_with(dir: &Path, config: &str, flags: &[&str]) -> Self {
        let config_file = dir.join("prometheus.yml");
        pki::write(&config_file, config);
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut command = Command::new(Tool::Prometheus.path());
        command
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .args(flags);
        let log = dir.join("prometheus.log");
        let mut process = Process::spawn("prometheus", command, &log, Tail::Lines(20));
        process
            .await_ready(
                Duration::from_secs(30),
                "Prometheus /-/ready",
                || async move { http::http_get(addr, "/-/ready").await?.status_is(200) },
            )
            .await;
        Self {
            _process: process,
            api: PrometheusApi { addr },
        }
    }
}

impl Deref for Prometheus {
    type Target = PrometheusApi;

    fn deref(&self) -> &PrometheusApi {
        &self.api
    }
}

impl PrometheusApi {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self { addr }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `lastError` of the job's active target ("" when the last scrape worked).
    pub(crate) async fn last_error(&self, job: &str) -> String {
        match self.target(job).await {
            Ok(target) => target["lastError"].as_str().unwrap_or_default().to_owned(),
            Err(e) => e,
        }
    }

    /// Scrapes of the job that failed (`up == 0` samples) in the last `window`, and
    /// all scrapes in it.
    pub(crate) async fn failed_scrapes(
        &self,
        job: &str,
        window: Duration,
    ) -> Result<(u64, u64), String> {
        let secs = window.as_secs().max(1);
        let value = |promql: String| async move {
            let result = self.query(&promql).await?;
            Ok::<u64, String>(
                result
                    .first()
                    .and_then(|s| s["value"][1].as_str())
                    .and_then(|v| v.parse::<f64>().ok())
                    .map_or(0, |v| v as u64),
            )
        };
        let all = value(format!(
            "sum(count_over_time(up{{job=\"{job}\"}}[{secs}s]))"
        ))
        .await?;
        let ok = value(format!("sum(sum_over_time(up{{job=\"{job}\"}}[{secs}s]))")).await?;
        Ok((all - ok.min(all), all))
    }

    /// When each failed scrape (`up == 0`) of `job` in the last `window` started, by
    /// Prometheus' own sample timestamps.
    pub(crate) async fn failed_scrape_times(
        &self,
        job: &str,
        window: Duration,
    ) -> Result<Vec<SystemTime>, String> {
        let secs = window.as_secs().max(1);
        let series = self.query(&format!("up{{job=\"{job}\"}}[{secs}s]")).await?;
        let mut times = Vec::new();
        for sample in series
            .iter()
            .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        {
            if sample[1].as_str() == Some("0") {
                let at = sample[0]
                    .as_f64()
                    .ok_or_else(|| format!("a sample without a timestamp: {sample}"))?;
                times.push(UNIX_EPOCH + Duration::from_secs_f64(at));
            }
        }
        times.sort();
        Ok(times)
    }

    /// The result vector of an instant query.
    pub(crate) async fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let reply = http::http_get(self.addr, &path).await?;
        let json = reply.try_json().ok_or_else(|| reply.describe())?;
        match json["data"]["result"].as_array() {
            Some(result) if reply.status == 200 => Ok(result.clone()),
            _ => Err(reply.describe()),
        }
    }

    /// The value of `up{job="…"}`, if Prometheus has one yet.
    pub(crate) async fn up(&self, job: &str) -> Result<String, String> {
        let result = self.query(&format!("up{{job=\"{job}\"}}")).await?;
        result
            .first()
            .and_then(|sample| sample["value"][1].as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("no up{{job=\"{job}\"}} sample yet"))
    }

    /// How many series a selector matches now.
    pub(crate) async fn series(&self, selector: &str) -> Result<usize, String> {
        Ok(self.query(selector).await?.len())
    }

    /// The alerts Prometheus' rules have pending or firing now (`/api/v1/alerts`).
    pub(crate) async fn alerts(&self) -> Result<Vec<Value>, String> {
        self.data_list("/api/v1/alerts", "alerts").await
    }

    /// The rule groups Prometheus loaded (`/api/v1/rules`).
    pub(crate) async fn rule_groups(&self) -> Result<Vec<Value>, String> {
        self.data_list("/api/v1/rules", "groups").await
    }

    /// `data.<field>` of a 200 answer, a list.
    async fn data_list(&self, path: &str, field: &str) -> Result<Vec<Value>, String> {
        let reply = http::http_get(self.addr, path).await?;
        let json = reply.try_json().ok_or_else(|| reply.describe())?;
        match json["data"][field].as_array() {
            Some(list) if reply.status == 200 => Ok(list.clone()),
            _ => Err(reply.describe()),
        }
    }

    /// The job's active target as the targets API shows it (health, lastError, …).
    pub(crate) async fn target(&self, job: &str) -> Result<Value, String> {
        let reply = http::http_get(self.addr, "/api/v1/targets?state=active").await?;
        let json = reply.try_json().ok_or_else(|| reply.describe())?;
        json["data"]["activeTargets"]
            .as_array()
            .and_then(|targets| targets.iter().find(|t| t["labels"]["job"] == job))
            .cloned()
            .ok_or_else(|| format!("no active target for job {job}: {}", reply.describe()))
    }
}

/// Query-string encoding (RFC 3986 unreserved characters kept).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
