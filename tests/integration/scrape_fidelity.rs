//! The scrape Prometheus actually makes, over HTTP/1.1 and HTTP/2 from the client: its
//! `Accept` (q-values, Prometheus 3's `escaping=`), `Accept-Encoding` and scrape timeout
//! reach the exporter byte for byte; `Content-Type`, `Content-Encoding` and the body
//! (gzip, protobuf) come back unchanged, and a missing `Content-Type` is not invented;
//! `HEAD` and query strings (`?format=`, a probe's `module=`/`target=`) pass, and the
//! path authorized is the path forwarded; a page is streamed, never buffered — proven by
//! ordering: the exporter sends the rest only once the client holds the first part.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use scrape_guard_testkit::{
    client, get, install_crypto, send, Answer, FakeApiserver, Pki, Proxy, RawUpstream, SCRAPER,
};

const TOKEN: &str = "fidelity-token";

/// What Prometheus 3 sends with native histograms on (protobuf first).
const ACCEPT: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
encoding=delimited;q=0.7,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,*/*;q=0.1";

struct Scrape {
    pki: Pki,
    api: Arc<FakeApiserver>,
    exporter: RawUpstream,
    proxy: Proxy,
}

async fn scrape_world(answer: Answer) -> Scrape {
    install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token(TOKEN, SCRAPER);
    api.allow(SCRAPER, "get", "/metrics");
    api.allow(SCRAPER, "get", "/probe");
    api.allow(SCRAPER, "head", "/metrics");
    let exporter = RawUpstream::start(answer).await;
    let proxy = Proxy::start(&pki, &api, &exporter.url(), &[]).await;
    Scrape {
        pki,
        api,
        exporter,
        proxy,
    }
}

fn plain(content_type: Option<&str>, body: &[u8]) -> Answer {
    let mut head = "HTTP/1.1 200 OK\r\n".to_owned();
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    Answer {
        head,
        body: body.to_vec(),
        ..Answer::default()
    }
}

/// Bytes that are neither text nor valid UTF-8 (a gzip header, zeros, every byte).
fn binary_page() -> Vec<u8> {
    let mut page = vec![0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff];
    page.extend((0..=255u8).cycle().take(70_000));
    page
}

#[tokio::test]
async fn prometheus_request_headers_reach_the_exporter_byte_for_byte() {
    let w = scrape_world(plain(Some("text/plain; version=0.0.4"), b"up 1\n")).await;
    for h2 in [false, true] {
        let reply = get(
            &client(&w.pki, h2),
            &w.proxy.url("/metrics"),
            Some(TOKEN),
            &[
                ("accept", ACCEPT),
                ("accept-encoding", "gzip"),
                ("x-prometheus-scrape-timeout-seconds", "9.5"),
                ("user-agent", "Prometheus/3.5.0"),
            ],
        )
        .await;
        assert_eq!(reply.status, 200, "h2={h2}: {}", reply.describe());
        let e = &w.exporter;
        assert_eq!(e.last_header("accept"), [ACCEPT], "h2={h2}");
        assert_eq!(e.last_header("accept-encoding"), ["gzip"], "h2={h2}");
        assert_eq!(
            e.last_header("x-prometheus-scrape-timeout-seconds"),
            ["9.5"],
            "h2={h2}"
        );
        assert_eq!(e.last_header("user-agent"), ["Prometheus/3.5.0"], "h2={h2}");
        assert!(e.last_header("authorization").is_empty(), "never the token");
        assert_eq!(
            e.last_request_line().as_deref(),
            Some("GET /metrics HTTP/1.1")
        );
    }
}

#[tokio::test]
async fn content_type_encoding_and_bytes_come_back_unchanged() {
    let page = binary_page();
    for (content_type, encoding) in [
        (
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
            None,
        ),
        ("text/plain; version=0.0.4; charset=utf-8; escaping=underscores", Some("gzip")),
    ] {
        let mut answer = plain(Some(content_type), &page);
        if let Some(encoding) = encoding {
            answer.head.push_str(&format!("Content-Encoding: {encoding}\r\nVary: Accept-Encoding\r\n"));
        }
        let w = scrape_world(answer).await;
        for h2 in [false, true] {
            let reply = get(
                &client(&w.pki, h2),
                &w.proxy.url("/metrics"),
                Some(TOKEN),
                &[("accept-encoding", "gzip")],
            )
            .await;
            assert_eq!(reply.status, 200, "{}", reply.describe());
            assert_eq!(reply.header("content-type"), Some(content_type), "h2={h2}");
            assert_eq!(reply.header("content-encoding"), encoding, "h2={h2}");
            assert_eq!(reply.body.len(), page.len(), "h2={h2}");
            assert!(reply.body == page.as_slice(), "the bytes differ (h2={h2})");
        }
    }
}

#[tokio::test]
async fn a_missing_content_type_is_not_invented() {
    let w = scrape_world(plain(None, b"up 1\n")).await;
    for h2 in [false, true] {
        let reply = get(
            &client(&w.pki, h2),
            &w.proxy.url("/metrics"),
            Some(TOKEN),
            &[],
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.describe());
        assert_eq!(reply.header("content-type"), None, "h2={h2}");
        assert_eq!(reply.text(), "up 1\n");
    }
}

#[tokio::test]
async fn head_is_forwarded_as_head() {
    let w = scrape_world(plain(Some("text/plain; version=0.0.4"), &[b'x'; 1234])).await;
    for h2 in [false, true] {
        let reply = send(
            &client(&w.pki, h2),
            "HEAD",
            &w.proxy.url("/metrics"),
            Some(TOKEN),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(reply.status, 200, "h2={h2}: {}", reply.describe());
        assert_eq!(reply.header("content-length"), Some("1234"), "h2={h2}");
        assert!(reply.body.is_empty());
        assert_eq!(
            w.exporter.last_request_line().as_deref(),
            Some("HEAD /metrics HTTP/1.1")
        );
    }
}

#[tokio::test]
async fn query_strings_pass_unchanged_and_the_path_is_what_is_authorized() {
    let w = scrape_world(plain(Some("text/plain"), b"probe_success 1\n")).await;
    for (h2, target) in [
        (false, "/metrics?format=prometheus"),
        (true, "/metrics?format=prometheus&name[]=up"),
        (
            false,
            "/probe?module=http_2xx&target=https%3A%2F%2Fexample.com%2Fa%3Fb%3Dc",
        ),
        (true, "/probe?target=10.0.0.1:9100&module=icmp&module=tcp"),
    ] {
        let reply = get(&client(&w.pki, h2), &w.proxy.url(target), Some(TOKEN), &[]).await;
        assert_eq!(reply.status, 200, "{target}: {}", reply.describe());
        assert_eq!(
            w.exporter.last_request_line(),
            Some(format!("GET {target} HTTP/1.1")),
            "h2={h2}"
        );
        let path = target.split('?').next().unwrap();
        assert_eq!(w.api.last_sar_spec()["nonResourceAttributes"]["path"], path);
    }
}

#[tokio::test]
async fn a_page_is_streamed_not_buffered() {
    // Chunked as a compressing Go exporter answers; the first chunk alone is sent,
    // and the rest waits until the client has it.
    let first = b"1000\r\n"
        .iter()
        .copied()
        .chain([b'a'; 4096])
        .chain(*b"\r\n");
    let mut body: Vec<u8> = first.collect();
    let held = body.len();
    body.extend(b"5\r\nlast\n\r\n0\r\n\r\n");
    let answer = Answer {
        head: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
            .into(),
        body,
        hold_after: Some(held),
        ..Answer::default()
    };
    let w = scrape_world(answer).await;
    for h2 in [false, true] {
        let request = Request::get(w.proxy.url("/metrics"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let bounded = Duration::from_secs(20);
        let client = client(&w.pki, h2);
        let response = tokio::time::timeout(bounded, client.request(request))
            .await
            .expect("headers before the exporter finished")
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut got = Vec::new();
        while got.len() < 4096 {
            let frame = tokio::time::timeout(bounded, body.frame())
                .await
                .expect("the first part arrives while the exporter still holds the rest")
                .unwrap()
                .unwrap();
            if let Ok(data) = frame.into_data() {
                got.extend_from_slice(&data);
            }
        }
        assert_eq!(got, [b'a'; 4096], "h2={h2}");
        w.exporter.release();
        let rest = tokio::time::timeout(bounded, body.collect())
            .await
            .unwrap()
            .unwrap()
            .to_bytes();
        assert_eq!(&rest[..], b"last\n", "h2={h2}");
    }
}
