//! `scrape-guard can-i`, the doctor: against the real apiserver it explains a deny and
//! prints RBAC that, applied the way it says (`kubectl apply -f -`), fixes it.

use std::{path::Path, time::Duration};

use super::support::{
    parse_manifests, repo_path, run_to_end, scrape_guard_bin, secrets_in, write_file, Cluster,
    METRICS_READER,
};
use serde_json::Value;

/// The diagnosis's last line (stderr); what follows in the log is stdout: the RBAC alone.
const MARK: &str =
    "To allow it, apply the RBAC printed on stdout: scrape-guard can-i ... | kubectl apply -f -";

/// With scrape-guard's own kubeconfig and a fresh token of an unbound account: exit 1,
/// `decision:  denied`, and after the line [`MARK`] YAML that parses into exactly one
/// ClusterRole and one ClusterRoleBinding of it to that account. Piped into
/// `kubectl apply -f -`, it makes the next can-i exit 0 with the real apiserver's RBAC
/// reason. Objects it created are deleted again; a ClusterRole that existed before
/// (deploy/'s) is put back as deploy/ has it.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn doctor_can_i_fixes_a_deny() {
    let cluster = Cluster::shared().await;
    let sa = ("e2e", "doctor-scraper");
    cluster.ensure_service_account(sa).await;
    assert!(
        !cluster.may_get_metrics(sa).await,
        "e2e/doctor-scraper may get /metrics before anything was applied"
    );
    let token_file = cluster.dir().join("token-doctor");
    write_file(&token_file, &cluster.mint_token(sa).await);

    let (code, out) = can_i(&cluster, &token_file, "denied").await;
    assert_eq!(
        code,
        Some(1),
        "can-i before any binding: exit {code:?}, want 1:\n{out}"
    );
    assert!(
        has_line(&out, "decision:  denied"),
        "no 'decision:  denied' line:\n{out}"
    );
    let user = "user:      system:serviceaccount:e2e:doctor-scraper";
    assert!(
        out.lines()
            .any(|l| l == user || l.starts_with(&format!("{user} "))),
        "can-i does not name the user ({user:?}):\n{out}"
    );
    let yaml = out
        .split_once(&format!("\n{MARK}\n"))
        .map(|(_, yaml)| yaml.to_owned())
        .unwrap_or_else(|| panic!("can-i printed no {MARK:?} line:\n{out}"));
    let rbac_file = cluster.dir().join("doctor-rbac.yaml");
    write_file(&rbac_file, &yaml);
    let objects = parse_manifests(&yaml)
        .unwrap_or_else(|e| panic!("the YAML can-i printed does not parse ({e}):\n{yaml}"));
    let (role, binding) = role_and_binding(&objects, sa)
        .unwrap_or_else(|| panic!("not one ClusterRole and one ClusterRoleBinding of it to ServiceAccount e2e/doctor-scraper:\n{yaml}"));
    let role_existed = cluster.cluster_role_exists(&role).await;
    let binding_existed = cluster.binding_exists(&binding).await;
    println!("printed ClusterRole {role} (existed: {role_existed}), ClusterRoleBinding {binding}");

    let mut kubectl = cluster.kubectl();
    kubectl.args(["apply", "-f", "-"]);
    let log = cluster.dir().join("kubectl-apply-doctor.log");
    let (applied, kubectl_out) = run_to_end(
        "kubectl apply -f -",
        kubectl,
        Some(&yaml),
        &log,
        Duration::from_secs(60),
    )
    .await;
    let (code, out) = if applied == Some(0) {
        can_i(&cluster, &token_file, "allowed").await
    } else {
        (None, String::new())
    };

    // Undo before judging: the control plane is shared.
    if !binding_existed {
        cluster.delete_binding(&binding).await;
    }
    if !role_existed {
        cluster.delete_cluster_role(&role).await;
    } else if role == METRICS_READER {
        let deploy = repo_path("deploy/rbac-scraper.yaml");
        if let Err(e) = cluster.apply_file(&deploy).await {
            panic!("putting deploy/rbac-scraper.yaml back: {e}");
        }
    }

    assert_eq!(
        applied,
        Some(0),
        "kubectl apply -f - of the printed YAML:\n{kubectl_out}"
    );
    assert_eq!(
        code,
        Some(0),
        "can-i after applying its YAML: exit {code:?}, want 0:\n{out}"
    );
    assert!(
        has_line(&out, "decision:  allowed"),
        "no 'decision:  allowed' line:\n{out}"
    );
    let want = format!(
        "by:        apiserver: RBAC: allowed by ClusterRoleBinding \"{binding}\" of ClusterRole \"{role}\" to ServiceAccount \"doctor-scraper/e2e\""
    );
    assert!(has_line(&out, &want), "no line {want:?}:\n{out}");
    println!("{want}");
}

/// Runs `scrape-guard can-i` with scrape-guard's kubeconfig: (exit code, output).
async fn can_i(cluster: &Cluster, token_file: &Path, label: &str) -> (Option<i32>, String) {
    let mut command = std::process::Command::new(scrape_guard_bin());
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", cluster.dir())
        .arg("can-i")
        .arg("--kubeconfig")
        .arg(cluster.proxy_kubeconfig())
        .arg("--token-file")
        .arg(token_file);
    let log = cluster.dir().join(format!("sg-doctor-{label}.log"));
    let result = run_to_end(
        "scrape-guard can-i",
        command,
        None,
        &log,
        Duration::from_secs(30),
    )
    .await;
    let leaked = secrets_in(&result.1);
    assert!(
        leaked.is_empty(),
        "scrape-guard can-i printed secrets: {leaked:?}"
    );
    result
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

/// The one ClusterRole and the one ClusterRoleBinding of it to `sa`: (role, binding).
fn role_and_binding(
    objects: &[Value],
    (namespace, name): (&str, &str),
) -> Option<(String, String)> {
    let named = |o: &Value| o["metadata"]["name"].as_str().map(str::to_owned);
    let roles: Vec<_> = objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole")
        .collect();
    let [role] = roles.as_slice() else {
        return None;
    };
    let role = named(role)?;
    let bindings: Vec<_> = objects
        .iter()
        .filter(|o| {
            o["kind"] == "ClusterRoleBinding"
                && o["roleRef"]["kind"] == "ClusterRole"
                && o["roleRef"]["name"] == role.as_str()
                && o["subjects"].as_array().is_some_and(|subjects| {
                    subjects.iter().any(|s| {
                        s["kind"] == "ServiceAccount"
                            && s["name"] == name
                            && s["namespace"] == namespace
                    })
                })
        })
        .collect();
    let [binding] = bindings.as_slice() else {
        return None;
    };
    Some((role, named(binding)?))
}
