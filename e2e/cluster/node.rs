//! scrape-guard as a container in a pod: deploy/ applied with `kubectl apply -k` to a
//! single-node cluster with a real kubelet, containerd and runc, the image built by
//! `image/build.sh`, and what a cluster does to a sidecar — probes, the pod's rotating
//! service-account token, certificate rotation through a Secret volume, rollouts and
//! pod deletion, a memory limit enforced by a cgroup, an apiserver restart.
//!
//! These run only inside the network namespace `e2e/netns.sh` makes (see
//! `support/node.rs` for the cluster and the network rule):
//!
//! ```sh
//! e2e/provision.sh && e2e/images.sh
//! e2e/netns.sh cargo test -p scrape-guard-e2e --test cluster -- --ignored node_ --test-threads=8
//! ```
//!
//! One file per theme: `ready.rs` (probes, Prometheus through the guard),
//! `certificate.rs` and `credentials.rs` (what the kubelet rotates), `rollout.rs`,
//! `memory.rs` (the cgroup limit), `outage.rs` (the apiserver restarts) and
//! `kube_prometheus.rs` (deploy/kube-prometheus/ on kube-prometheus' own manifests).
//! (`credentials.rs` waits ~11 min for the kubelet to rotate the pod's token; the
//! others take turns meanwhile.)

mod certificate;
mod credentials;
mod kube_prometheus;
mod memory;
mod outage;
mod ready;
mod rollout;

use std::time::Duration;

/// The serving certificates' names (deploy/servicemonitor.yaml's `serverName`s).
pub(super) const NODE_EXPORTER_NAME: &str = "scrape-guard-node-exporter.scrape-guard.svc";
pub(super) const KSM_NAME: &str = "scrape-guard-kube-state-metrics.scrape-guard.svc";
/// How long a test waits for its pod to be Ready (a restart of the apiserver by
/// another test may be in progress).
pub(super) const READY: Duration = Duration::from_secs(120);
