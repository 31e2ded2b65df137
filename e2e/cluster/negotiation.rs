//! The scrape Prometheus really makes, and what was negotiated in it: Debian's
//! Prometheus 2.42 with `--enable-feature=native-histograms` (it then asks for protobuf
//! first) scrapes node-exporter through scrape-guard over HTTPS with HTTP/2
//! (`enable_http2`, true by default in 2.42) and gzip. A recording tap between
//! scrape-guard and node-exporter shows what crossed the proxy: Prometheus' `Accept`
//! unchanged, node-exporter's protobuf `Content-Type` and gzip `Content-Encoding`; a
//! GET of our own through the guard gets the tap's bytes exactly. And our own
//! `/metrics` passes `promtool check metrics` and is scraped by the same Prometheus.

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::Path,
    process::Command,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinHandle};

use super::support::{
    eventually, https_get_with_headers, tls_config, write_file, Cluster, NodeExporter, Prometheus,
    ScrapeGuard, Trust, PROMETHEUS_SA,
};

/// Prometheus 2.42's `Accept` with native histograms on
/// (`scrapeAcceptHeaderWithProtobuf` in scrape/scrape.go at v2.42.0).
const ACCEPT_WITH_PROTOBUF: &str = "application/vnd.google.protobuf;\
    proto=io.prometheus.client.MetricFamily;encoding=delimited,\
    application/openmetrics-text;version=1.0.0;q=0.8,\
    application/openmetrics-text;version=0.0.1;q=0.75,\
    text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Prometheus with native histograms on, scraping node-exporter through scrape-guard
/// (job `node`, HTTP/2 + gzip) and scrape-guard's own `/metrics` (job `self`).
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn prometheus_native_histograms_h2_gzip_through_the_guard() {
    let cluster = Cluster::shared().await;
    let exporter = NodeExporter::start(cluster.dir()).await;
    let tap = Tap::start(&exporter.url()).await;
    let (cert, key) = cluster
        .ca()
        .serving("scrape-guard")
        .write(cluster.dir(), "scrape-guard");
    let guard = ScrapeGuard::launch(&cluster, "negotiated", &tap.url())
        .arg(format!("--tls-cert-file={}", cert.display()))
        .arg(format!("--tls-private-key-file={}", key.display()))
        .arg("--auth-cache-ttl=10m")
        .arg("--authz-allow-ttl=10m")
        .with_endpoints_port()
        .start()
        .await;
    let token = cluster.mint_token(PROMETHEUS_SA).await;
    let token_file = cluster.dir().join("token-negotiated");
    write_file(&token_file, &token);
    let job = |name: &str, target: SocketAddr| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    enable_http2: true\n    \
             tls_config: {{ca_file: {ca}}}\n    \
             authorization: {{credentials_file: {token}}}\n    \
             static_configs: [{{targets: ['{target}']}}]\n",
            ca = cluster.ca_path().display(),
            token = token_file.display(),
        )
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}",
        job("node", guard.addr()),
        job("self", guard.endpoints_addr()),
    );
    let prometheus = Prometheus::launch_with(
        cluster.dir(),
        &config,
        &["--enable-feature=native-histograms"],
    )
    .await;

    // The series land, from both targets.
    for selector in [
        "node_cpu_seconds_total{job=\"node\"}",
        "process_resident_memory_bytes{job=\"self\"}",
        "scrape_guard_requests_total{job=\"self\"}",
    ] {
        let series = eventually(Duration::from_secs(30), selector, || async {
            match prometheus.series(selector).await? {
                0 => Err(format!(
                    "no series yet; targets: node {:?}, self {:?}",
                    prometheus.last_error("node").await,
                    prometheus.last_error("self").await
                )),
                n => Ok(n),
            }
        })
        .await;
        println!("{selector}: {series} series");
    }

    // What crossed the proxy: Prometheus' Accept unchanged (protobuf first), gzip
    // asked for; node-exporter's protobuf, gzipped, passed back.
    let seen = tap.seen();
    let scrapes: Vec<&Exchange> = seen
        .iter()
        .filter(|e| {
            e.request_header(header::USER_AGENT)
                .starts_with("Prometheus/")
        })
        .collect();
    assert!(
        !scrapes.is_empty(),
        "no scrape by Prometheus reached the tap: {seen:?}"
    );
    for scrape in &scrapes {
        assert_eq!(scrape.request_header(header::ACCEPT), ACCEPT_WITH_PROTOBUF);
        assert!(
            scrape
                .request_header(header::ACCEPT_ENCODING)
                .contains("gzip"),
            "{scrape:?}"
        );
        assert_eq!(scrape.response_header(header::CONTENT_TYPE), PROTOBUF);
        assert_eq!(scrape.response_header(header::CONTENT_ENCODING), "gzip");
    }
    println!(
        "{} scrapes by Prometheus: Accept {ACCEPT_WITH_PROTOBUF:?}, answered {PROTOBUF:?}, gzip",
        scrapes.len()
    );

    // Over HTTP/2: the guard's own count of TLS connections by ALPN, as Prometheus
    // (job `self`) read it. The suite's own clients offer no ALPN.
    let h2 = eventually(
        Duration::from_secs(10),
        "scrape_guard_tls_connections_total{alpn=\"h2\"} from Prometheus",
        || async {
            let result = prometheus
                .query("sum(scrape_guard_tls_connections_total{job=\"self\",alpn=\"h2\"})")
                .await?;
            match result.first().and_then(|s| s["value"][1].as_str()) {
                Some(n) if n != "0" => Ok(n.to_owned()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    println!("TLS connections agreeing on h2: {h2}");

    // The body, byte for byte: a GET through the guard with Prometheus' headers gets
    // exactly what the tap sent it.
    let before = tap.seen().len();
    let tls = tls_config(Trust::Anyone, None);
    let bearer = format!("Bearer {token}");
    let reply = https_get_with_headers(
        &tls,
        guard.addr(),
        "/metrics",
        &[
            ("authorization", bearer.as_str()),
            ("accept", ACCEPT_WITH_PROTOBUF),
            ("accept-encoding", "gzip"),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("GET through the guard: {e}"));
    assert_eq!(reply.status, 200, "{}", reply.describe());
    assert_eq!(reply.header("content-type"), Some(PROTOBUF));
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    let sent = tap
        .seen()
        .into_iter()
        .skip(before)
        .find(|e| {
            !e.request_header(header::USER_AGENT)
                .starts_with("Prometheus/")
        })
        .expect("our GET reached the tap");
    assert_eq!(
        sent.response_body, reply.body,
        "the body was changed on the way"
    );
    assert_eq!(&reply.body[..2], b"\x1f\x8b", "gzip's magic");
    println!(
        "{} gzipped protobuf bytes passed unchanged",
        reply.body.len()
    );
}

/// Our own `/metrics` on the probes port: the text format 0.0.4 by default, which
/// `promtool check metrics` (Debian's Prometheus 2.42) accepts; OpenMetrics, ending in
/// `# EOF`, when asked for; `process_*` in both.
#[tokio::test]
#[ignore = "needs the real cluster and promtool: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn own_metrics_pass_promtool() {
    let cluster = Cluster::shared().await;
    let exporter = NodeExporter::start(cluster.dir()).await;
    let guard = ScrapeGuard::launch(&cluster, "promtool", &exporter.url())
        .with_endpoints_port()
        .start()
        .await;
    let token = cluster.mint_token(PROMETHEUS_SA).await;
    let bearer = format!("Bearer {token}");
    let tls = tls_config(Trust::Anyone, None);
    let get = |accept: Option<&'static str>| {
        let (tls, bearer, addr) = (&tls, &bearer, guard.endpoints_addr());
        async move {
            let mut headers = vec![("authorization", bearer.as_str())];
            headers.extend(accept.map(|a| ("accept", a)));
            let reply = https_get_with_headers(tls, addr, "/metrics", &headers)
                .await
                .unwrap_or_else(|e| panic!("own /metrics: {e}"));
            assert_eq!(reply.status, 200, "{}", reply.describe());
            reply
        }
    };

    let text = get(None).await;
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let body = text.text();
    for needle in [
        "# TYPE process_cpu_seconds_total counter\n",
        "# TYPE scrape_guard_requests_total counter\n",
        "process_resident_memory_bytes ",
        "process_start_time_seconds ",
        "process_open_fds ",
        "process_max_fds ",
        "process_virtual_memory_max_bytes ",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in\n{body}");
    }
    assert!(!body.contains("# EOF"), "{body}");
    promtool_check_metrics(cluster.dir(), &body);

    let open_metrics = get(Some(
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    ))
    .await;
    assert_eq!(
        open_metrics.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let body = open_metrics.text();
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains("# TYPE process_cpu_seconds counter\n"),
        "{body}"
    );
}

/// `promtool check metrics` on `exposition`: exit 0 and no complaint. Its absence is a
/// failure, not a skip: the suite's provisioning installs it.
fn promtool_check_metrics(dir: &Path, exposition: &str) {
    let file = dir.join("own-metrics.txt");
    write_file(&file, exposition);
    let stdin = std::fs::File::open(&file).expect("the exposition just written");
    let output = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(stdin)
        .output()
        .unwrap_or_else(|e| panic!("running promtool (Debian's prometheus package): {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics: {} {said}\n(exposition in {})",
        output.status,
        file.display()
    );
}

// === Tap ===

/// One request as it reached the tap and node-exporter's answer to it.
#[derive(Clone, Debug)]
struct Exchange {
    request_headers: HeaderMap,
    response_headers: HeaderMap,
    response_body: Bytes,
}

impl Exchange {
    fn request_header(&self, name: header::HeaderName) -> &str {
        header_text(&self.request_headers, name)
    }

    fn response_header(&self, name: header::HeaderName) -> &str {
        header_text(&self.response_headers, name)
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// An HTTP/1.1 pass-through in this process between scrape-guard and node-exporter:
/// each request is sent on as it came (headers and all), the answer returned as it
/// came, and both recorded.
struct Tap {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Exchange>>>,
    task: JoinHandle<()>,
}

impl Tap {
    async fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("node-exporter's address");
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("binding the tap");
        let addr = listener.local_addr().expect("its address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let seen = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let seen = Arc::clone(&seen);
                        async move { Ok::<_, Infallible>(pass(upstream, &seen, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn seen(&self) -> Vec<Exchange> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `request` on to `upstream` and returns its answer (a 502 when it has none).
async fn pass(
    upstream: SocketAddr,
    seen: &Mutex<Vec<Exchange>>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let exchange = async {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        let tcp = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(upstream),
        )
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        let connection = tokio::spawn(connection);
        let request_headers = parts.headers.clone();
        let forwarded = Request::from_parts(parts, Full::new(body));
        let response = tokio::time::timeout(Duration::from_secs(10), async {
            let response = sender
                .send_request(forwarded)
                .await
                .map_err(|e| e.to_string())?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok::<_, String>((parts, body))
        })
        .await
        .map_err(|_| "node-exporter timed out".to_owned())?;
        connection.abort();
        let (parts, body) = response?;
        seen.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Exchange {
                request_headers,
                response_headers: parts.headers.clone(),
                response_body: body.clone(),
            });
        Ok::<_, String>(Response::from_parts(parts, Full::new(body)))
    };
    exchange.await.unwrap_or_else(|error| {
        let mut response = Response::new(Full::new(Bytes::from(error)));
        *response.status_mut() = http::StatusCode::BAD_GATEWAY;
        response
    })
}
