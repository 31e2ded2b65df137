//! Failed TLS handshakes, explained. "remote error: tls: bad certificate" on the
//! scraper's side must be answerable from ours: each failure gets a reason a person can
//! act on, a counter by reason in the own metrics, and a log line — within the
//! process's one budget for what unauthenticated clients cause (`logging.rs`: a few
//! lines a minute, shared with 401s and the TLS library's own warnings), so a port
//! scan cannot flood the log; the rest are counted and summarised. `LogBudget` is that
//! budget for the other per-connection events.

use std::net::SocketAddr;

use rustls::{AlertDescription, CertificateError};

use crate::{
    logging::{cut, UNAUTHENTICATED},
    metrics::{HandshakeFailure, Metrics},
};

/// Why a handshake failed: a short label for the metric, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    pub(super) reason: HandshakeFailure,
    pub(super) advice: String,
    /// Worth a warning: a client that means to talk to us and cannot. Scanners, TCP
    /// probes and clients that hang up are counted and logged at debug only.
    pub(super) actionable: bool,
}

impl Failure {
    fn new(reason: HandshakeFailure, advice: impl Into<String>, actionable: bool) -> Self {
        Self {
            reason,
            advice: advice.into(),
            actionable,
        }
    }

    /// The handshake did not finish within `--tls-handshake-timeout`.
    pub(super) fn timeout() -> Self {
        Self::new(
            HandshakeFailure::Timeout,
            "no complete TLS handshake within --tls-handshake-timeout",
            false,
        )
    }

    /// Classifies the error `TlsAcceptor::accept` returned.
    pub(super) fn of(error: &std::io::Error) -> Self {
        let Some(tls) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return Self::new(
                HandshakeFailure::Closed,
                format!("connection closed or broken during the handshake ({error})"),
                false,
            );
        };
        match tls {
            rustls::Error::InvalidCertificate(problem) => client_certificate(problem),
            rustls::Error::AlertReceived(alert) => Self::new(
                HandshakeFailure::ClientAlert,
                match alert {
                    AlertDescription::BadCertificate
                    | AlertDescription::UnknownCA
                    | AlertDescription::CertificateUnknown
                    | AlertDescription::CertificateExpired => format!(
                        "the client refused our serving certificate ({alert:?}): does it trust \
                         the CA that signed --tls-cert-file, and is the name it dials in the \
                         certificate?"
                    ),
                    other => format!("the client aborted the handshake ({other:?})"),
                },
                true,
            ),
            rustls::Error::PeerIncompatible(why) => Self::new(
                HandshakeFailure::Incompatible,
                format!(
                    "the client offers no TLS version, cipher suite or curve we serve \
                     ({why:?}); see --tls-min-version, --tls-cipher-suites and \
                     --tls-curve-preferences"
                ),
                true,
            ),
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                Self::new(
                    HandshakeFailure::NotTls,
                    "the client does not speak TLS here",
                    false,
                )
            }
            other => Self::new(HandshakeFailure::Other, other.to_string(), true),
        }
    }
}

/// A client certificate rustls refused, in the terms of the fix.
fn client_certificate(problem: &CertificateError) -> Failure {
    let advice = match problem {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the client certificate has expired: renew it".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the client certificate is not valid yet: check its notBefore and the clocks".to_owned()
        }
        CertificateError::UnknownIssuer => {
            "the client certificate is not signed by a CA in --client-ca-file".to_owned()
        }
        CertificateError::BadSignature => {
            "the client certificate is not signed by a CA in --client-ca-file (its issuer \
             has the name of one there, but the signature does not verify)"
                .to_owned()
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the client certificate is not for client authentication: reissue it with \
             extendedKeyUsage=clientAuth"
                .to_owned()
        }
        CertificateError::Other(other) if other.to_string().contains("UnsupportedCertVersion") => {
            // `openssl x509 -req` makes v1 certificates unless given extensions; Go and
            // kube-apiserver accept them as client certificates, rustls (webpki) does not.
            "the client certificate is X.509 v1, which is not accepted: reissue it as v3 \
             (openssl x509 -req … -extfile with extendedKeyUsage=clientAuth)"
                .to_owned()
        }
        other => format!("the client certificate was refused: {other}"),
    };
    Failure::new(HandshakeFailure::ClientCertificate, advice, true)
}

/// A kind of per-connection event whose log lines go through the process's one
/// budget for what unauthenticated clients cause (`logging::UNAUTHENTICATED`); the
/// caller's metric counts every event.
#[derive(Debug)]
pub(super) struct LogBudget;

impl LogBudget {
    pub(super) fn new() -> Self {
        Self
    }

    /// Whether a line about this event may be logged.
    pub(super) fn allow(&self, what: &'static str) -> bool {
        UNAUTHENTICATED.allow(what)
    }
}

/// Counts every failed handshake; logs a few per minute.
#[derive(Debug)]
pub(super) struct Reporter {
    budget: LogBudget,
}

impl Reporter {
    pub(super) fn new() -> Self {
        Self {
            budget: LogBudget::new(),
        }
    }

    pub(super) fn report(&self, failure: &Failure, peer: SocketAddr, metrics: &Metrics) {
        metrics.handshake_failed(failure.reason);
        if !self.budget.allow("TLS handshake failures") {
            return;
        }
        let reason = failure.reason.as_str();
        // The advice can quote the TLS library's error, which can quote the client.
        let advice = cut(&failure.advice);
        if failure.actionable {
            tracing::warn!(%peer, reason, "TLS handshake failed: {advice}");
        } else {
            tracing::debug!(%peer, reason, "TLS handshake failed: {advice}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(error: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, error)
    }

    #[test]
    fn reasons_name_the_fix() {
        let table = [
            (
                io(rustls::Error::InvalidCertificate(CertificateError::Expired)),
                "client_certificate",
                "expired",
            ),
            (
                io(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer,
                )),
                "client_certificate",
                "--client-ca-file",
            ),
            (
                io(rustls::Error::AlertReceived(AlertDescription::UnknownCA)),
                "client_alert",
                "--tls-cert-file",
            ),
            (
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                "closed",
                "closed",
            ),
            (
                io(rustls::Error::PeerIncompatible(
                    rustls::PeerIncompatible::NoKxGroupsInCommon,
                )),
                "incompatible",
                "--tls-curve-preferences",
            ),
        ];
        for (error, reason, advice) in table {
            let failure = Failure::of(&error);
            assert_eq!(failure.reason.as_str(), reason, "{error}");
            assert!(failure.advice.contains(advice), "{}", failure.advice);
        }
    }

    #[test]
    fn only_a_few_lines_a_minute_but_every_failure_counted() {
        let metrics = Metrics::new();
        let reporter = Reporter::new();
        let peer: SocketAddr = "10.0.0.1:1234".parse().unwrap();
        for _ in 0..100 {
            reporter.report(&Failure::timeout(), peer, &metrics);
        }
        // The budget itself is tested in `logging.rs`; it is shared by the process.
        let text = metrics.encode(0, 0);
        assert!(
            text.contains("scrape_guard_tls_handshake_failures_total{reason=\"timeout\"} 100"),
            "{text}"
        );
    }
}
