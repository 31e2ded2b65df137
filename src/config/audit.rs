//! `--audit-*` into the audit log's settings.

use std::path::PathBuf;

use super::{args::AuditArgs, Problems};
use crate::audit::{AuditSettings, ClientAddress, Destination, ResourceMetadata, DEFAULT_QUEUE};

/// The audit log's settings; an empty `--audit-log-path` is refused.
pub(super) fn settings(args: AuditArgs, problems: &mut Problems) -> AuditSettings {
    let AuditArgs {
        audit_log_profile,
        audit_resource_name,
        audit_resource_namespace,
        audit_resource_type,
        audit_ai_provider,
        audit_use_forwarded_for,
        audit_log_path,
    } = args;
    let destination = match audit_log_path.as_str() {
        "-" => Destination::Stdout,
        "" => {
            problems.add("--audit-log-path is empty: give a file, or - for standard output");
            Destination::Stdout
        }
        path => Destination::File(PathBuf::from(path)),
    };
    AuditSettings {
        profile: audit_log_profile,
        resource: ResourceMetadata {
            name: audit_resource_name,
            namespace: audit_resource_namespace,
            kind: audit_resource_type,
        },
        ai_provider: audit_ai_provider,
        client_address: match audit_use_forwarded_for {
            true => ClientAddress::ForwardedFor,
            false => ClientAddress::Peer,
        },
        destination,
        queue: DEFAULT_QUEUE,
    }
}
