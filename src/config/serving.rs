//! The serving flag group: the process's TLS policy and HTTP limits, and the TLS files
//! of a listener. (The flags' listener's own flags are read in `listeners.rs`.)

use std::{path::PathBuf, time::Duration};

use super::{
    args::ServingArgs,
    listeners::{key, Source},
    Problems,
};
use crate::{
    server::HttpSettings,
    tls::{Curves, SniCertKey, TlsPolicy, TlsSource},
};

/// What the serving flags decide for the whole process.
pub(super) struct Serving {
    pub(super) proxy_endpoints_port: Option<u16>,
    pub(super) worker_threads: usize,
    pub(super) shutdown_grace: Duration,
    /// Every listener's, the probe port's and the auth endpoint's.
    pub(super) tls_policy: TlsPolicy,
    pub(super) http: HttpSettings,
    /// `--listeners-file`, read by `listeners.rs`.
    pub(super) listeners_file: Option<PathBuf>,
}

pub(super) fn validate(args: ServingArgs, problems: &mut Problems) -> Serving {
    let ServingArgs {
        // The flags' listener's (`listeners::from_flags`).
        secure_listen_address: _,
        tls_cert_file: _,
        client_ca_file: _,
        tls_private_key_file: _,
        tls_sni_cert_key: _,
        tls_min_version,
        tls_cipher_suites,
        tls_curve_preferences,
        http2_disable,
        http2_max_concurrent_streams,
        http2_max_size,
        max_request_header_bytes,
        max_connections,
        max_connections_per_peer,
        worker_threads,
        tls_handshake_timeout,
        header_read_timeout,
        idle_timeout,
        proxy_endpoints_port,
        shutdown_grace,
        listeners_file,
    } = args;

    let policy =
        TlsPolicy::from_flags(&tls_min_version, &tls_cipher_suites, &mut problems.warnings);
    let policy = problems.or(policy, TlsPolicy::default());
    let policy = policy
        .with_curves(problems.or(Curves::from_flag(&tls_curve_preferences), Curves::default()));
    let http2_disable = http2_disable.unwrap_or(false);
    let http2_max_concurrent_streams = http2_max_concurrent_streams.unwrap_or(100);

    for (flag, value) in [
        ("--tls-handshake-timeout", tls_handshake_timeout),
        ("--header-read-timeout", header_read_timeout),
        ("--idle-timeout", idle_timeout),
    ] {
        problems.positive(flag, value);
    }
    if !(16_384..=16_777_215).contains(&http2_max_size) {
        problems.add(format!(
            "--http2-max-size {http2_max_size} must be between 16384 and 16777215"
        ));
    }
    if max_request_header_bytes < 8192 {
        problems.add("--max-request-header-bytes must be at least 8192");
    }
    problems.at_least_one("--max-connections", max_connections);
    problems.at_least_one("--worker-threads", worker_threads);
    problems.at_least_one(
        "--http2-max-concurrent-streams",
        usize::try_from(http2_max_concurrent_streams).unwrap_or(usize::MAX),
    );

    Serving {
        proxy_endpoints_port: (proxy_endpoints_port != 0).then_some(proxy_endpoints_port),
        worker_threads: worker_threads.min(available_cpus()),
        shutdown_grace,
        tls_policy: policy,
        listeners_file,
        http: HttpSettings {
            http2: !http2_disable,
            max_concurrent_streams: http2_max_concurrent_streams,
            http2_max_size,
            max_header_bytes: max_request_header_bytes,
            max_connections,
            max_connections_per_peer: match max_connections_per_peer {
                // A quarter of the slots always left to other clients.
                0 => (max_connections - max_connections / 4).max(1),
                n => n.min(max_connections),
            },
            handshake_timeout: tls_handshake_timeout,
            header_read_timeout,
            idle_timeout,
        },
    }
}

/// A listener's `--tls-cert-file` and `--tls-private-key-file`: both, or neither for a
/// self-signed pair.
pub(super) fn tls_source(
    cert: Option<PathBuf>,
    private_key: Option<PathBuf>,
    source: Source,
    problems: &mut Problems,
) -> TlsSource {
    let (cert_name, key_name) = (
        key::tls_cert_file.name(source),
        key::tls_private_key_file.name(source),
    );
    match (cert, private_key) {
        (Some(cert), Some(key)) => TlsSource::Files { cert, key },
        (None, None) => TlsSource::SelfSigned,
        (Some(_), None) => {
            problems.add(format!("{cert_name} needs {key_name}"));
            TlsSource::SelfSigned
        }
        (None, Some(_)) => {
            problems.add(format!("{key_name} needs {cert_name}"));
            TlsSource::SelfSigned
        }
    }
}

/// A listener's `--tls-sni-cert-key` values (`cert,key[:name,...]`, component-base's
/// `NamedCertKey`); each malformed one is a problem naming the flag and the value.
pub(super) fn sni_pairs(
    values: &[String],
    source: Source,
    problems: &mut Problems,
) -> Vec<SniCertKey> {
    let flag = key::tls_sni_cert_key.name(source);
    let mut pairs = Vec::new();
    for value in values {
        match parse_sni_cert_key(value) {
            Ok(pair) => {
                let addresses: Vec<&String> = pair
                    .names
                    .iter()
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect();
                if !addresses.is_empty() {
                    problems.warn(format!(
                        "{flag} {value:?}: {addresses:?} never match: clients do not send an IP \
                         address as SNI, and a connection without SNI gets the default \
                         certificate (k8s.io/apiserver would serve this pair to connections \
                         made to that local address)"
                    ));
                }
                pairs.push(pair);
            }
            Err(e) => problems.add(format!("{flag} {value:?}: {e}")),
        }
    }
    pairs
}

/// One `cert,key[:name,...]`, split as component-base's `NamedCertKey.Set` splits it:
/// at the first `:`, then at commas, each part trimmed.
fn parse_sni_cert_key(value: &str) -> Result<SniCertKey, String> {
    let (files, names) = match value.split_once(':') {
        Some((files, names)) => {
            let names = names.trim();
            if names.is_empty() {
                return Err("empty names list after ':' (give names, or no ':')".into());
            }
            let names = names.split(',').map(|n| n.trim().to_owned()).collect();
            (files, names)
        }
        None => (value, Vec::new()),
    };
    let files: Vec<&str> = files.trim().split(',').map(str::trim).collect();
    match files[..] {
        [cert, key] if !cert.is_empty() && !key.is_empty() => Ok(SniCertKey {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
            names,
        }),
        _ => Err(
            "expected the certificate and key files separated by a comma \
                  (CERT,KEY or CERT,KEY:NAME,...)"
                .into(),
        ),
    }
}

/// CPUs this process may use: affinity and cgroup CPU quota included.
pub(super) fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_cert_key_values_split_as_component_base_splits_them() {
        let pair = parse_sni_cert_key(" a.crt , a.key : x.test, *.y.test ").unwrap();
        assert_eq!(pair.cert, PathBuf::from("a.crt"));
        assert_eq!(pair.key, PathBuf::from("a.key"));
        assert_eq!(pair.names, ["x.test", "*.y.test"]);
        assert_eq!(pair.to_string(), "a.crt,a.key:x.test,*.y.test");
        assert!(parse_sni_cert_key("a.crt,a.key").unwrap().names.is_empty());
        for bad in [
            "a.crt",
            "a.crt,a.key,b",
            "a.crt,a.key:",
            "a.crt,a.key: ",
            ",a.key",
            "",
        ] {
            assert!(parse_sni_cert_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn problems_name_the_flag_or_key_and_the_value() {
        let mut problems = Problems::default();
        let values = ["a.crt".to_owned(), "b.crt,b.key:10.0.0.1".to_owned()];
        let pairs = sni_pairs(&values, Source::File, &mut problems);
        assert_eq!(pairs.len(), 1);
        assert_eq!(problems.errors.len(), 1);
        assert!(
            problems.errors[0].starts_with("tlsSNICertKey \"a.crt\""),
            "{:?}",
            problems.errors
        );
        assert!(
            problems.warnings[0].contains("10.0.0.1"),
            "{:?}",
            problems.warnings
        );
    }
}
