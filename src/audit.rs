//! The audit log of decisions: one JSON line per guarded request, in the shape of the
//! OpenShift AI fork of kube-rbac-proxy (red-hat-data-services/kube-rbac-proxy,
//! `pkg/audit`): an OCSF 1.9.0 API Activity event with the AI Operation profile, and
//! its flags (`--audit-log-profile`, `--audit-resource-*`, `--audit-ai-provider`,
//! `--audit-use-forwarded-for`). docs/audit.md is the reference.
//!
//! Why it is shaped so: the log must never cost a request anything. The request path
//! builds the event (a few short strings) and offers it to a bounded queue without
//! waiting; one writer thread serializes and writes. When the queue is full the event
//! is dropped, counted (`scrape_guard_audit_events_dropped_total`) and summed into a
//! "gap" event (the fork's Audit Event Loss) that the writer writes as soon as it can
//! write again, so an auditor sees where the record has a hole and how big it is. The
//! trade-off is the fork's: best effort, never back-pressure.
//!
//! What an event never holds: a token, a cookie, an Authorization header, a query
//! string or a body. It is built from named fields only (the user as the authenticator
//! described it, the path without its query, the status), never from the headers as a
//! whole; `X-Forwarded-For` is read only with `--audit-use-forwarded-for`, and only the
//! addresses that parse as IPs are kept.

mod event;
mod writer;

use std::{
    fs::OpenOptions,
    io,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    str::FromStr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use http::{HeaderMap, Uri, Version};
use prometheus_client::metrics::counter::Counter;

use crate::identity::{Source, User};

use self::{event::Endpoint, writer::Queue};

/// `--audit-log-profile`: what is recorded. The fork implements these two and refuses
/// any other name at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// No audit log (the default).
    #[default]
    None,
    /// One event per guarded request: who, what, the answer; never a body.
    Metadata,
}

impl FromStr for Profile {
    type Err = String;

    /// The fork's words when refusing a profile.
    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "none" => Ok(Self::None),
            "metadata" => Ok(Self::Metadata),
            other => Err(format!(
                "audit log profile must be one of \"none\" or \"metadata\", got {other:?}"
            )),
        }
    }
}

/// The resource a request is about, as the flags name it (`--audit-resource-name`,
/// `--audit-resource-namespace`, `--audit-resource-type`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceMetadata {
    pub name: String,
    pub namespace: String,
    pub kind: String,
}

/// `--audit-use-forwarded-for`: whose address `src_endpoint` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAddress {
    /// The connection's peer (the default).
    #[default]
    Peer,
    /// The last address of `X-Forwarded-For` that parses as an IP, else the peer.
    ForwardedFor,
}

/// `--audit-log-path` (ours): where the lines go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Destination {
    /// Standard output, as the fork writes (the proxy's own log is on stderr).
    #[default]
    Stdout,
    /// A file, appended to (created if missing; a FIFO works too).
    File(PathBuf),
}

/// Everything the audit log is configured with.
#[derive(Debug, Clone, Default)]
pub struct AuditSettings {
    pub profile: Profile,
    pub resource: ResourceMetadata,
    /// `--audit-ai-provider`: with a resource name, adds `ai_model`.
    pub ai_provider: String,
    pub client_address: ClientAddress,
    pub destination: Destination,
    /// Events waiting for the writer at most (the fork's 1024).
    pub queue: usize,
}

/// The fork's queue size.
pub(crate) const DEFAULT_QUEUE: usize = 1024;

/// The audit log as a listener's pipeline holds it: off, or the way to the writer.
/// Cheap to clone; every listener's view shares the one queue and writer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Audit {
    shared: Option<Arc<Shared>>,
    /// `--listeners-file`'s name for the listener (ours, in `unmapped`).
    listener: Option<Arc<str>>,
    /// The listener's upstream, as `dst_endpoint`.
    upstream: Option<Endpoint>,
}

#[derive(Debug)]
struct Shared {
    resource: ResourceMetadata,
    ai_provider: String,
    client_address: ClientAddress,
    queue: Queue,
}

/// One guarded request as it ended, for its event. Borrowed: nothing is copied unless
/// the audit log is on.
pub(crate) struct Request<'a> {
    pub method: &'a str,
    /// The path only: a query may carry secrets.
    pub path: &'a str,
    pub version: Version,
    /// `X-Forwarded-For`'s addresses, with `--audit-use-forwarded-for`
    /// ([`Audit::forwarded_for`]).
    pub forwarded: &'a [IpAddr],
    pub peer: SocketAddr,
    pub user: Option<&'a User>,
    pub status: u16,
    /// The response's Content-Length, when it had one.
    pub body_length: Option<u64>,
    /// From the request to the response's headers.
    pub elapsed: Duration,
    pub decision: Option<Decision<'a>>,
    /// The first resource the request was authorized as (name, namespace).
    pub resource: Option<(&'a str, &'a str)>,
}

/// How authorization ended: ours, in `unmapped.scrape_guard`.
pub(crate) struct Decision<'a> {
    pub allowed: bool,
    pub source: Source,
    /// The rule, binding or apiserver reason that decided.
    pub rule: &'a str,
}

impl Audit {
    /// Opens the destination and starts the writer, or returns the log that is off.
    /// `dropped` counts events the full queue turned away.
    pub(crate) fn start(settings: &AuditSettings, dropped: Counter) -> io::Result<Self> {
        if settings.profile == Profile::None {
            return Ok(Self::default());
        }
        let out: Box<dyn io::Write + Send> = match &settings.destination {
            Destination::Stdout => Box::new(io::stdout()),
            Destination::File(path) => {
                Box::new(OpenOptions::new().create(true).append(true).open(path)?)
            }
        };
        let queue = writer::spawn(out, settings.queue.max(1), dropped)?;
        let shared = Shared {
            resource: settings.resource.clone(),
            ai_provider: settings.ai_provider.clone(),
            client_address: settings.client_address,
            queue,
        };
        Ok(Self {
            shared: Some(Arc::new(shared)),
            ..Self::default()
        })
    }

    /// This log as a listener records it: its name and its upstream.
    pub(crate) fn for_listener(&self, name: Option<&str>, upstream: &Uri) -> Self {
        Self {
            shared: self.shared.clone(),
            listener: name.map(Arc::from),
            upstream: Endpoint::of_upstream(upstream),
        }
    }

    /// Whether events are recorded at all (`--audit-log-profile=metadata`).
    pub(crate) fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Queues the event for `request`; never waits. Full queue: dropped and counted.
    pub(crate) fn record(&self, request: &Request<'_>) {
        let Some(shared) = &self.shared else {
            return;
        };
        shared.queue.push(event::Event::new(self, shared, request));
    }

    /// The client's addresses from `X-Forwarded-For`, read before the request moves
    /// on: empty unless the log is on with `--audit-use-forwarded-for`.
    pub(crate) fn forwarded_for(&self, headers: &HeaderMap) -> Vec<IpAddr> {
        match &self.shared {
            Some(shared) if shared.client_address == ClientAddress::ForwardedFor => {
                forwarded_for(headers)
            }
            _ => Vec::new(),
        }
    }

    /// Writes what is queued and stops the writer, waiting at most `wait` (a writer
    /// stuck on its destination is left behind).
    pub(crate) fn close(&self, wait: Duration) {
        if let Some(shared) = &self.shared {
            shared.queue.close(wait);
        }
    }
}

/// The addresses of every `X-Forwarded-For` header that parse as IPs (zones refused),
/// in order; anything else is dropped, so a client cannot write into the log.
fn forwarded_for(headers: &HeaderMap) -> Vec<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|candidate| candidate.trim().parse::<IpAddr>().ok())
        .collect()
}

/// Milliseconds since the Unix epoch, OCSF's `timestamp_t`.
fn millis(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
