//! A real Prometheus 2.42 scraping scrape-guard every second. Debian's build has no
//! kubernetes_sd, so targets are static_configs in a generated prometheus.yml; the
//! bearer token comes from a credentials_file, as a pod's service-account token would.

use std::{net::SocketAddr, path::PathBuf, process::Command, time::Duration};

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
        let config_file = dir.join("prometheus.yml");
        pki::write(&config_file, &config);
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut command = Command::new(Tool::Prometheus.path());
        command
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ));
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
            addr,
        }
    }

    /// The result vector of an instant query.
    pub(crate) async fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let reply = http::http_get(self.addr, &path).await?;
        let json = reply.json().ok_or_else(|| reply.describe())?;
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

    /// The job's active target as the targets API shows it (health, lastError, …).
    pub(crate) async fn target(&self, job: &str) -> Result<Value, String> {
        let reply = http::http_get(self.addr, "/api/v1/targets?state=active").await?;
        let json = reply.json().ok_or_else(|| reply.describe())?;
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
