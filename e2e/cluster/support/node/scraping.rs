//! Scraping the node cluster as Prometheus Operator would, and directly.
//!
//! Debian's Prometheus 2.42 is built without `kubernetes_sd_configs`, so this module
//! does the operator's part by hand: it reads deploy/'s ServiceMonitors from the API
//! and writes one scrape job per endpoint (the `authorization` credentials and the
//! `tlsConfig` CA from their Secrets, `serverName`, `scheme`), with file-based service
//! discovery whose files a thread rewrites every second from the Services' Endpoints
//! (ready and not-ready addresses, as `role: endpoints` discovers them). Job names are
//! the ServiceMonitor's name, plus the port name's last part when it has several
//! endpoints (`scrape-guard-kube-state-metrics-main`). One more job, `no-rbac`, scrapes
//! node-exporter's targets with the token of an account that has no RBAC.
//!
//! [`ScrapeLoop`] scrapes one proxy directly, every 100 ms, on a new connection each
//! time, and counts what failed: the measure for rotations and rollouts.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use kube::{
    api::{Api, ApiResource, DynamicObject, ListParams},
    core::GroupVersionKind,
};
use rustls::{pki_types::ServerName, ClientConfig};
use serde_json::Value;

use super::{
    super::{control_plane::api, http, pki, prometheus::Prometheus},
    NAMESPACE, NODE_IP, NO_RBAC_SA,
};

/// One scrape job made from one ServiceMonitor endpoint.
struct Job {
    name: String,
    service_selector: BTreeMap<String, String>,
    port: String,
    token_file: PathBuf,
    ca_file: PathBuf,
    server_name: String,
}

/// Prometheus and the thread that keeps its target files current.
pub(super) struct Scraping {
    prometheus: Prometheus,
    stop: Arc<AtomicBool>,
    refresher: Option<thread::JoinHandle<()>>,
}

impl Scraping {
    pub(super) async fn start(client: &kube::Client, dir: &Path, kubeconfig: &Path) -> Self {
        let dir = dir.join("prometheus");
        std::fs::create_dir_all(&dir).expect("creating Prometheus' dir");
        let mut jobs = jobs_from_service_monitors(client, &dir).await;
        // The scraper with no RBAC, against node-exporter.
        let no_rbac_token = api::mint_token(client, NO_RBAC_SA, None).await;
        let template = jobs
            .iter()
            .find(|j| j.name == "scrape-guard-node-exporter")
            .expect("a node-exporter job from deploy/servicemonitor.yaml");
        let token_file = dir.join("token-no-rbac");
        pki::write(&token_file, &no_rbac_token);
        let no_rbac = Job {
            name: "no-rbac".into(),
            service_selector: template.service_selector.clone(),
            port: template.port.clone(),
            token_file,
            ca_file: template.ca_file.clone(),
            server_name: template.server_name.clone(),
        };
        jobs.push(no_rbac);

        let mut config =
            String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
        for job in &jobs {
            let targets = dir.join(format!("targets-{}.json", job.name));
            refresh_targets(client, job, &targets).await;
            config.push_str(&format!(
                "  - job_name: {name}\n    scheme: https\n    \
                 tls_config: {{ca_file: {ca}, server_name: {server}}}\n    \
                 authorization: {{credentials_file: {token}}}\n    \
                 file_sd_configs: [{{files: ['{targets}'], refresh_interval: 1s}}]\n",
                name = job.name,
                ca = job.ca_file.display(),
                server = job.server_name,
                token = job.token_file.display(),
                targets = targets.display(),
            ));
        }
        let prometheus = Prometheus::launch(&dir, &config).await;

        let stop = Arc::new(AtomicBool::new(false));
        let refresher = {
            let stop = Arc::clone(&stop);
            let kubeconfig = kubeconfig.to_owned();
            thread::Builder::new()
                .name("file-sd".into())
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for the file-sd thread");
                    runtime.block_on(async move {
                        let client = api::client(&kubeconfig).await;
                        while !stop.load(Ordering::SeqCst) {
                            for job in &jobs {
                                let targets = dir.join(format!("targets-{}.json", job.name));
                                refresh_targets(&client, job, &targets).await;
                            }
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    });
                })
                .expect("starting the file-sd thread")
        };
        Self {
            prometheus,
            stop,
            refresher: Some(refresher),
        }
    }

    pub(super) fn prometheus_addr(&self) -> SocketAddr {
        self.prometheus.addr()
    }
}

impl Drop for Scraping {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(refresher) = self.refresher.take() {
            let _ = refresher.join();
        }
    }
}

async fn jobs_from_service_monitors(client: &kube::Client, dir: &Path) -> Vec<Job> {
    let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor");
    let resource = ApiResource::from_gvk(&gvk);
    let monitors: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &resource);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let secret_file = |name: &str, key: &str| {
        let secrets = secrets.clone();
        let path = dir.join(format!("{name}-{key}"));
        let (name, key) = (name.to_owned(), key.to_owned());
        async move {
            let secret = secrets.get(&name).await.unwrap_or_else(|e| {
                panic!("Secret {NAMESPACE}/{name} (a ServiceMonitor names it): {e}")
            });
            let value = secret
                .data
                .and_then(|d| d.get(&key).cloned())
                .unwrap_or_else(|| panic!("Secret {NAMESPACE}/{name} has no {key} yet"));
            std::fs::write(&path, value.0).expect("writing a Secret's value");
            path
        }
    };
    let mut jobs = Vec::new();
    let list = monitors
        .list(&ListParams::default())
        .await
        .expect("listing ServiceMonitors");
    for monitor in list.items {
        let name = monitor.metadata.name.clone().unwrap_or_default();
        let spec = &monitor.data["spec"];
        let selector: BTreeMap<String, String> =
            serde_json::from_value(spec["selector"]["matchLabels"].clone()).unwrap_or_default();
        let endpoints = spec["endpoints"].as_array().cloned().unwrap_or_default();
        for endpoint in &endpoints {
            let port = endpoint["port"].as_str().unwrap_or_default().to_owned();
            assert_eq!(endpoint["scheme"], "https", "{name}: scheme");
            let credentials = &endpoint["authorization"]["credentials"];
            let ca = &endpoint["tlsConfig"]["ca"]["secret"];
            let job_name = if endpoints.len() == 1 {
                name.clone()
            } else {
                format!("{name}-{}", port.rsplit('-').next().unwrap_or(&port))
            };
            jobs.push(Job {
                token_file: secret_file(str_of(credentials, "name"), str_of(credentials, "key"))
                    .await,
                ca_file: secret_file(str_of(ca, "name"), str_of(ca, "key")).await,
                server_name: str_of(&endpoint["tlsConfig"], "serverName").to_owned(),
                name: job_name,
                service_selector: selector.clone(),
                port,
            });
        }
    }
    jobs
}

fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("ServiceMonitor field {field} missing in {value}"))
}

/// Writes the job's targets (ip:port of every endpoint address, ready or not) as a
/// file_sd JSON file, atomically, if they changed.
async fn refresh_targets(client: &kube::Client, job: &Job, file: &Path) {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
    let selector = job
        .service_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let Ok(list) = services
        .list(&ListParams::default().labels(&selector))
        .await
    else {
        return; // (the apiserver may be down: keep the last targets, as Prometheus would)
    };
    let mut targets = Vec::new();
    for service in list.items {
        let Some(name) = service.metadata.name else {
            continue;
        };
        let Ok(Some(object)) = endpoints.get_opt(&name).await else {
            continue;
        };
        for subset in object.subsets.unwrap_or_default() {
            let Some(port) = subset
                .ports
                .unwrap_or_default()
                .into_iter()
                .find(|p| p.name.as_deref() == Some(job.port.as_str()))
            else {
                continue;
            };
            for (address, ready) in subset
                .addresses
                .unwrap_or_default()
                .into_iter()
                .map(|a| (a, true))
                .chain(
                    subset
                        .not_ready_addresses
                        .unwrap_or_default()
                        .into_iter()
                        .map(|a| (a, false)),
                )
            {
                targets.push(serde_json::json!({
                    "targets": [format!("{}:{}", address.ip, port.port)],
                    "labels": {
                        "namespace": NAMESPACE,
                        "service": name,
                        "endpoint_ready": ready.to_string(),
                        "pod": address.target_ref.and_then(|t| t.name).unwrap_or_default(),
                    },
                }));
            }
        }
    }
    let text = serde_json::to_string_pretty(&targets).expect("targets JSON");
    if std::fs::read_to_string(file).ok().as_deref() != Some(text.as_str()) {
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, &text).expect("writing a targets file");
        std::fs::rename(&tmp, file).expect("replacing a targets file");
    }
}

// === direct scraping ===

/// What a [`ScrapeLoop`] saw.
#[derive(Debug)]
pub(crate) struct Scrapes {
    pub(crate) ok: usize,
    pub(crate) failed: usize,
    /// The first few failures: (time since the loop started, what happened).
    pub(crate) failures: Vec<(Duration, String)>,
    /// From the first failure to the first success after the last failure.
    pub(crate) outage: Duration,
    /// When the last failure happened (since the loop started).
    pub(crate) last_failure: Option<Duration>,
    /// The outage in wall-clock time (to compare with Prometheus' timestamps): from
    /// the first failure to the first success after the last failure.
    pub(crate) outage_span: Option<(SystemTime, SystemTime)>,
}

/// Scrapes `https://NODE_IP:port/metrics` every 100 ms (a new TLS connection each
/// time, checking the certificate for `server_name`) until stopped.
pub(crate) struct ScrapeLoop {
    started: Instant,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Scrapes>,
}

impl ScrapeLoop {
    pub(crate) fn start(
        tls: Arc<ClientConfig>,
        port: u16,
        server_name: &str,
        token: String,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let addr: SocketAddr = format!("{NODE_IP}:{port}").parse().expect("an address");
        let name = ServerName::try_from(server_name.to_owned()).expect("a server name");
        let loop_started = Instant::now();
        let wall_started = SystemTime::now();
        let task = {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let started = loop_started;
                let mut failures = Vec::new();
                let (mut ok, mut failed) = (0, 0);
                let (mut first_failure, mut recovered) = (None::<Duration>, None::<Duration>);
                let mut last_failure = None;
                while !stop.load(Ordering::SeqCst) {
                    let at = started.elapsed();
                    let result =
                        http::https_get_named(&tls, addr, name.clone(), "/metrics", Some(&token))
                            .await
                            .and_then(|r| r.status_is(200).map(|()| r));
                    match result {
                        Ok(_) => {
                            ok += 1;
                            if first_failure.is_some() && recovered.is_none() {
                                recovered = Some(at);
                            }
                        }
                        Err(e) => {
                            failed += 1;
                            first_failure.get_or_insert(at);
                            last_failure = Some(at);
                            recovered = None;
                            if failures.len() < 10 {
                                failures.push((at, e));
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let end = started.elapsed();
                Scrapes {
                    ok,
                    failed,
                    failures,
                    last_failure,
                    outage_span: first_failure.map(|first| {
                        (
                            wall_started + first,
                            wall_started + recovered.unwrap_or(end),
                        )
                    }),
                    outage: first_failure.map_or(Duration::ZERO, |first| {
                        recovered.unwrap_or(end).saturating_sub(first)
                    }),
                }
            })
        };
        Self {
            started: loop_started,
            stop,
            task,
        }
    }

    /// How long the loop has been running.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub(crate) async fn stop(self) -> Scrapes {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the scrape loop")
    }
}
