//! The upstream flag group: where allowed requests go, which paths are guarded, and
//! the identity headers.

use std::path::PathBuf;

use http::{HeaderName, Uri};

use super::{args::UpstreamArgs, Problems};
use crate::{
    paths::PathPolicy,
    upstream::{IdentityHeaders, UpstreamOptions, UpstreamSettings},
};

pub(super) fn validate(
    args: UpstreamArgs,
    problems: &mut Problems,
) -> (UpstreamSettings, PathPolicy) {
    let UpstreamArgs {
        upstream,
        upstream_ca_file,
        upstream_client_cert_file,
        upstream_client_key_file,
        upstream_force_h2c,
        upstream_timeout,
        allow_paths,
        ignore_paths,
        auth_header_fields_enabled,
        auth_header_user_field_name,
        auth_header_groups_field_name,
        auth_header_groups_field_separator,
    } = args;

    let (url, unix_socket) = match upstream.as_deref().map(parse_upstream) {
        Some(parsed) => problems.or(parsed, (Uri::default(), None)),
        None => {
            problems.add("--upstream is required (e.g. http://127.0.0.1:9100/)");
            (Uri::default(), None)
        }
    };
    let https = url.scheme_str() == Some("https") && unix_socket.is_none();
    if upstream_ca_file.is_some() && !https {
        problems.add("--upstream-ca-file needs an https:// --upstream");
    }
    let client_cert = match (upstream_client_cert_file, upstream_client_key_file) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            problems.add("--upstream-client-cert-file needs --upstream-client-key-file");
            None
        }
        (None, Some(_)) => {
            problems.add("--upstream-client-key-file needs --upstream-client-cert-file");
            None
        }
    };
    if client_cert.is_some() && !https {
        problems.add("--upstream-client-cert-file needs an https:// --upstream");
    }
    if upstream_force_h2c && https {
        problems.add(
            "--upstream-force-h2c is for http:// or unix:// upstreams (https negotiates h2 by ALPN)",
        );
    }
    problems.positive("--upstream-timeout", upstream_timeout);

    let paths = problems.or(
        PathPolicy::new(&allow_paths, &ignore_paths),
        PathPolicy::default(),
    );

    let mut header_name = |flag: &str, value: &str, fallback: &'static str| {
        let name = HeaderName::try_from(value.trim())
            .map_err(|_| format!("{flag}: {value:?} is not a valid HTTP header name"));
        problems.or(name, HeaderName::from_static(fallback))
    };
    let identity = IdentityHeaders {
        enabled: auth_header_fields_enabled,
        user: header_name(
            "--auth-header-user-field-name",
            &auth_header_user_field_name,
            "x-remote-user",
        ),
        groups: header_name(
            "--auth-header-groups-field-name",
            &auth_header_groups_field_name,
            "x-remote-groups",
        ),
        separator: auth_header_groups_field_separator,
    };

    let settings = UpstreamSettings {
        url,
        options: UpstreamOptions {
            ca_file: upstream_ca_file,
            client_cert,
            force_h2c: upstream_force_h2c,
            unix_socket,
        },
        timeout: upstream_timeout,
        identity,
    };
    (settings, paths)
}

/// A `--upstream`: an http(s) URL with a host and no user info, or `unix:///socket`
/// (then the requests go to `http://localhost` over that socket).
fn parse_upstream(s: &str) -> Result<(Uri, Option<PathBuf>), String> {
    if let Some(path) = s.strip_prefix("unix://") {
        if !path.starts_with('/') || path.len() < 2 {
            return Err(format!("--upstream {s:?}: want unix:///absolute/path.sock"));
        }
        return Ok((
            Uri::from_static("http://localhost/"),
            Some(PathBuf::from(path)),
        ));
    }
    parse_http_upstream(s).map(|uri| (uri, None))
}

fn parse_http_upstream(s: &str) -> Result<Uri, String> {
    let uri: Uri = s
        .parse()
        .map_err(|e| format!("--upstream {s:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "--upstream {s:?} must start with http://, https:// or unix:// (e.g. \
                 http://127.0.0.1:9100/ or unix:///run/exporter.sock)"
            ))
        }
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("--upstream {s:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "--upstream {s:?}: user info in the URL is not supported"
        ));
    }
    // `http::Uri` takes any digits as a port (`:99999`); a connect would fail on it.
    let port = authority
        .as_str()
        .rsplit_once(':')
        .filter(|(host, _)| !host.starts_with('[') || host.ends_with(']'))
        .map(|(_, port)| port);
    if let Some(port) = port.filter(|p| !p.is_empty()) {
        if !matches!(port.parse::<u16>(), Ok(1..)) {
            return Err(format!(
                "--upstream {s:?}: port {port} is not between 1 and 65535"
            ));
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
