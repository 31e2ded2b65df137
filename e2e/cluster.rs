//! # The end-to-end suite
//!
//! scrape-guard between real parts, all on 127.0.0.1: etcd 3.4 and kube-apiserver
//! v1.20.2 (real TokenReviews, real RBAC SubjectAccessReviews), Prometheus 2.42 scraping
//! through it over TLS, and node-exporter 1.5 behind it. `e2e/provision.sh` installs and
//! builds them; every test here is `#[ignore]`d so that a plain `cargo test` passes on a
//! machine without them:
//!
//! ```sh
//! e2e/provision.sh && cargo test -p scrape-guard-e2e --test cluster -- --ignored          # all of it
//! cargo test -p scrape-guard-e2e --test cluster -- --ignored --nocapture token_audiences  # one check
//! ```
//!
//! Each test is one check a cluster operator would make. It starts the scrape-guard
//! instance it needs (the real binary, with the flags the check is about), its own
//! exporter and Prometheus if it needs them, and stops all of them by PID when it ends,
//! also when it fails. A failing test prints the tail of every log involved (its
//! scrape-guard, exporter, Prometheus, the apiserver's warnings and errors) and keeps
//! its temp dir. How the expensive part, the control plane, is shared between tests
//! running in parallel is explained in `e2e/cluster/support/control_plane.rs`.
//!
//! The files of this test target live in `e2e/cluster/`: `support` (the fixtures) and
//! one file per theme of checks.

mod cluster {
    mod support;

    // (libtest starts tests in name order: the two apiserver_* modules, whose tests
    // each need a control plane of their own, come first, so that the tests sharing
    // one run together afterwards and it is started once)
    mod apiserver_outages;
    mod apiserver_reviews;
    mod auth_endpoint;
    mod authn;
    mod deploy;
    mod doctor;
    mod endpoints;
    mod front_proxy;
    mod local_verification;
    mod mixin;
    mod negotiation;
    mod node;
    mod oidc;
    mod operating;
    mod rbac;
    mod scraping;
    mod upstream;
    mod upstreams;
}
