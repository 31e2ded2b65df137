//! `--version`: k8s.io/component-base's `verflag` values and what each prints.

use super::super::go::parse_go_bool;

/// What `--version` asks for (k8s.io/component-base's `verflag` values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionFlag {
    /// `--version`, `--version=true`: print and exit.
    Print,
    /// `--version=raw`: print the build details and exit.
    Raw,
    /// `--version=false`: run.
    Off,
    /// `--version=vX.Y.Z...`: run, reporting this version.
    Report(String),
}

impl VersionFlag {
    /// What to print before exiting, or `None` to run. A version to report must keep
    /// scrape-guard's own X.Y.Z, as k8s.io/component-base requires of its binaries.
    pub fn output(&self) -> Result<Option<String>, String> {
        let ours = env!("CARGO_PKG_VERSION");
        match self {
            Self::Print => Ok(Some(format!("scrape-guard v{ours}"))),
            Self::Raw => {
                let mut parts = ours.split('.');
                let (major, minor) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let arch = match std::env::consts::ARCH {
                    "x86_64" => "amd64",
                    "aarch64" => "arm64",
                    other => other,
                };
                Ok(Some(format!(
                    "version.Info{{Major:\"{major}\", Minor:\"{minor}\", GitVersion:\"v{ours}\", \
                     GitCommit:\"\", GitTreeState:\"\", BuildDate:\"\", GoVersion:\"\", \
                     Compiler:\"rustc\", Platform:\"{}/{arch}\"}}",
                    std::env::consts::OS
                )))
            }
            Self::Off => Ok(None),
            Self::Report(v) => {
                let core = v[1..].split(['-', '+']).next().unwrap_or_default();
                if core == ours {
                    Ok(None)
                } else {
                    Err(format!(
                        "--version={v}: a reported version must keep scrape-guard's own \
                         {ours} (only -pre or +build may be added)"
                    ))
                }
            }
        }
    }
}

pub(super) fn parse_version_flag(s: &str) -> Result<VersionFlag, String> {
    match s {
        "raw" => Ok(VersionFlag::Raw),
        v if v.starts_with('v') => Ok(VersionFlag::Report(v.to_owned())),
        other => parse_go_bool(other).map(|print| {
            if print {
                VersionFlag::Print
            } else {
                VersionFlag::Off
            }
        }),
    }
}
