//! Rewrite values: what `--config-file`'s `rewrites` read from a request (query
//! parameter, header), each of which becomes an attribute record to authorize.
//!
//! Every value the upstream will see is reviewed, so one we cannot read is a 400, not
//! skipped. Values are de-duplicated and capped: a request must not be able to turn
//! its own size into that size squared in memory, or into thousands of reviews.

use std::collections::HashSet;

use http::{HeaderMap, Uri};

use crate::error::ProxyError;

/// Distinct rewrite values one request may carry. Each is a SubjectAccessReview of its
/// own (all must allow); real tenancy proxies send one namespace per query.
pub(super) const MAX_VALUES: usize = 32;

/// The distinct values of the rewrite's query parameter and header, in request order.
/// 400 if there are none, if one cannot be read, or if there are more than `MAX_VALUES`.
pub(super) fn values(
    query: Option<&str>,
    header: Option<&str>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Vec<String>, ProxyError> {
    let mut values = Vec::new();
    if let Some(param) = query {
        let found = query_values(uri.query().unwrap_or_default(), param).ok_or(
            ProxyError::BadRequest("the rewrite's query parameter is not valid UTF-8"),
        )?;
        values.extend(found);
    }
    if let Some(header) = header {
        // Every value the upstream will see must be reviewed: one we cannot read
        // is a 400, not skipped.
        for value in headers.get_all(header) {
            let value = value.to_str().map_err(|_| {
                ProxyError::BadRequest("the rewrite's header value is not visible ASCII")
            })?;
            values.push(value.to_owned());
        }
    }
    if values.is_empty() {
        return Err(ProxyError::BadRequest(
            "the configured rewrite found no value in the request",
        ));
    }
    // One review per distinct value: repeats add nothing but cost.
    let mut seen = HashSet::new();
    values.retain(|v| seen.insert(v.clone()));
    if values.len() > MAX_VALUES {
        return Err(ProxyError::BadRequest(
            "more distinct rewrite values than scrape-guard reviews for one request (32)",
        ));
    }
    Ok(values)
}

/// Every value of `name` in a raw query string, percent-decoded (`+` is a space).
/// `None` if a value of `name` does not decode to UTF-8: it could not be reviewed as
/// the upstream will read it.
pub(super) fn query_values(query: &str, name: &str) -> Option<Vec<String>> {
    let mut values = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(key).as_deref() == Some(name) {
            values.push(decode(value)?);
        }
    }
    Some(values)
}

fn decode(s: &str) -> Option<String> {
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(high), Some(low)) => {
                out.push(high << 4 | low);
                i += 2;
            }
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(
            query_values("a=1&b=2&a=x%20y&a=c+d&a", "a").unwrap(),
            ["1", "x y", "c d", ""]
        );
        assert_eq!(decode("%zz%4").unwrap(), "%zz%4");
        assert!(
            query_values("a=%FF", "a").is_none(),
            "not UTF-8: refused, not replaced"
        );
        assert_eq!(
            query_values("b=%FF&a=1", "a").unwrap(),
            ["1"],
            "other params do not matter"
        );
    }
}
