//! The label sets of scrape-guard's own metrics, and the enums whose variants are
//! label values (each exported, and logged, as the text given).

use std::{fmt, sync::Arc};

use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder,
};

use crate::identity::Source;

/// An enum of label values, each exported as the text given (`Variant => "text"`).
macro_rules! label_values {
    ($(#[$meta:meta])* pub(crate) enum $name:ident { $($variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
        pub(crate) enum $name {
            $($variant,)+
        }

        impl $name {
            /// The label value, as exported (and logged).
            pub(crate) fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
                self.as_str().encode(encoder)
            }
        }
    };
}

label_values! {
    /// How an authentication ended (`result` of `scrape_guard_authentication_total`).
    pub(crate) enum Authn {
        Authenticated => "authenticated",
        Rejected => "rejected",
        Error => "error",
    }
}

label_values! {
    /// How an authorization ended (`result` of `scrape_guard_authorization_total`).
    pub(crate) enum Authz {
        Allowed => "allowed",
        Denied => "denied",
        Error => "error",
    }
}

label_values! {
    /// Which review the apiserver was sent (`review`).
    pub(crate) enum Review {
        TokenReview => "tokenreview",
        SubjectAccessReview => "subjectaccessreview",
    }
}

label_values! {
    /// Why a review was not sent (`reason` of `scrape_guard_reviews_limited_total`):
    /// the client's `--max-reviews-per-peer` is taken, or `--kube-api-qps` has no room.
    pub(crate) enum Limited {
        Peer => "peer",
        Rate => "rate",
    }
}

label_values! {
    /// Why a TLS handshake failed (`reason` of `scrape_guard_tls_handshake_failures_total`).
    pub(crate) enum HandshakeFailure {
        ClientCertificate => "client_certificate",
        ClientAlert => "client_alert",
        Incompatible => "incompatible",
        NotTls => "not_tls",
        Closed => "closed",
        Timeout => "timeout",
        Other => "other",
    }
}

label_values! {
    /// Why a connection was closed at once (`reason` of `scrape_guard_connections_refused_total`).
    pub(crate) enum Refusal {
        PerPeerLimit => "per_peer_limit",
    }
}

label_values! {
    /// Which connection was closed to make room (`reason` of
    /// `scrape_guard_connections_evicted_total`).
    pub(crate) enum Eviction {
        Handshake => "handshake",
        Unauthenticated => "unauthenticated",
        Idle => "idle",
    }
}

label_values! {
    /// The protocol a TLS connection agreed on with ALPN (`alpn` of
    /// `scrape_guard_tls_connections_total`); `none` when the client offered none.
    pub(crate) enum Alpn {
        H2 => "h2",
        Http11 => "http/1.1",
        None => "none",
    }
}

label_values! {
    /// Which review cache (`cache` of `scrape_guard_cache_entries`).
    pub(crate) enum Cache {
        Authentication => "authentication",
        Authorization => "authorization",
    }
}

label_values! {
    /// Which JWT key set (`key_set` of `scrape_guard_key_set_loaded`).
    pub(crate) enum KeySet {
        Oidc => "oidc",
    }
}

impl EncodeLabelValue for Source {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        self.as_str().encode(encoder)
    }
}

/// The listener a series is about; `None` encodes no label at all.
#[derive(Debug, Clone, Default, Hash, PartialEq, Eq)]
pub(super) struct ListenerLabel(pub(super) Option<Arc<str>>);

impl EncodeLabelSet for ListenerLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        match &self.0 {
            Some(name) => [("listener", &**name)].encode(encoder),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CodeLabels {
    #[prometheus(flatten)]
    pub(super) listener: ListenerLabel,
    pub(super) code: u16,
}

/// `result` (`Authn` or `Authz`) and `source`. The derive takes no type parameters.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub(super) struct OutcomeLabels<R> {
    pub(super) listener: ListenerLabel,
    pub(super) result: R,
    pub(super) source: Source,
}

impl<R: EncodeLabelValue + Copy> EncodeLabelSet for OutcomeLabels<R> {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        self.listener.encode(encoder)?;
        [("result", self.result)].encode(encoder)?;
        [("source", self.source)].encode(encoder)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReviewLabels {
    pub(super) review: Review,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct LimitedLabels {
    pub(super) review: Review,
    pub(super) reason: Limited,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CacheLabels {
    pub(super) cache: Cache,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct FileLabels {
    #[prometheus(flatten)]
    pub(super) listener: ListenerLabel,
    /// The flag the file was given with.
    pub(super) flag: &'static str,
    /// Its path (several, comma-separated, for a repeated flag).
    pub(super) file: String,
}

/// `reason` (`HandshakeFailure`, `Refusal` or `Eviction`).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub(super) struct ReasonLabels<R> {
    pub(super) listener: ListenerLabel,
    pub(super) reason: R,
}

impl<R: EncodeLabelValue + Copy> EncodeLabelSet for ReasonLabels<R> {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        self.listener.encode(encoder)?;
        [("reason", self.reason)].encode(encoder)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AlpnLabels {
    #[prometheus(flatten)]
    pub(super) listener: ListenerLabel,
    pub(super) alpn: Alpn,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KeySetLabels {
    pub(super) key_set: KeySet,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BuildLabels {
    pub(super) version: &'static str,
}
