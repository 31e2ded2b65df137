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
    tls::{Curves, TlsPolicy, TlsSource},
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

/// CPUs this process may use: affinity and cgroup CPU quota included.
pub(super) fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}
