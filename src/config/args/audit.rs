//! The flags the OpenShift AI fork of kube-rbac-proxy adds for its audit log
//! (red-hat-data-services/kube-rbac-proxy, `cmd/kube-rbac-proxy/app/options`: the
//! "audit logging" flag set), same names and defaults, and where the log goes (ours).
//! What they mean: `audit.rs` and docs/audit.md.

use clap::{ArgAction, Args as ClapArgs};

use crate::{audit::Profile, config::go::parse_go_bool};

/// The fork's audit flags.
#[derive(Debug, Default, ClapArgs)]
#[command(next_help_heading = "Compatibility: the OpenShift AI fork's audit log")]
pub struct AuditArgs {
    /// Audit log profile: none (no audit log) or metadata (one OCSF JSON line per
    /// request that reaches authentication: who, what, the answer; never a body).
    #[arg(long, env = "SCRAPE_GUARD_AUDIT_LOG_PROFILE", value_name = "PROFILE", default_value = "none",
          value_parser = parse_profile)]
    pub audit_log_profile: Profile,

    /// The resource name audit events name (default: the name the request was
    /// authorized with, if any).
    #[arg(
        long,
        env = "SCRAPE_GUARD_AUDIT_RESOURCE_NAME",
        value_name = "NAME",
        default_value = ""
    )]
    pub audit_resource_name: String,

    /// The resource namespace audit events name (default: the namespace the request
    /// was authorized with, if any).
    #[arg(
        long,
        env = "SCRAPE_GUARD_AUDIT_RESOURCE_NAMESPACE",
        value_name = "NAMESPACE",
        default_value = ""
    )]
    pub audit_resource_namespace: String,

    /// The resource type audit events name (e.g. InferenceService).
    #[arg(
        long,
        env = "SCRAPE_GUARD_AUDIT_RESOURCE_TYPE",
        value_name = "TYPE",
        default_value = ""
    )]
    pub audit_resource_type: String,

    /// The AI provider audit events name beside the resource (e.g. KServe).
    #[arg(
        long,
        env = "SCRAPE_GUARD_AUDIT_AI_PROVIDER",
        value_name = "PROVIDER",
        default_value = ""
    )]
    pub audit_ai_provider: String,

    /// Audit the client as the last valid IP of X-Forwarded-For (only behind a proxy
    /// that sets it; anyone else can write it).
    #[arg(long, env = "SCRAPE_GUARD_AUDIT_USE_FORWARDED_FOR", num_args = 0..=1,
          require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = parse_go_bool, action = ArgAction::Set)]
    pub audit_use_forwarded_for: bool,

    /// Where audit events go: "-" for standard output (as the fork writes), or a file
    /// to append to.
    #[arg(
        long,
        env = "SCRAPE_GUARD_AUDIT_LOG_PATH",
        value_name = "PATH",
        default_value = "-"
    )]
    pub audit_log_path: String,
}

/// `--audit-log-profile`, in the fork's words when refused.
fn parse_profile(value: &str) -> Result<Profile, String> {
    value.parse()
}
