//! Every way a request can fail, and the one place each becomes an HTTP response.
//!
//! The pipeline returns `Result<_, ProxyError>` from every stage; `into_response` is
//! the only code that chooses a status code or writes an error body. Details useful to
//! an operator go to the log (see `guard.rs`), not to the client — with one deliberate
//! exception: the 403 body repeats the apiserver's own `forbidden: User "…" cannot get
//! path "…"` message, because that exact text is what people search for when a scrape
//! is denied, and it names the subject the fix must be granted to.

use std::{fmt, time::Duration};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;

use crate::body::{self, ProxyBody};

/// A failed request. Each variant maps to exactly one status code.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request target cannot be authorized and forwarded as-is.
    #[error("bad request: {0}")]
    BadRequest(&'static str),

    /// No usable credentials, or the apiserver rejected them.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),

    /// Authenticated, but the authorizer said no (or had no opinion). `action` is
    /// the apiserver's wording: `get path "/metrics"`.
    #[error("forbidden: User {user:?} cannot {action}")]
    Forbidden {
        user: String,
        action: String,
        reason: String,
    },

    /// The path is outside `--allow-paths`, or no route of `upstreams:` takes it.
    #[error("path not in --allow-paths or any route")]
    NotFound,

    /// Go's ServeMux redirect (`upstreams:`): an unclean path, or a subtree's root
    /// without its slash. The location is a path (and query) on this host.
    #[error("moved permanently to {0}")]
    MovedPermanently(String),

    /// The apiserver could not give an answer: fail closed.
    #[error("apiserver unavailable: {0}")]
    ApiserverUnavailable(String),

    /// The upstream refused, reset or otherwise broke the exchange.
    #[error("upstream unavailable: {0}")]
    UpstreamUnavailable(String),

    /// The upstream did not send response headers within the request's budget
    /// (`--upstream-timeout`, or less when the scraper said how long it waits).
    #[error("exporter slow: {0}")]
    UpstreamTimeout(Spent),

    /// Authentication and authorization used up their share of the scrape's budget
    /// (`X-Prometheus-Scrape-Timeout-Seconds`): answered before the scraper gives up,
    /// and never forwarded (fail closed).
    #[error("{blame}: {0}", blame = .0.reviews_blame())]
    ReviewsTimedOut(Spent),

    /// A bug or an impossible state; never a reason to forward.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProxyError {
    /// The status code this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MovedPermanently(_) => StatusCode::MOVED_PERMANENTLY,
            Self::ApiserverUnavailable(_) | Self::ReviewsTimedOut(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response sent to the client. The only status/body mapping in the crate.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let response = match &self {
            Self::Unauthenticated(_) => {
                let mut response = status_json(status, "Unauthorized", "Unauthorized");
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"scrape-guard\""),
                );
                response
            }
            Self::Forbidden { .. } => status_json(status, "Forbidden", &self.to_string()),
            Self::ApiserverUnavailable(_) => {
                let mut response = status_json(
                    status,
                    "ServiceUnavailable",
                    "the Kubernetes API server could not be reached to authenticate or \
                     authorize this request",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            // Go's http.NotFound body, which kube-rbac-proxy sends for --allow-paths misses.
            Self::NotFound => text(status, "404 page not found\n"),
            Self::MovedPermanently(location) => {
                let mut response = text(status, "301 moved permanently\n");
                // A path of ours (the request's, cleaned); a bad one is left out.
                if let Ok(value) = HeaderValue::from_str(location) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                response
            }
            Self::ReviewsTimedOut(_) => {
                let mut response = status_json(
                    status,
                    "ServiceUnavailable",
                    "authentication and authorization took this scrape's share of its \
                     timeout: the Kubernetes API server is slow or reviews are queued",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            Self::BadRequest(why) => text(status, &format!("400 bad request: {why}\n")),
            Self::UpstreamUnavailable(_) => text(status, "502 bad gateway: upstream unavailable\n"),
            Self::UpstreamTimeout(_) => text(status, "504 gateway timeout: exporter too slow\n"),
            Self::Internal(_) => text(status, "500 internal server error\n"),
        };
        response
    }
}

/// Where a request's time went, for the one line logged when its budget ran out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    /// What the request had: the scraper's timeout less the margin, bounded by
    /// `--upstream-timeout` (or, without a scraper's timeout, the exporter's
    /// `--upstream-timeout` alone).
    pub budget: Duration,
    /// Authentication and authorization, from the request's start.
    pub reviews: Duration,
    /// Of `reviews`, waiting for a turn to send one (rate limit, fair turns, the cap
    /// on reviews in flight).
    pub queued: Duration,
    /// Waiting for the exporter's response headers.
    pub exporter: Duration,
}

impl Spent {
    /// What held up reviews that ran out of time: their turn, or the apiserver.
    pub fn reviews_blame(&self) -> &'static str {
        if self.queued * 2 >= self.reviews {
            "reviews queued"
        } else {
            "apiserver slow"
        }
    }
}

impl fmt::Display for Spent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_millis();
        write!(
            f,
            "budget {} ms: reviews {} ms (queued {} ms), exporter {} ms",
            ms(self.budget),
            ms(self.reviews),
            ms(self.queued),
            ms(self.exporter)
        )
    }
}

/// The body of a Kubernetes `metav1.Status` failure, field for field as the apiserver
/// writes it (including the empty `metadata` and `details`).
#[derive(Serialize)]
struct Status<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Empty,
    status: &'static str,
    message: &'a str,
    reason: &'a str,
    details: Empty,
    code: u16,
}

#[derive(Serialize)]
struct Empty {}

fn status_json(status: StatusCode, reason: &str, message: &str) -> Response<ProxyBody> {
    let body = Status {
        kind: "Status",
        api_version: "v1",
        metadata: Empty {},
        status: "Failure",
        message,
        reason,
        details: Empty {},
        code: status.as_u16(),
    };
    // Serializing a struct of strings and integers cannot fail.
    let mut json = serde_json::to_vec(&body).unwrap_or_default();
    json.push(b'\n');
    build(status, "application/json", Bytes::from(json))
}

fn text(status: StatusCode, body: &str) -> Response<ProxyBody> {
    build(
        status,
        "text/plain; charset=utf-8",
        Bytes::copy_from_slice(body.as_bytes()),
    )
}

fn build(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http_body_util::BodyExt;

    pub(crate) async fn body_of(response: Response<ProxyBody>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn every_error_maps_to_its_status() {
        let table: Vec<(ProxyError, u16)> = vec![
            (ProxyError::BadRequest("x"), 400),
            (ProxyError::Unauthenticated("x".into()), 401),
            (
                ProxyError::Forbidden {
                    user: "u".into(),
                    action: "get path \"/metrics\"".into(),
                    reason: String::new(),
                },
                403,
            ),
            (ProxyError::NotFound, 404),
            (ProxyError::ApiserverUnavailable("x".into()), 503),
            (ProxyError::UpstreamUnavailable("x".into()), 502),
            (ProxyError::UpstreamTimeout(Spent::default()), 504),
            (ProxyError::ReviewsTimedOut(Spent::default()), 503),
            (ProxyError::Internal("x".into()), 500),
        ];
        for (error, want) in table {
            let name = format!("{error:?}");
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), want, "{name}");
        }
    }

    #[tokio::test]
    async fn unauthorized_challenges_for_a_bearer_token() {
        let response = ProxyError::Unauthenticated("token expired".into()).into_response();
        assert!(response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        let body = body_of(response).await;
        assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");
        assert!(!body.contains("expired"), "details stay in the log: {body}");
    }

    #[tokio::test]
    async fn apiserver_trouble_is_a_status_json_503() {
        let response = ProxyError::ApiserverUnavailable("connect refused".into()).into_response();
        let body = body_of(response).await;
        assert!(body.contains("\"reason\":\"ServiceUnavailable\""), "{body}");
        assert!(body.contains("\"code\":503"), "{body}");
        assert!(!body.contains("refused"), "details stay in the log: {body}");
    }

    #[tokio::test]
    async fn not_found_is_gos_plain_text() {
        assert_eq!(
            body_of(ProxyError::NotFound.into_response()).await,
            "404 page not found\n"
        );
    }
}
