//! What the pipeline learned about a request, kept for the access and audit logs
//! whether it was let through or not, and the audit log's one hook.

use std::{sync::Arc, time::Duration};

use std::net::IpAddr;

use http::{header, Method, Response, Uri, Version};

use super::Guard;
use crate::{
    audit::{Audit, Decision, Request},
    authz::{Outcome, Plan},
    body::ProxyBody,
    identity::User,
    server::Peer,
};

/// Filled in by `Guard::admit` as it goes.
#[derive(Debug, Default)]
pub(crate) struct Trail {
    /// Who was authenticated.
    pub user: Option<Arc<User>>,
    /// Past the path policy: a request the audit log records (as the fork, not an
    /// `--ignore-paths` path nor one refused by `--allow-paths`).
    pub guarded: bool,
    /// The outcome that settled authorization.
    pub decided: Option<Outcome>,
    /// The first resource the request is authorized as: (name, namespace).
    pub resource: Option<(String, String)>,
}

impl Trail {
    /// Notes the resource `plan` asks about, when the audit log will want it.
    pub(super) fn observe(&mut self, guard: &Guard, plan: &Plan) {
        if !guard.audit.enabled() {
            return;
        }
        self.resource = plan.records().iter().find_map(|attributes| {
            let resource = attributes.resource.as_ref()?;
            Some((resource.name.clone(), resource.namespace.clone()))
        });
    }
}

/// The request as it arrived, beside the trail: what the event needs of it.
pub(super) struct Arrived<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub version: Version,
    /// `X-Forwarded-For`'s addresses, if the audit log wants them.
    pub forwarded: Vec<IpAddr>,
}

impl<'a> Arrived<'a> {
    /// What the event will need of `request`, taken before it moves on.
    pub(super) fn new<B>(
        audit: &Audit,
        request: &http::Request<B>,
        method: &'a Method,
        uri: &'a Uri,
    ) -> Self {
        Self {
            method,
            uri,
            version: request.version(),
            forwarded: audit.forwarded_for(request.headers()),
        }
    }
}

impl Guard {
    /// Queues the audit event of a guarded request (never waits).
    pub(super) fn record_audit(
        &self,
        arrived: &Arrived<'_>,
        trail: &Trail,
        response: &Response<ProxyBody>,
        peer: &Peer,
        elapsed: Duration,
    ) {
        if !trail.guarded || !self.audit.enabled() {
            return;
        }
        let body_length = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        self.audit.record(&Request {
            method: arrived.method.as_str(),
            path: arrived.uri.path(),
            version: arrived.version,
            forwarded: &arrived.forwarded,
            peer: peer.addr,
            user: trail.user.as_deref(),
            status: response.status().as_u16(),
            body_length,
            elapsed,
            decision: trail.decided.as_ref().map(|outcome| Decision {
                allowed: outcome.allowed,
                source: outcome.source,
                rule: &outcome.reason,
            }),
            resource: trail
                .resource
                .as_ref()
                .map(|(name, namespace)| (name.as_str(), namespace.as_str())),
        });
    }
}
