//! An exporter written by hand: it records each request head exactly as it arrived
//! (bytes, header case and order), and answers with the bytes a test gives it — after a
//! delay, or in two parts with a wait between them for the test's signal. What the
//! proxy forwards and what it sends back can then be compared byte for byte, and
//! streaming proven by ordering: the rest of a page is only sent once the client has
//! the first part.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
    task::JoinHandle,
};

/// What the exporter answers every request with.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// Waited before anything is sent.
    pub delay: Duration,
    /// The status line and headers, each line ending in CRLF, without the empty line.
    pub head: String,
    /// The body bytes, sent as they are (chunked framing included, if the head says so).
    pub body: Vec<u8>,
    /// Send only this many bytes of `body`, then wait for `RawUpstream::release`.
    pub hold_after: Option<usize>,
}

/// A plain-HTTP/1.1 exporter on 127.0.0.1 that records request heads.
pub struct RawUpstream {
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    answer: Arc<Mutex<Answer>>,
    release: Arc<Notify>,
    task: JoinHandle<()>,
}

impl RawUpstream {
    /// Starts it answering with `answer`.
    pub async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(Mutex::new(answer));
        let release = Arc::new(Notify::new());
        let (h, a, r) = (heads.clone(), answer.clone(), release.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, h.clone(), a.clone(), r.clone()));
            }
        });
        Self {
            addr,
            heads,
            answer,
            release,
            task,
        }
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Every request head received, in order, as text (CRLFs kept, without the final
    /// empty line).
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// The values of header `name` (any case) in the last request head.
    pub fn last_header(&self, name: &str) -> Vec<String> {
        let heads = self.heads();
        let Some(head) = heads.last() else {
            return Vec::new();
        };
        head.split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    /// The request line of the last request ("GET /metrics HTTP/1.1").
    pub fn last_request_line(&self) -> Option<String> {
        let heads = self.heads();
        heads
            .last()
            .and_then(|h| h.split("\r\n").next().map(str::to_owned))
    }

    /// Answers from now on with `answer`.
    pub fn set_answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// Lets a held answer send the rest of its body.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Requests on one connection, one after another (no request bodies: scrapes).
async fn serve(
    mut stream: TcpStream,
    heads: Arc<Mutex<Vec<String>>>,
    answer: Arc<Mutex<Answer>>,
    release: Arc<Notify>,
) {
    let mut buffer = Vec::new();
    loop {
        let end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            if buffer.len() > 1 << 20 {
                return;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end + 4);
        let head_request = head.starts_with("HEAD ");
        heads.lock().unwrap().push(head);
        let answer = answer.lock().unwrap().clone();
        tokio::time::sleep(answer.delay).await;
        let mut out = format!("{}\r\n", answer.head).into_bytes();
        let body: &[u8] = if head_request { &[] } else { &answer.body };
        let held = answer.hold_after.unwrap_or(body.len()).min(body.len());
        out.extend_from_slice(&body[..held]);
        if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
            return;
        }
        if held < body.len() {
            release.notified().await;
            if stream.write_all(&body[held..]).await.is_err() {
                return;
            }
        }
    }
}
