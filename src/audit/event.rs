//! The events, field for field as the fork's `pkg/audit/event.go` writes them: an OCSF
//! 1.9.0 API Activity (class 6003, activity 99 "Inference", type 600399) with the
//! `ai_operation` profile, and the Base Event "Audit Event Loss" for a gap. What is
//! ours sits in OCSF's `unmapped` object, under `scrape_guard`, so the fork's shape is
//! left as it is.

use std::{net::IpAddr, sync::Arc, time::SystemTime};

use http::{Uri, Version};
use serde::Serialize;

use super::{millis, Audit, Request, Shared};

const OCSF_VERSION: &str = "1.9.0";
const PRODUCT: &str = "kube-rbac-proxy";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The fork's limit on one serialized event, and on a path and any other string in the
/// event that stands in for one too large.
const MAX_EVENT: usize = 64 << 10;
const MAX_PATH: usize = 1024;
const MAX_STRING: usize = 256;
const TRUNCATED: &str = "[truncated]";

/// A guarded request's event.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Event {
    activity_id: u32,
    activity_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    class_uid: u32,
    class_name: &'static str,
    type_uid: u32,
    severity_id: u32,
    severity: &'static str,
    /// When the request arrived (ms).
    time: i64,
    metadata: Metadata,
    actor: Actor,
    api: Api,
    http_request: HttpRequest,
    http_response: HttpResponse,
    src_endpoint: Endpoint,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst_endpoint: Option<Endpoint>,
    status_id: u32,
    status: &'static str,
    status_code: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resources: Vec<Resource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ai_model: Option<AiModel>,
    unmapped: Unmapped,
}

#[derive(Debug, Clone, Serialize)]
struct Metadata {
    version: &'static str,
    profiles: [&'static str; 1],
    product: Product,
    /// When the writer wrote it (ms): set by the writer.
    logged_time: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    is_truncated: bool,
    /// In KiB, as the fork counts it.
    #[serde(skip_serializing_if = "Option::is_none")]
    untruncated_size: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
struct Product {
    name: &'static str,
    version: &'static str,
}

#[derive(Debug, Clone, Serialize)]
struct Actor {
    user: ActorUser,
}

#[derive(Debug, Clone, Serialize)]
struct ActorUser {
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    uid: String,
    /// 0 unknown, 1 user, 4 a service account (OCSF's "System").
    type_id: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    groups: Vec<Group>,
}

#[derive(Debug, Clone, Serialize)]
struct Group {
    name: String,
}

#[derive(Debug, Clone, Serialize)]
struct Api {
    operation: String,
}

#[derive(Debug, Clone, Serialize)]
struct HttpRequest {
    http_method: String,
    version: &'static str,
    url: Url,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    x_forwarded_for: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Url {
    path: String,
}

#[derive(Debug, Clone, Serialize)]
struct HttpResponse {
    code: u16,
    body_length: u64,
    /// ms.
    latency: u64,
}

/// An OCSF network endpoint, as the fork fills it.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Endpoint {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    hostname: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
}

#[derive(Debug, Clone, Serialize)]
struct Resource {
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    namespace: String,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    kind: String,
    role_id: u32,
    role: &'static str,
}

#[derive(Debug, Clone, Serialize)]
struct AiModel {
    name: String,
    ai_provider: String,
}

/// Ours: what decided, for an auditor asking "why was this let through".
#[derive(Debug, Clone, Serialize)]
struct Unmapped {
    scrape_guard: Ours,
}

#[derive(Debug, Clone, Serialize)]
struct Ours {
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "shared")]
    listener: Option<Arc<str>>,
    /// allow or deny; absent when no decision was reached (401, 503).
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'static str>,
    /// Where the answer came from: cache, apiserver, local, stale, standalone.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<String>,
}

/// The fork's gap event: how many events were lost, and when.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Gap {
    activity_id: u32,
    activity_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    class_uid: u32,
    class_name: &'static str,
    type_uid: u32,
    type_name: &'static str,
    severity_id: u32,
    severity: &'static str,
    time: i64,
    start_time: i64,
    end_time: i64,
    duration: i64,
    count: u64,
    metadata: GapMetadata,
    status_id: u32,
    status: &'static str,
    status_code: &'static str,
}

#[derive(Debug, Clone, Serialize)]
struct GapMetadata {
    version: &'static str,
    product: Product,
    logged_time: i64,
}

const PRODUCT_ID: Product = Product {
    name: PRODUCT,
    version: VERSION,
};

/// A shared string, as a string.
fn shared<S: serde::Serializer>(
    value: &Option<Arc<str>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value.as_deref().unwrap_or_default())
}

// === impl Event ===

impl Event {
    /// The event for `request`, built on the request path; `logged_time` comes later.
    pub(super) fn new(audit: &Audit, shared: &Shared, request: &Request<'_>) -> Self {
        let forwarded = request.forwarded;
        let arrived = SystemTime::now()
            .checked_sub(request.elapsed)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let failed = request.status >= 400;
        let src_endpoint = match forwarded.last() {
            Some(ip) => Endpoint::ip(*ip, None),
            None => Endpoint::ip(request.peer.ip(), Some(request.peer.port())),
        };
        let (resources, ai_model) = resource(shared, request);
        Self {
            activity_id: 99,
            activity_name: "Inference",
            category_uid: 6,
            category_name: "Application Activity",
            class_uid: 6003,
            class_name: "API Activity",
            type_uid: 600_399,
            severity_id: 1,
            severity: "Informational",
            time: millis(arrived),
            metadata: Metadata {
                version: OCSF_VERSION,
                profiles: ["ai_operation"],
                product: PRODUCT_ID,
                logged_time: 0,
                is_truncated: false,
                untruncated_size: None,
            },
            actor: Actor {
                user: actor(request.user),
            },
            api: Api {
                operation: format!("{} {}", request.method, request.path),
            },
            http_request: HttpRequest {
                http_method: request.method.to_owned(),
                version: version(request.version),
                url: Url {
                    path: request.path.to_owned(),
                },
                x_forwarded_for: forwarded.iter().map(IpAddr::to_string).collect(),
            },
            http_response: HttpResponse {
                code: request.status,
                body_length: request.body_length.unwrap_or(0),
                latency: u64::try_from(request.elapsed.as_millis()).unwrap_or(u64::MAX),
            },
            src_endpoint,
            dst_endpoint: audit.upstream.clone(),
            status_id: if failed { 2 } else { 1 },
            status: if failed { "Failure" } else { "Success" },
            status_code: request.status.to_string(),
            resources,
            ai_model,
            unmapped: Unmapped {
                scrape_guard: Ours {
                    listener: audit.listener.clone(),
                    decision: request.decision.as_ref().map(|d| {
                        if d.allowed {
                            "allow"
                        } else {
                            "deny"
                        }
                    }),
                    source: request.decision.as_ref().map(|d| d.source.as_str()),
                    rule: request.decision.as_ref().map(|d| d.rule.to_owned()),
                },
            },
        }
    }

    /// One JSON line, logged now; cut down as the fork cuts it when over 64 KiB.
    pub(super) fn line(mut self, logged: SystemTime) -> Vec<u8> {
        self.metadata.logged_time = millis(logged);
        let line = to_line(&self);
        if line.len() <= MAX_EVENT {
            return line;
        }
        self.bound(line.len());
        to_line(&self)
    }

    /// The fork's `boundedAuditEvent`: strings cut, groups and forwarded-for dropped.
    fn bound(&mut self, size: usize) {
        self.metadata.is_truncated = true;
        self.metadata.untruncated_size = Some(size.div_ceil(1024));
        let user = &mut self.actor.user;
        cut(&mut user.name, MAX_STRING);
        cut(&mut user.uid, MAX_STRING);
        user.groups.clear();
        cut(&mut self.api.operation, MAX_STRING);
        cut(&mut self.http_request.http_method, MAX_STRING);
        cut(&mut self.http_request.url.path, MAX_PATH);
        self.http_request.x_forwarded_for.clear();
        self.resources.truncate(1);
        for resource in &mut self.resources {
            cut(&mut resource.name, MAX_STRING);
            cut(&mut resource.namespace, MAX_STRING);
            cut(&mut resource.kind, MAX_STRING);
        }
        if let Some(model) = &mut self.ai_model {
            cut(&mut model.name, MAX_STRING);
            cut(&mut model.ai_provider, MAX_STRING);
        }
        if let Some(rule) = &mut self.unmapped.scrape_guard.rule {
            cut(rule, MAX_STRING);
        }
    }
}

/// The resource: the flags' name and namespace, else what the request was authorized
/// as; none without a name. With a name and `--audit-ai-provider`, the model too.
fn resource(shared: &Shared, request: &Request<'_>) -> (Vec<Resource>, Option<AiModel>) {
    let flags = &shared.resource;
    let (seen_name, seen_namespace) = request.resource.unwrap_or_default();
    let pick = |flag: &str, seen: &str| match flag {
        "" => seen.to_owned(),
        flag => flag.to_owned(),
    };
    let name = pick(&flags.name, seen_name);
    if name.is_empty() {
        return (Vec::new(), None);
    }
    let model = (!shared.ai_provider.is_empty()).then(|| AiModel {
        name: name.clone(),
        ai_provider: shared.ai_provider.clone(),
    });
    let resource = Resource {
        name,
        namespace: pick(&flags.namespace, seen_namespace),
        kind: flags.kind.clone(),
        role_id: 1,
        role: "Target",
    };
    (vec![resource], model)
}

/// The fork's `ocsfUser`.
fn actor(user: Option<&crate::identity::User>) -> ActorUser {
    let Some(user) = user.filter(|u| !u.name.is_empty()) else {
        return ActorUser {
            name: "Unknown".into(),
            uid: String::new(),
            type_id: 0,
            groups: Vec::new(),
        };
    };
    let type_id = if user.name.starts_with("system:serviceaccount:") {
        4
    } else {
        1
    };
    ActorUser {
        name: user.name.clone(),
        uid: user.uid.clone(),
        type_id,
        groups: user
            .groups
            .iter()
            .filter(|g| !g.is_empty())
            .map(|name| Group { name: name.clone() })
            .collect(),
    }
}

/// Go's `req.Proto` without `HTTP/`.
fn version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2.0",
        Version::HTTP_3 => "3.0",
        _ => "1.1",
    }
}

fn to_line(value: &impl Serialize) -> Vec<u8> {
    // Serializing plain structs of strings and numbers cannot fail.
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    line
}

/// The fork's `truncateUTF8`: at most `limit` bytes, the marker included.
fn cut(value: &mut String, limit: usize) {
    if value.len() <= limit {
        return;
    }
    let mut end = limit.saturating_sub(TRUNCATED.len());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.truncate(end);
    value.push_str(TRUNCATED);
}

// === impl Endpoint ===

impl Endpoint {
    fn ip(ip: IpAddr, port: Option<u16>) -> Self {
        Self {
            ip: ip.to_canonical().to_string(),
            port: port.filter(|p| *p != 0),
            ..Self::default()
        }
    }

    /// The fork's `destinationEndpoint`: an IP or a host name, and the port (the
    /// scheme's when none is written). None for a Unix socket.
    pub(super) fn of_upstream(upstream: &Uri) -> Option<Self> {
        let host = upstream.host().filter(|h| !h.is_empty())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = upstream.port_u16().or(match upstream.scheme_str() {
            Some("http") => Some(80),
            Some("https") => Some(443),
            _ => None,
        });
        Some(match host.parse::<IpAddr>() {
            Ok(ip) => Self::ip(ip, port),
            Err(_) => Self {
                hostname: host.to_owned(),
                port,
                ..Self::default()
            },
        })
    }
}

// === impl Gap ===

impl Gap {
    /// `count` events lost between `start` and `end` (ms).
    pub(super) fn new(count: u64, start: i64, end: i64) -> Self {
        Self {
            activity_id: 99,
            activity_name: "Audit Event Loss",
            category_uid: 0,
            category_name: "Uncategorized",
            class_uid: 0,
            class_name: "Base Event",
            type_uid: 99,
            type_name: "Base Event: Audit Event Loss",
            severity_id: 3,
            severity: "Medium",
            time: start,
            start_time: start,
            end_time: end,
            duration: end - start,
            count,
            metadata: GapMetadata {
                version: OCSF_VERSION,
                product: PRODUCT_ID,
                logged_time: 0,
            },
            status_id: 2,
            status: "Failure",
            status_code: "audit_queue_full",
        }
    }

    pub(super) fn line(mut self, logged: SystemTime) -> Vec<u8> {
        self.metadata.logged_time = millis(logged);
        to_line(&self)
    }
}
