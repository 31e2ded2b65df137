//! HTTP/1.1 written and read by hand over a TLS socket, so that a request reaches the
//! proxy byte for byte as a test wrote it (no client library fixes up a path, a header
//! or the framing first), and a response is seen as the proxy sent it (statuses of
//! pipelined responses, whether the connection was closed). The reader knows just
//! enough HTTP/1.1 for that: interim 1xx skipped, Content-Length, chunked, and
//! read-to-close bodies.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{https::tls, World};

/// One response, as parsed.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code (0 if the status line did not parse).
    pub status: u16,
    /// Header names lower-cased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What came back on one connection.
#[derive(Debug)]
pub struct Exchange {
    /// The complete responses, in order.
    pub responses: Vec<RawResponse>,
    /// The server closed (or reset) the connection.
    pub closed: bool,
    /// Every byte received.
    pub raw: Vec<u8>,
}

impl Exchange {
    /// The status of each response, in order.
    pub fn statuses(&self) -> Vec<u16> {
        self.responses.iter().map(|r| r.status).collect()
    }

    /// Every byte received, as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Complete HTTP/1.1 responses at the start of `buf` (interim 1xx responses skipped).
fn parse_responses(buf: &[u8], at_eof: bool) -> Vec<RawResponse> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(end) = find(&buf[pos..], b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&buf[pos..pos + end]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut body_at = pos + end + 4;
        let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let body = if (100..200).contains(&status) {
            pos = body_at;
            continue;
        } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let Some(line_end) = find(&buf[body_at..], b"\r\n") else {
                    return out;
                };
                let size_text = String::from_utf8_lossy(&buf[body_at..body_at + line_end]);
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .unwrap_or(0);
                let data = body_at + line_end + 2;
                if buf.len() < data + size + 2 {
                    return out;
                }
                body.extend_from_slice(&buf[data..data + size]);
                body_at = data + size + 2;
                if size == 0 {
                    break;
                }
            }
            body
        } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            if buf.len() < body_at + len {
                return out;
            }
            body_at += len;
            buf[body_at - len..body_at].to_vec()
        } else if status == 204 || status == 304 {
            Vec::new()
        } else if at_eof {
            let body = buf[body_at..].to_vec();
            body_at = buf.len();
            body
        } else {
            return out;
        };
        out.push(RawResponse {
            status,
            headers,
            body,
        });
        pos = body_at;
    }
    out
}

/// Reads responses until the server closes, `want` responses arrived, or nothing
/// arrives for `idle` (everything bounded by 15 s). Not `eventually`: running out of
/// time is an outcome here (what arrived by then), not a failure.
pub async fn read_exchange<S>(io: &mut S, want: usize, idle: Duration) -> Exchange
where
    S: tokio::io::AsyncRead + Unpin,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut raw = Vec::new();
    let mut closed = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if parse_responses(&raw, false).len() >= want {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(idle.min(left), io.read(&mut chunk)).await {
            Err(_) => break,
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => raw.extend_from_slice(&chunk[..n]),
        }
    }
    Exchange {
        responses: parse_responses(&raw, closed),
        closed,
        raw,
    }
}

/// Writes `request` on a fresh TLS connection (HTTP/1.1 by ALPN) and reads what comes
/// back. A write error (the server closed early) is not a failure: we read what it said.
pub async fn h1(w: &World, request: &[u8], want: usize) -> Exchange {
    let mut io = tls(&w.pki, w.proxy.addr, &[b"http/1.1"]).await;
    let _ = io.write_all(request).await;
    let _ = io.flush().await;
    read_exchange(&mut io, want, Duration::from_millis(1500)).await
}

/// `<method> <target>` with bearer `token`, `extra_headers` (each ending in CRLF) and
/// `Connection: close`, as raw bytes.
pub fn get_request(method: &str, target: &[u8], token: &str, extra_headers: &str) -> Vec<u8> {
    let mut req = format!("{method} ").into_bytes();
    req.extend_from_slice(target);
    req.extend_from_slice(
        format!(
            " HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n{extra_headers}\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    req
}
