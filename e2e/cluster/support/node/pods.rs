//! Reading pods: readiness, a one-line summary, container ids and restarts.

use k8s_openapi::api::core::v1::Pod;

pub(crate) fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Phase, conditions and container states in one line, for wait messages.
pub(crate) fn pod_summary(pod: &Pod) -> String {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let Some(status) = &pod.status else {
        return format!("{name}: no status");
    };
    let mut out = format!("{name}: {}", status.phase.as_deref().unwrap_or("?"));
    for c in status.container_statuses.iter().flatten() {
        let state = c.state.as_ref().map_or("?".to_owned(), |s| {
            if let Some(w) = &s.waiting {
                format!(
                    "waiting ({}: {})",
                    w.reason.as_deref().unwrap_or(""),
                    w.message.as_deref().unwrap_or("")
                )
            } else if let Some(t) = &s.terminated {
                format!(
                    "terminated ({} {})",
                    t.exit_code,
                    t.reason.as_deref().unwrap_or("")
                )
            } else {
                "running".into()
            }
        });
        out.push_str(&format!(
            "; {} {state} ready={} restarts={}",
            c.name, c.ready, c.restart_count
        ));
    }
    out
}

/// The runtime's id of a container of a pod (`containerd://<id>` in its status).
pub(super) fn container_id(pod: &Pod, container: &str) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.iter().find(|c| c.name == container))
        .and_then(|c| c.container_id.as_deref())
        .and_then(|id| id.rsplit_once("://").map(|(_, id)| id.to_owned()))
        .unwrap_or_else(|| panic!("no container id for {container} in {}", pod_summary(pod)))
}

/// Every container of `pod` that has a containerd ID: (name, ID).
pub(crate) fn container_ids(pod: &Pod) -> Vec<(String, String)> {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|c| {
            let (_, id) = c.container_id.as_deref()?.rsplit_once("://")?;
            Some((c.name.clone(), id.to_owned()))
        })
        .collect()
}

/// A container's restart count.
pub(crate) fn restarts(pod: &Pod, container: &str) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.iter().find(|c| c.name == container))
        .map_or(-1, |c| c.restart_count)
}
