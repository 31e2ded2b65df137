//! The upstream flag group: where allowed requests go, which paths are guarded, and
//! the identity headers.

use std::path::PathBuf;

use http::{HeaderName, Uri};

use super::{
    listeners::{in_keys, key, Key, ListenerArgs, Source},
    Problems,
};
use crate::{
    paths::PathPolicy,
    upstream::{IdentityHeaders, UpstreamOptions, UpstreamSettings},
};

/// A listener's `upstream*`, `allowPaths`/`ignorePaths` and `authHeader*` settings;
/// problems name them as `source` does.
pub(super) fn validate(
    args: &ListenerArgs,
    source: Source,
    problems: &mut Problems,
) -> (UpstreamSettings, PathPolicy) {
    let name = |key: Key| key.name(source);
    let upstream_flag = name(key::upstream);
    let (url, unix_socket) = match args.upstream.as_deref() {
        Some(upstream) => problems.or(
            parse_upstream(upstream).map_err(|e| format!("{upstream_flag} {e}")),
            (Uri::default(), None),
        ),
        None => {
            problems.add(format!(
                "{upstream_flag} is required (e.g. http://127.0.0.1:9100/)"
            ));
            (Uri::default(), None)
        }
    };
    let https = url.scheme_str() == Some("https") && unix_socket.is_none();
    let (ca, cert, key) = (
        name(key::upstream_ca_file),
        name(key::upstream_client_cert_file),
        name(key::upstream_client_key_file),
    );
    let given = (
        args.upstream_ca_file.clone(),
        args.upstream_client_cert_file.clone(),
        args.upstream_client_key_file.clone(),
    );
    let (ca_file, client_cert) = if https {
        let client_cert = match (given.1, given.2) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                problems.add(format!("{cert} needs {key}"));
                None
            }
            (None, Some(_)) => {
                problems.add(format!("{key} needs {cert}"));
                None
            }
        };
        (given.0, client_cert)
    } else {
        // kube-rbac-proxy's transport for an http:// upstream never uses them (TrustyAI's
        // operator passes a CA file that way): accepted, said, and not read.
        let scheme = if unix_socket.is_some() {
            "a unix://"
        } else {
            "an http://"
        };
        for (flag, value) in [(ca, &given.0), (cert, &given.1), (key, &given.2)] {
            if value.is_some() {
                problems.warn(format!(
                    "{flag} has no effect on {scheme} {upstream_flag}: the connection to it \
                     is not TLS"
                ));
            }
        }
        (None, None)
    };
    if args.upstream_force_h2c && https {
        problems.add(format!(
            "{} is for http:// or unix:// upstreams (https negotiates h2 by ALPN)",
            name(key::upstream_force_h2c)
        ));
    }
    problems.positive(name(key::upstream_timeout), args.upstream_timeout);

    // `paths` names the flags; a file's listener names its keys.
    let paths = PathPolicy::new(&args.allow_paths, &args.ignore_paths).map_err(|e| match source {
        Source::Flags => e,
        Source::File => in_keys(&e),
    });
    let paths = problems.or(paths, PathPolicy::default());

    let mut header_name = |key: Key, value: &str, fallback: &'static str| {
        let name = HeaderName::try_from(value.trim()).map_err(|_| {
            format!(
                "{}: {value:?} is not a valid HTTP header name",
                key.name(source)
            )
        });
        problems.or(name, HeaderName::from_static(fallback))
    };
    let identity = IdentityHeaders {
        enabled: args.auth_header_fields_enabled,
        user: header_name(
            key::auth_header_user_field_name,
            &args.auth_header_user_field_name,
            "x-remote-user",
        ),
        groups: header_name(
            key::auth_header_groups_field_name,
            &args.auth_header_groups_field_name,
            "x-remote-groups",
        ),
        separator: args.auth_header_groups_field_separator.clone(),
    };

    let settings = UpstreamSettings {
        url,
        options: UpstreamOptions {
            ca_file,
            client_cert,
            force_h2c: args.upstream_force_h2c,
            unix_socket,
        },
        timeout: args.upstream_timeout,
        identity,
    };
    (settings, paths)
}

/// A `--upstream`: an http(s) URL with a host and no user info, or `unix:///socket`
/// (then the requests go to `http://localhost` over that socket).
pub(super) fn parse_upstream(s: &str) -> Result<(Uri, Option<PathBuf>), String> {
    if let Some(path) = s.strip_prefix("unix://") {
        if !path.starts_with('/') || path.len() < 2 {
            return Err(format!("{s:?}: want unix:///absolute/path.sock"));
        }
        return Ok((
            Uri::from_static("http://localhost/"),
            Some(PathBuf::from(path)),
        ));
    }
    parse_http_upstream(s).map(|uri| (uri, None))
}

fn parse_http_upstream(s: &str) -> Result<Uri, String> {
    let uri: Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "{s:?} must start with http://, https:// or unix:// (e.g. \
                 http://127.0.0.1:9100/ or unix:///run/exporter.sock)"
            ))
        }
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{s:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{s:?}: user info in the URL is not supported"));
    }
    // `http::Uri` takes any digits as a port (`:99999`); a connect would fail on it.
    let port = authority
        .as_str()
        .rsplit_once(':')
        .filter(|(host, _)| !host.starts_with('[') || host.ends_with(']'))
        .map(|(_, port)| port);
    if let Some(port) = port.filter(|p| !p.is_empty()) {
        if !matches!(port.parse::<u16>(), Ok(1..)) {
            return Err(format!("{s:?}: port {port} is not between 1 and 65535"));
        }
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        for good in [
            "http://127.0.0.1:9100/",
            "http://127.0.0.1:9100",
            "https://exporter.local:8443/base/",
            "http://[::1]:9100/",
        ] {
            assert!(parse_upstream(good).is_ok(), "{good}");
        }
        for bad in [
            "127.0.0.1:9100",
            "ftp://x/",
            "http:///metrics",
            "http://u:p@x/",
            "http://127.0.0.1:99999/",
            "http://127.0.0.1:0/",
            "/x",
        ] {
            assert!(parse_upstream(bad).is_err(), "{bad} should fail");
        }
    }
}
