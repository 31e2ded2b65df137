//! The flags Deckhouse's fork of kube-rbac-proxy adds (its `patches/` to the image), and
//! its `KUBE_RBAC_PROXY_CONFIG`. What they mean here: `config/upstreams.rs` and
//! docs/upstreams.md.

use std::time::Duration;

use clap::Args as ClapArgs;

use crate::config::go::parse_go_duration;

/// Deckhouse's kube-rbac-proxy flags.
#[derive(Debug, Default, ClapArgs)]
#[command(next_help_heading = "Compatibility: Deckhouse's kube-rbac-proxy fork")]
pub struct DeckhouseArgs {
    /// Alias of --stale-if-error (the fork reuses an earlier success for this long
    /// when the apiserver fails).
    #[arg(long, value_name = "DURATION", value_parser = parse_go_duration)]
    pub stale_cache_interval: Option<Duration>,

    /// Answer this path on the main port with an unauthenticated 200 "OK" (a liveness
    /// probe; routed like an upstreams: path, so ending in '/' it takes the subtree).
    #[arg(long, value_name = "PATH")]
    pub livez_path: Option<String>,

    /// The config file's contents (the fork's KUBE_RBAC_PROXY_CONFIG): read instead of
    /// --config-file when set and not empty.
    #[arg(long, env = "KUBE_RBAC_PROXY_CONFIG", hide = true, value_name = "YAML")]
    pub kube_rbac_proxy_config: Option<String>,
}
