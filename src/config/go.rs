//! Values written the way Go's standard library reads them, because kube-rbac-proxy
//! manifests pass them: `net.Listen` addresses, `strconv.ParseBool` booleans and
//! `time.ParseDuration` durations.

use std::{fmt, time::Duration};

/// A Go `net.Listen` address: host (possibly empty, an IP, or a name) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    /// Empty means every interface, as in Go's ":8443".
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses the forms Go's `net.SplitHostPort` accepts.
pub(super) fn parse_listen_address(s: &str) -> Result<ListenAddress, String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: missing ']' in address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("{s:?}: missing port after ']'"))?;
        (host, port)
    } else {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?}: missing port in address (e.g. :8443)"))?;
        if host.contains(':') {
            return Err(format!(
                "{s:?}: too many colons in address (write IPv6 as [::1]:8443)"
            ));
        }
        (host, port)
    };
    if host.contains(['[', ']', ' ', '/']) {
        return Err(format!("{s:?}: invalid host {host:?}"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("{s:?}: invalid port {port:?}"))?;
    Ok(ListenAddress {
        host: host.to_owned(),
        port,
    })
}

/// Go's `strconv.ParseBool`.
pub(super) fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (true or false)")),
    }
}

/// Go's `time.ParseDuration` ("1h30m", "1.5s", "250ms"), for non-negative values.
pub(super) fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 30s, 2m, 1h30m, 500ms)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(bad());
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_in_every_go_form() {
        let table = [
            (":8443", "", 8443),
            ("0.0.0.0:8443", "0.0.0.0", 8443),
            ("[::]:8443", "::", 8443),
            ("[10.1.2.3]:9100", "10.1.2.3", 9100),
            ("localhost:8443", "localhost", 8443),
            ("[fe80::1%eth0]:1", "fe80::1%eth0", 1),
            ("127.0.0.1:0", "127.0.0.1", 0),
        ];
        for (input, host, port) in table {
            let parsed = parse_listen_address(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                parsed,
                ListenAddress {
                    host: host.into(),
                    port
                },
                "{input}"
            );
        }
        for bad in [
            "8443",
            "::1:8443",
            "[::1]8443",
            "[::1",
            "host:port",
            ":70000",
            "",
        ] {
            assert!(parse_listen_address(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn go_booleans() {
        for yes in ["1", "t", "T", "true", "TRUE", "True"] {
            assert_eq!(parse_go_bool(yes), Ok(true), "{yes}");
        }
        for no in ["0", "f", "F", "false", "FALSE", "False"] {
            assert_eq!(parse_go_bool(no), Ok(false), "{no}");
        }
        assert!(parse_go_bool("yes").is_err());
    }

    #[test]
    fn go_durations() {
        let table = [
            ("0", 0.0),
            ("2m", 120.0),
            ("10s", 10.0),
            ("1h30m", 5400.0),
            ("1.5s", 1.5),
            ("250ms", 0.25),
            ("100us", 0.0001),
        ];
        for (input, seconds) in table {
            let parsed = parse_go_duration(input).unwrap_or_else(|e| panic!("{e}"));
            assert!((parsed.as_secs_f64() - seconds).abs() < 1e-9, "{input}");
        }
        for bad in ["", "-1s", "10", "1d", "s", "1.2.3s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad} should fail");
        }
    }
}
