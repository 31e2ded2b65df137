use std::{
    io::{self, Write},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use http::{HeaderMap, HeaderValue, Uri, Version};
use prometheus_client::metrics::counter::Counter;
use serde_json::{json, Value};

use super::{
    event::{Endpoint, Event, Gap},
    forwarded_for, writer, Audit, ClientAddress, Decision, Profile, Request, ResourceMetadata,
    Shared,
};
use crate::identity::{Source, User};

fn shared(resource: ResourceMetadata, ai_provider: &str) -> Shared {
    let queue = writer::spawn(Box::new(io::sink()), 4, Counter::default()).unwrap();
    Shared {
        resource,
        ai_provider: ai_provider.into(),
        client_address: ClientAddress::Peer,
        queue,
    }
}

fn request<'a>(user: Option<&'a User>, status: u16) -> Request<'a> {
    Request {
        method: "POST",
        path: "/v1/models/fraud:predict",
        version: Version::HTTP_2,
        forwarded: &[],
        peer: "192.0.2.1:1234".parse::<SocketAddr>().unwrap(),
        user,
        status,
        body_length: Some(27),
        elapsed: Duration::from_millis(15),
        decision: None,
        resource: None,
    }
}

fn parse(event: Event) -> Value {
    serde_json::from_slice(&event.line(SystemTime::UNIX_EPOCH)).unwrap()
}

#[test]
fn profiles_are_the_forks_two_and_others_are_refused_in_its_words() {
    assert_eq!("none".parse(), Ok(Profile::None));
    assert_eq!("metadata".parse(), Ok(Profile::Metadata));
    for refused in ["request", "Metadata", "", "requestresponse"] {
        let error = refused.parse::<Profile>().unwrap_err();
        assert!(
            error.contains(r#"must be one of "none" or "metadata""#),
            "{refused}: {error}"
        );
    }
}

#[test]
fn an_allowed_service_account_has_the_forks_fields_and_ours_in_unmapped() {
    let user = User {
        name: "system:serviceaccount:models:client".into(),
        uid: "uid-123".into(),
        groups: Arc::from(vec!["system:serviceaccounts".to_owned(), String::new()]),
        ..User::default()
    };
    let resource = ResourceMetadata {
        name: "fraud-detector".into(),
        namespace: "models".into(),
        kind: "InferenceService".into(),
    };
    let shared = shared(resource, "KServe");
    let audit = Audit::default().for_listener(
        Some("main"),
        &Uri::from_static("http://[2001:db8::20]:9443/"),
    );
    let mut request = request(Some(&user), 201);
    request.decision = Some(Decision {
        allowed: true,
        source: Source::Cache,
        rule: "RBAC: allowed by ClusterRoleBinding \"models\"",
    });
    let event = parse(Event::new(&audit, &shared, &request));
    let fixed = json!({
        "activity_id": 99, "activity_name": "Inference", "category_uid": 6,
        "category_name": "Application Activity", "class_uid": 6003, "class_name": "API Activity",
        "type_uid": 600399, "severity_id": 1, "severity": "Informational",
        "status_id": 1, "status": "Success", "status_code": "201",
    });
    for (key, value) in fixed.as_object().unwrap() {
        assert_eq!(&event[key], value, "{key}");
    }
    assert_eq!(event["metadata"]["version"], "1.9.0");
    assert_eq!(event["metadata"]["profiles"], json!(["ai_operation"]));
    assert_eq!(event["metadata"]["product"]["name"], "kube-rbac-proxy");
    assert_eq!(
        event["actor"]["user"],
        json!({"name": "system:serviceaccount:models:client", "uid": "uid-123", "type_id": 4,
               "groups": [{"name": "system:serviceaccounts"}]})
    );
    assert_eq!(event["api"]["operation"], "POST /v1/models/fraud:predict");
    assert_eq!(
        event["http_request"],
        json!({"http_method": "POST", "version": "2.0", "url": {"path": "/v1/models/fraud:predict"}})
    );
    assert_eq!(
        event["http_response"],
        json!({"code": 201, "body_length": 27, "latency": 15})
    );
    assert_eq!(
        event["src_endpoint"],
        json!({"ip": "192.0.2.1", "port": 1234})
    );
    assert_eq!(
        event["dst_endpoint"],
        json!({"ip": "2001:db8::20", "port": 9443})
    );
    assert_eq!(
        event["resources"],
        json!([{"name": "fraud-detector", "namespace": "models", "type": "InferenceService",
                "role_id": 1, "role": "Target"}])
    );
    assert_eq!(
        event["ai_model"],
        json!({"name": "fraud-detector", "ai_provider": "KServe"})
    );
    assert_eq!(
        event["unmapped"]["scrape_guard"],
        json!({"listener": "main", "decision": "allow", "source": "cache",
               "rule": "RBAC: allowed by ClusterRoleBinding \"models\""})
    );
    assert!(event["time"].as_i64().unwrap() > 0);
}

#[test]
fn an_unauthenticated_request_is_unknown_a_failure_and_names_no_resource() {
    let shared = shared(ResourceMetadata::default(), "KServe");
    let event = parse(Event::new(&Audit::default(), &shared, &request(None, 401)));
    assert_eq!(
        event["actor"]["user"],
        json!({"name": "Unknown", "type_id": 0})
    );
    assert_eq!(
        (event["status"].as_str(), event["status_id"].as_u64()),
        (Some("Failure"), Some(2))
    );
    assert_eq!(event["status_code"], "401");
    for absent in ["resources", "ai_model", "dst_endpoint"] {
        assert!(event.get(absent).is_none(), "{absent}: {event}");
    }
    assert_eq!(event["unmapped"]["scrape_guard"], json!({}));
}

#[test]
fn the_resource_is_the_flags_else_what_the_request_was_authorized_as() {
    let flags = ResourceMetadata {
        name: String::new(),
        namespace: "flag-ns".into(),
        kind: "InferenceService".into(),
    };
    let shared = shared(flags, "");
    let mut request = request(None, 403);
    request.resource = Some(("observed", "observed-ns"));
    let event = parse(Event::new(&Audit::default(), &shared, &request));
    assert_eq!(
        event["resources"],
        json!([{"name": "observed", "namespace": "flag-ns", "type": "InferenceService",
                "role_id": 1, "role": "Target"}])
    );
    assert!(event.get("ai_model").is_none(), "no provider, no model");
}

#[test]
fn forwarded_for_keeps_only_addresses_and_the_last_is_the_source() {
    let mut headers = HeaderMap::new();
    headers.append(
        "x-forwarded-for",
        HeaderValue::from_static("198.51.100.4, not-an-ip"),
    );
    headers.append(
        "x-forwarded-for",
        HeaderValue::from_static("fe80::1%eth0, 2001:db8::5"),
    );
    let forwarded = forwarded_for(&headers);
    assert_eq!(
        forwarded,
        [
            "198.51.100.4".parse::<std::net::IpAddr>().unwrap(),
            "2001:db8::5".parse().unwrap()
        ]
    );
    let shared = shared(ResourceMetadata::default(), "");
    let mut request = request(None, 200);
    request.forwarded = &forwarded;
    let event = parse(Event::new(&Audit::default(), &shared, &request));
    assert_eq!(event["src_endpoint"], json!({"ip": "2001:db8::5"}));
    assert_eq!(
        event["http_request"]["x_forwarded_for"],
        json!(["198.51.100.4", "2001:db8::5"])
    );
}

#[test]
fn an_event_over_64_kib_is_cut_as_the_fork_cuts_it() {
    let user = User {
        name: "u".repeat(300),
        groups: Arc::from(vec!["g".repeat(1000); 100]),
        ..User::default()
    };
    let shared = shared(ResourceMetadata::default(), "");
    let line =
        Event::new(&Audit::default(), &shared, &request(Some(&user), 200)).line(SystemTime::now());
    assert!(line.len() <= 64 << 10);
    let event: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(event["metadata"]["is_truncated"], true);
    assert!(
        event["metadata"]["untruncated_size"].as_u64().unwrap() > 64,
        "in KiB"
    );
    let name = event["actor"]["user"]["name"].as_str().unwrap();
    assert_eq!(name.len(), 256);
    assert!(name.ends_with("[truncated]"));
    assert!(event["actor"]["user"].get("groups").is_none());
}

#[test]
fn the_gap_event_is_the_forks_audit_event_loss() {
    let gap: Value = serde_json::from_slice(
        &Gap::new(3, 1_700_000_000_000, 1_700_000_000_250).line(SystemTime::UNIX_EPOCH),
    )
    .unwrap();
    assert_eq!(
        gap,
        json!({
            "activity_id": 99, "activity_name": "Audit Event Loss", "category_uid": 0,
            "category_name": "Uncategorized", "class_uid": 0, "class_name": "Base Event",
            "type_uid": 99, "type_name": "Base Event: Audit Event Loss", "severity_id": 3,
            "severity": "Medium", "time": 1_700_000_000_000_i64, "start_time": 1_700_000_000_000_i64,
            "end_time": 1_700_000_000_250_i64, "duration": 250, "count": 3,
            "metadata": {"version": "1.9.0",
                         "product": {"name": "kube-rbac-proxy", "version": env!("CARGO_PKG_VERSION")},
                         "logged_time": 0},
            "status_id": 2, "status": "Failure", "status_code": "audit_queue_full",
        })
    );
}

#[test]
fn the_upstream_is_an_ip_or_a_host_with_the_schemes_port() {
    let endpoint = |uri: &'static str| {
        serde_json::to_value(Endpoint::of_upstream(&Uri::from_static(uri))).unwrap()
    };
    assert_eq!(
        endpoint("http://localhost:8080"),
        json!({"hostname": "localhost", "port": 8080})
    );
    assert_eq!(
        endpoint("https://127.0.0.1/"),
        json!({"ip": "127.0.0.1", "port": 443})
    );
    assert_eq!(endpoint("/just/a/path"), Value::Null);
}

/// A destination that blocks every write until told to go on.
#[derive(Clone, Default)]
struct Gate {
    open: Arc<(Mutex<bool>, std::sync::Condvar)>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (open, opened) = &*self.open;
        let mut guard = open.lock().unwrap();
        while !*guard {
            guard = opened.wait(guard).unwrap();
        }
        self.written.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stuck_writer_drops_counts_and_then_writes_the_gap() {
    let gate = Gate::default();
    let dropped = Counter::default();
    let queue = writer::spawn(Box::new(gate.clone()), 2, dropped.clone()).unwrap();
    let shared = Shared {
        resource: ResourceMetadata::default(),
        ai_provider: String::new(),
        client_address: ClientAddress::Peer,
        queue,
    };
    // The writer takes the first and blocks on it; two wait; the rest are lost.
    for _ in 0..10 {
        shared
            .queue
            .push(Event::new(&Audit::default(), &shared, &request(None, 200)));
    }
    let lost = dropped.get();
    assert!((7..=8).contains(&lost), "lost {lost}");
    {
        let (open, opened) = &*gate.open;
        *open.lock().unwrap() = true;
        opened.notify_all();
    }
    shared.queue.close(Duration::from_secs(10));
    let written = gate.written.lock().unwrap().clone();
    let lines: Vec<Value> = written
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    // One gap, or two when losses came both before and after the writer took its
    // first event: together they count every loss.
    let gaps: Vec<&Value> = lines.iter().filter(|l| l["class_uid"] == 0).collect();
    assert!((1..=2).contains(&gaps.len()), "{lines:?}");
    let counted: u64 = gaps.iter().map(|g| g["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, lost);
    assert_eq!(lines.len() - gaps.len(), 10 - lost as usize);
}
