//! The log as a bounded resource. Anyone who can open a TCP connection can make the
//! proxy log something (a failed handshake, a 401, a refused path, a TLS library's
//! own warning), so what such a client can cause is held to one budget for the whole
//! process: `UNAUTHENTICATED`, `LINES_PER_WINDOW` lines a minute, the rest only
//! counted (the own metrics count every event) and summed up in one line. And no
//! field a client chose is written whole: `cut` keeps `FIELD_LIMIT` bytes and says
//! how long it was; the writer cuts any line still over `LINE_LIMIT` as a last line
//! of defence (a third-party crate's message can embed a client's bytes).
//!
//! Lines from other crates (rustls, h2, hyper-util and kube, some through the `log`
//! bridge) pass through the same budget: rustls warns about a bad SNI on every
//! ClientHello, and it cannot tell us whose fault a line is. Authenticated requests
//! (the access log, 403s) are not budgeted; their fields are cut all the same.

use std::{
    borrow::Cow,
    fmt,
    io::{self, IsTerminal, Write},
    sync::Mutex,
    time::{Duration, Instant},
};

use tracing::{subscriber::Interest, Event, Metadata};
use tracing_subscriber::{
    filter::{FilterExt, LevelFilter},
    fmt::MakeWriter,
    layer::{Context, Filter, SubscriberExt},
    util::SubscriberInitExt,
    EnvFilter, Layer,
};

/// A field a client chose is logged up to this many bytes, then its length.
pub(crate) const FIELD_LIMIT: usize = 256;
/// No line written to stderr is longer (bar the note saying it was cut).
const LINE_LIMIT: usize = 1024;
/// Lines about what unauthenticated clients cause, per `WINDOW`, for the whole process.
const LINES_PER_WINDOW: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);

/// The one budget for lines an unauthenticated client can cause.
pub(crate) static UNAUTHENTICATED: LogBudget = LogBudget::new();

/// Sets up the log: `SCRAPE_GUARD_LOG` (or `default_level`), text or JSON on stderr,
/// other crates' lines through `UNAUTHENTICATED`, every line at most `LINE_LIMIT`.
pub fn init(format: &str, default_level: &str) {
    let filter = EnvFilter::try_from_env("SCRAPE_GUARD_LOG")
        .unwrap_or_else(|_| EnvFilter::new(default_level))
        .and(OtherCrates);
    let ansi = io::stderr().is_terminal();
    let json = format == "json";
    let writer = Stderr(if json { Format::Json } else { Format::Text });
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(writer);
    if json {
        let layer = layer.json().with_filter(filter);
        tracing_subscriber::registry().with(layer).init();
    } else {
        tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .init();
    }
}

/// `value` as a log field: control characters escaped, at most `FIELD_LIMIT` bytes,
/// then `…(N bytes)`.
pub(crate) fn cut(value: &str) -> Cut<'_> {
    Cut(value)
}

/// See `cut`.
pub(crate) struct Cut<'a>(&'a str);

// === impl Cut ===

impl fmt::Display for Cut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept = prefix(self.0, FIELD_LIMIT);
        for c in kept.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        if kept.len() < self.0.len() {
            write!(f, "…({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Cut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// At most `LINES_PER_WINDOW` lines a minute; the rest are dropped and summed up in
/// one line, naming what was dropped, when the next line is allowed.
#[derive(Debug)]
pub(crate) struct LogBudget {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Option<Instant>,
    lines: u32,
    /// Dropped in this window, and dropped in closed windows not yet reported.
    dropped: u64,
    unreported: u64,
    kinds: Vec<&'static str>,
}

// === impl LogBudget ===

impl LogBudget {
    pub(crate) const fn new() -> Self {
        Self {
            window: Mutex::new(Window {
                started: None,
                lines: 0,
                dropped: 0,
                unreported: 0,
                kinds: Vec::new(),
            }),
        }
    }

    /// Whether a line about `what` may be written; first says what the budget dropped
    /// since the last time it said so.
    pub(crate) fn allow(&self, what: &'static str) -> bool {
        let (allowed, unreported, kinds) = self.take(what, true);
        if unreported > 0 {
            tracing::warn!(
                dropped = unreported,
                about = kinds.join(", "),
                "log lines dropped: at most {LINES_PER_WINDOW} a minute about what \
                 unauthenticated clients cause; the own metrics count every event"
            );
        }
        allowed
    }

    /// `allow` for a log filter, which cannot log: the summary waits for `allow`.
    fn allow_quietly(&self, what: &'static str) -> bool {
        self.take(what, false).0
    }

    fn take(&self, what: &'static str, report: bool) -> (bool, u64, Vec<&'static str>) {
        // Only counters inside; a poisoned lock still holds usable numbers.
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if window.started.is_none_or(|started| now - started >= WINDOW) {
            window.started = Some(now);
            window.lines = 0;
            window.unreported += std::mem::take(&mut window.dropped);
        }
        window.lines = window.lines.saturating_add(1);
        let allowed = window.lines <= LINES_PER_WINDOW;
        if !allowed {
            window.dropped += 1;
            if !window.kinds.contains(&what) {
                window.kinds.push(what);
            }
        }
        if !(report && allowed && window.unreported > 0) {
            return (allowed, 0, Vec::new());
        }
        let kinds = if window.dropped == 0 {
            std::mem::take(&mut window.kinds)
        } else {
            window.kinds.clone()
        };
        (allowed, std::mem::take(&mut window.unreported), kinds)
    }
}

/// Lets other crates' events through `UNAUTHENTICATED`; ours and spans pass.
struct OtherCrates;

fn ours(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    metadata.is_span()
        || target == "access"
        || target == "scrape_guard"
        || target.starts_with("scrape_guard::")
}

// === impl OtherCrates ===

impl<S> Filter<S> for OtherCrates {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    /// Here rather than in `enabled`, which the `log` bridge asks twice per record.
    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        ours(event.metadata()) || UNAUTHENTICATED.allow_quietly("TLS and HTTP library messages")
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        if ours(metadata) {
            Interest::always()
        } else {
            Interest::sometimes()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }
}

/// How lines are written: a cut text line stays text, a cut JSON line stays JSON.
#[derive(Debug, Clone, Copy)]
enum Format {
    Text,
    Json,
}

/// stderr, one formatted line per write (how `tracing_subscriber::fmt` writes), each
/// cut to `LINE_LIMIT`.
struct Stderr(Format);

// === impl Stderr ===

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(self.0)
    }
}

/// One line on its way to stderr.
struct Line(Format);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stderr().lock().write_all(&capped(buf, self.0))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// `line` when short enough; otherwise JSON with each long string cut, or text cut
/// at `LINE_LIMIT` with a note of its length.
fn capped(line: &[u8], format: Format) -> Cow<'_, [u8]> {
    if line.len() <= LINE_LIMIT {
        return Cow::Borrowed(line);
    }
    if let Format::Json = format {
        if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(line) {
            cut_strings(&mut value);
            let mut out = value.to_string().into_bytes();
            out.push(b'\n');
            return Cow::Owned(out);
        }
    }
    let text = String::from_utf8_lossy(line);
    let kept = prefix(&text, LINE_LIMIT);
    Cow::Owned(format!("{kept}…(line cut: {} bytes)\n", line.len()).into_bytes())
}

fn cut_strings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) if s.len() > FIELD_LIMIT => *s = cut(s).to_string(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(cut_strings),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(cut_strings),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_cut_with_their_length() {
        assert_eq!(cut("/metrics").to_string(), "/metrics");
        assert_eq!(cut("a\nb\u{1b}").to_string(), "a\\nb\\u{1b}");
        let long = "é".repeat(40_000);
        let shown = cut(&long).to_string();
        assert!(shown.ends_with("…(80000 bytes)"), "{shown}");
        assert!(shown.len() <= FIELD_LIMIT + 20, "{}", shown.len());
    }

    #[test]
    fn long_lines_are_cut_and_json_stays_json() {
        let text = format!("WARN rustls: Illegal SNI hostname {}\n", "x".repeat(70_000));
        let out = capped(text.as_bytes(), Format::Text);
        assert!(out.len() <= LINE_LIMIT + 40, "{}", out.len());
        assert!(String::from_utf8_lossy(&out).ends_with("(line cut: 70035 bytes)\n"));

        let json = serde_json::json!({"level": "WARN", "fields": {"message": "x".repeat(70_000)}});
        let line = format!("{json}\n");
        let out = capped(line.as_bytes(), Format::Json);
        let value: serde_json::Value = serde_json::from_slice(&out).expect("still JSON");
        let message = value["fields"]["message"].as_str().unwrap();
        assert!(message.ends_with("…(70000 bytes)"), "{message}");
        assert!(capped(b"short\n", Format::Json).len() == 6);
    }

    #[test]
    fn a_few_lines_a_window_then_one_summary() {
        let budget = LogBudget::new();
        let allowed = (0..100)
            .filter(|_| budget.allow_quietly("handshakes"))
            .count();
        assert_eq!(allowed, LINES_PER_WINDOW as usize);
        let window = budget.window.lock().unwrap();
        assert_eq!(window.dropped, 90);
        assert_eq!(window.kinds, ["handshakes"]);
    }
}
