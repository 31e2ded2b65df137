//! `-h`: one screen of the flags a sidecar sets; `--help` keeps every flag and its
//! whole text.

use super::Cli;

/// The flags `-h` shows, what a sidecar sets, each with a one-line help of its own
/// (`--help` keeps the whole text).
const SIDECAR_FLAGS: &[(&str, &str)] = &[
    ("upstream", "The exporter's URL (required)"),
    (
        "secure_listen_address",
        "TLS address to serve on (0.0.0.0:8443)",
    ),
    (
        "tls_cert_file",
        "PEM serving certificate (default: self-signed)",
    ),
    ("tls_private_key_file", "PEM private key of --tls-cert-file"),
    (
        "proxy_endpoints_port",
        "Port for /healthz, /readyz, /metrics (0: off)",
    ),
    ("allow_paths", "Paths served (Go globs); others are 404"),
    ("config_file", "kube-rbac-proxy's --config-file"),
];

impl Cli {
    /// The command line, with `-h` cut to one screen: the flags of a sidecar.
    pub fn command_with_short_help() -> clap::Command {
        <Self as clap::CommandFactory>::command()
            .mut_args(|arg| {
                let short = SIDECAR_FLAGS
                    .iter()
                    .find(|(id, _)| *id == arg.get_id().as_str());
                match short {
                    Some((_, short)) => match arg.get_long_help().or(arg.get_help()).cloned() {
                        Some(long) => arg.long_help(long).help(*short),
                        None => arg.help(*short),
                    },
                    None => arg.hide_short_help(true),
                }
            })
            .after_help("These are the flags a sidecar usually sets; --help lists every flag.")
            .after_long_help("Each flag's row, and its origin: docs/flags.md.")
    }

    /// Parses the process's arguments (exits with clap's message on an error).
    pub fn parse_args() -> Self {
        let matches = Self::command_with_short_help().get_matches();
        <Self as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}
