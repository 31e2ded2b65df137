//! A minimal HTTP/2 client over a TLS socket, framed by hand: HPACK literals out, only
//! `:status` decoded in. A client library refuses or repairs much of what these tests
//! must send — malformed pseudo-headers, upper-case names, connection-specific headers,
//! CONTINUATION floods, open-and-reset bursts — so the frames are written here.
//! `H2::connect` sets SETTINGS_HEADER_TABLE_SIZE=0, which keeps the server's responses
//! decodable without a dynamic table.

use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::client::TlsStream;

use crate::{https::tls, Pki, World};

/// DATA frame type.
pub const DATA: u8 = 0;
/// HEADERS frame type.
pub const HEADERS: u8 = 1;
/// RST_STREAM frame type.
pub const RST_STREAM: u8 = 3;
/// SETTINGS frame type.
pub const SETTINGS: u8 = 4;
/// PING frame type.
pub const PING: u8 = 6;
/// GOAWAY frame type.
pub const GOAWAY: u8 = 7;
/// WINDOW_UPDATE frame type.
pub const WINDOW_UPDATE: u8 = 8;
/// CONTINUATION frame type.
pub const CONTINUATION: u8 = 9;
/// The END_STREAM flag (HEADERS, DATA).
pub const END_STREAM: u8 = 0x1;
/// The ACK flag (SETTINGS, PING).
pub const ACK: u8 = 0x1;
/// The END_HEADERS flag (HEADERS, CONTINUATION).
pub const END_HEADERS: u8 = 0x4;
/// The CANCEL error code.
pub const CANCEL: u32 = 0x8;
/// The REFUSED_STREAM error code.
pub const REFUSED_STREAM: u32 = 0x7;

/// One frame: the 9-byte header (length, `kind`, `flags`, `stream`) and `payload`.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK integer with an `n`-bit prefix (RFC 7541 §5.1); `first` holds the flag bits.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A header block of "literal without indexing, new name" fields (no Huffman).
pub fn header_block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name);
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value);
    }
    out
}

/// HEADERS (+ CONTINUATION frames when the block exceeds 16 KiB).
fn headers_frames(stream: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
    const MAX: usize = 16 * 1024;
    let es = if end_stream { END_STREAM } else { 0 };
    let mut chunks = block.chunks(MAX).peekable();
    let mut out = Vec::new();
    let mut first = true;
    if block.is_empty() {
        return frame(HEADERS, es | END_HEADERS, stream, &[]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let eh = if last { END_HEADERS } else { 0 };
        if first {
            out.extend(frame(HEADERS, es | eh, stream, chunk));
            first = false;
        } else {
            out.extend(frame(CONTINUATION, eh, stream, chunk));
        }
    }
    out
}

/// Decodes `:status`, the first field of a response header block, from a server that
/// was told SETTINGS_HEADER_TABLE_SIZE=0 (so no dynamic-table references). Static
/// entries 8..=14, or a literal with name index 8 whose value may be Huffman-coded
/// (digits only: RFC 7541 Appendix B).
fn decode_status(block: &[u8]) -> Option<u16> {
    let mut i = 0;
    // Dynamic table size updates (001xxxxx).
    while i < block.len() && block[i] & 0xe0 == 0x20 {
        let continued = block[i] & 0x1f == 0x1f;
        i += 1;
        if continued {
            while i < block.len() && block[i] & 0x80 != 0 {
                i += 1;
            }
            i += 1;
        }
    }
    let b = *block.get(i)?;
    if b & 0x80 != 0 {
        return match b & 0x7f {
            8 => Some(200),
            9 => Some(204),
            10 => Some(206),
            11 => Some(304),
            12 => Some(400),
            13 => Some(404),
            14 => Some(500),
            _ => None,
        };
    }
    let index = if b & 0xc0 == 0x40 { b & 0x3f } else { b & 0x0f };
    if index != 8 {
        return None;
    }
    let len_byte = *block.get(i + 1)?;
    let huffman = len_byte & 0x80 != 0;
    let len = (len_byte & 0x7f) as usize;
    let value = block.get(i + 2..i + 2 + len)?;
    let text = if huffman {
        let mut bits = value
            .iter()
            .flat_map(|byte| (0..8).rev().map(move |k| (byte >> k) & 1));
        let mut digits = String::new();
        for _ in 0..3 {
            let mut code = 0u8;
            for _ in 0..5 {
                code = code << 1 | bits.next()?;
            }
            if code <= 2 {
                digits.push((b'0' + code) as char);
                continue;
            }
            code = code << 1 | bits.next()?;
            if (0x19..=0x1f).contains(&code) {
                digits.push((b'3' + code - 0x19) as char);
            } else {
                return None;
            }
        }
        digits
    } else {
        String::from_utf8_lossy(value).into_owned()
    };
    text.parse().ok()
}

/// What the server sent on one stream.
#[derive(Debug, Default, Clone)]
pub struct H2Stream {
    /// `:status` of the first HEADERS frame, if it could be decoded.
    pub status: Option<u16>,
    /// A HEADERS frame arrived (whether or not `:status` could be decoded).
    pub headers_seen: bool,
    /// The RST_STREAM error code, if the server reset the stream.
    pub reset: Option<u32>,
    /// END_STREAM arrived.
    pub ended: bool,
    /// The DATA received.
    pub body: Vec<u8>,
    /// How many DATA frames it came in.
    pub data_frames: usize,
}

impl H2Stream {
    /// Ended or reset: nothing more will come.
    pub fn done(&self) -> bool {
        self.ended || self.reset.is_some()
    }
}

/// One HTTP/2 connection to the proxy, from a client that presents the World's token.
pub struct H2 {
    io: TlsStream<TcpStream>,
    buf: Vec<u8>,
    next_id: u32,
    token: String,
    /// Every stream opened or answered, by id.
    pub streams: HashMap<u32, H2Stream>,
    /// GOAWAY error code, if the server sent one.
    pub goaway: Option<u32>,
    /// The connection is closed (read EOF or error, or a write failed).
    pub closed: bool,
    /// How much request data the server lets this client send on the connection
    /// before it must wait: 65,535 plus the server's WINDOW_UPDATEs on stream 0.
    pub connection_window: u64,
}

impl H2 {
    /// TLS with ALPN h2 (asserted), the preface, SETTINGS (no push, header table 0, a
    /// 16 MiB stream window) and a 1 GiB connection window: this client never makes
    /// the server wait for flow control.
    pub async fn connect(w: &World) -> Self {
        Self::connect_to(&w.pki, w.proxy.addr, &w.token).await
    }

    /// Like `connect`, to the proxy at `addr`, presenting `token`.
    pub async fn connect_to(pki: &Pki, addr: SocketAddr, token: &str) -> Self {
        let mut io = tls(pki, addr, &[b"h2"]).await;
        assert_eq!(
            io.get_ref().1.alpn_protocol(),
            Some(&b"h2"[..]),
            "h2 negotiated"
        );
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let mut settings = Vec::new();
        for (id, value) in [(1u16, 0u32), (2, 0), (4, 1 << 24)] {
            settings.extend_from_slice(&id.to_be_bytes());
            settings.extend_from_slice(&value.to_be_bytes());
        }
        out.extend(frame(SETTINGS, 0, 0, &settings));
        out.extend(frame(WINDOW_UPDATE, 0, 0, &(1u32 << 30).to_be_bytes()));
        io.write_all(&out).await.unwrap();
        Self {
            io,
            buf: Vec::new(),
            next_id: 1,
            token: token.to_owned(),
            streams: HashMap::new(),
            goaway: None,
            closed: false,
            connection_window: 65_535,
        }
    }

    /// The bytes that open a new stream (not yet sent), and its id.
    pub fn request(&mut self, fields: &[(&[u8], &[u8])], end_stream: bool) -> (u32, Vec<u8>) {
        let id = self.next_id;
        self.next_id += 2;
        self.streams.insert(id, H2Stream::default());
        (id, headers_frames(id, &header_block(fields), end_stream))
    }

    /// `method` `path` with the World's token and `extra` fields, sent with END_STREAM;
    /// returns the stream id.
    pub async fn get(&mut self, method: &[u8], path: &[u8], extra: &[(&[u8], &[u8])]) -> u32 {
        let auth = format!("Bearer {}", self.token);
        let mut fields: Vec<(&[u8], &[u8])> = vec![
            (b":method", method),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", path),
            (b"authorization", auth.as_bytes()),
        ];
        fields.extend_from_slice(extra);
        let (id, bytes) = self.request(&fields, true);
        self.send(&bytes).await;
        id
    }

    /// Writes `bytes`; a failed write marks the connection closed.
    pub async fn send(&mut self, bytes: &[u8]) {
        if self.io.write_all(bytes).await.is_err() {
            self.closed = true;
        }
        let _ = self.io.flush().await;
    }

    /// Reads and handles frames (answering SETTINGS and PING) until `done(self)`, the
    /// connection closes, or `max`. Not `eventually`: running out of time is an outcome
    /// here, and only the reads are timed, because a frame write cancelled half-way
    /// would corrupt the connection for the next call.
    pub async fn pump(&mut self, max: Duration, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + max;
        let mut chunk = vec![0u8; 64 * 1024];
        while !done(self) && !self.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match tokio::time::timeout(left, self.io.read(&mut chunk)).await {
                Err(_) => return,
                Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                Ok(Ok(n)) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.handle_frames().await;
                }
            }
        }
    }

    /// Pumps until stream `id` is done or `max` has passed; what it got by then.
    pub async fn wait_for(&mut self, id: u32, max: Duration) -> H2Stream {
        self.pump(max, |h| h.streams.get(&id).is_some_and(H2Stream::done))
            .await;
        self.streams.get(&id).cloned().unwrap_or_default()
    }

    async fn handle_frames(&mut self) {
        let mut replies = Vec::new();
        while self.buf.len() >= 9 {
            let len =
                (self.buf[0] as usize) << 16 | (self.buf[1] as usize) << 8 | self.buf[2] as usize;
            if self.buf.len() < 9 + len {
                break;
            }
            let kind = self.buf[3];
            let flags = self.buf[4];
            let id = u32::from_be_bytes(self.buf[5..9].try_into().unwrap()) & 0x7fff_ffff;
            let payload: Vec<u8> = self.buf[9..9 + len].to_vec();
            self.buf.drain(..9 + len);
            match kind {
                SETTINGS if flags & ACK == 0 => replies.extend(frame(SETTINGS, ACK, 0, &[])),
                PING if flags & ACK == 0 => replies.extend(frame(PING, ACK, 0, &payload)),
                WINDOW_UPDATE if id == 0 => {
                    if let Some(increment) = payload.get(..4) {
                        let increment = u32::from_be_bytes(increment.try_into().unwrap());
                        self.connection_window += u64::from(increment & 0x7fff_ffff);
                    }
                }
                GOAWAY => {
                    self.goaway = payload
                        .get(4..8)
                        .map(|b| u32::from_be_bytes(b.try_into().unwrap()));
                }
                HEADERS | CONTINUATION | DATA | RST_STREAM => {
                    let stream = self.streams.entry(id).or_default();
                    match kind {
                        HEADERS => {
                            if stream.status.is_none() {
                                stream.status = decode_status(&payload);
                            }
                            stream.headers_seen = true;
                        }
                        DATA => {
                            stream.body.extend_from_slice(&payload);
                            stream.data_frames += 1;
                        }
                        RST_STREAM => {
                            stream.reset = payload
                                .get(0..4)
                                .map(|b| u32::from_be_bytes(b.try_into().unwrap()));
                        }
                        _ => {}
                    }
                    if matches!(kind, HEADERS | DATA) && flags & END_STREAM != 0 {
                        stream.ended = true;
                    }
                }
                _ => {}
            }
        }
        if !replies.is_empty() {
            self.send(&replies).await;
        }
    }
}
