//! The Compatibility groups: flags manifests written for kube-rbac-proxy pass that are
//! accepted and ignored (klog's), refused with what to use instead, or — in
//! `apiserver.rs` — the k8s.io/apiserver flags of kube-rbac-proxy's planned rewrite.

use clap::Args as ClapArgs;

use super::super::go::parse_go_bool;

/// kube-rbac-proxy and klog flags that manifests in the wild pass. Accepted so those
/// manifests start; ignored with one warning. The unsupported one is refused.
#[derive(Debug, ClapArgs)]
#[command(next_help_heading = "Compatibility: accepted and ignored (klog, kube-rbac-proxy)")]
pub struct LegacyArgs {
    /// klog flag; ignored.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL")]
    pub logtostderr: Option<bool>,
    /// klog flag; ignored.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL")]
    pub alsologtostderr: Option<bool>,
    /// klog flag; ignored.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL")]
    pub add_dir_header: Option<bool>,
    /// klog flag; ignored.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL")]
    pub one_output: Option<bool>,
    /// klog flag; ignored.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL")]
    pub skip_headers: Option<bool>,
    /// klog flag; ignored.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL")]
    pub skip_log_headers: Option<bool>,
    /// klog flag; ignored.
    #[arg(long, value_name = "FILE:N")]
    pub log_backtrace_at: Option<String>,
    /// klog flag; ignored.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<String>,
    /// klog flag; ignored.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<String>,
    /// klog flag; ignored.
    #[arg(long, value_name = "MB")]
    pub log_file_max_size: Option<String>,
    /// klog flag; ignored.
    #[arg(long, value_name = "DURATION")]
    pub log_flush_frequency: Option<String>,
    /// klog flag; ignored.
    #[arg(long, value_name = "LEVEL")]
    pub stderrthreshold: Option<String>,
    /// klog flag; ignored.
    #[arg(short = 'v', long = "v", value_name = "LEVEL")]
    pub v: Option<String>,
    /// klog flag; ignored.
    #[arg(long, value_name = "PATTERN")]
    pub vmodule: Option<String>,
    /// kube-rbac-proxy flag; ignored (certificate files are re-read every 5s).
    #[arg(long, value_name = "DURATION")]
    pub tls_reload_interval: Option<String>,

    /// Not supported: scrape-guard never serves plain HTTP. Startup error.
    #[arg(long, hide = true)]
    pub insecure_listen_address: Option<String>,
}

impl LegacyArgs {
    /// The ignored flags that were given, for the one warning line.
    pub fn ignored(&self) -> Vec<&'static str> {
        let given = [
            ("--logtostderr", self.logtostderr.is_some()),
            ("--alsologtostderr", self.alsologtostderr.is_some()),
            ("--add-dir-header", self.add_dir_header.is_some()),
            ("--one-output", self.one_output.is_some()),
            ("--skip-headers", self.skip_headers.is_some()),
            ("--skip-log-headers", self.skip_log_headers.is_some()),
            ("--log-backtrace-at", self.log_backtrace_at.is_some()),
            ("--log-dir", self.log_dir.is_some()),
            ("--log-file", self.log_file.is_some()),
            ("--log-file-max-size", self.log_file_max_size.is_some()),
            ("--log-flush-frequency", self.log_flush_frequency.is_some()),
            ("--stderrthreshold", self.stderrthreshold.is_some()),
            ("-v", self.v.is_some()),
            ("--vmodule", self.vmodule.is_some()),
            ("--tls-reload-interval", self.tls_reload_interval.is_some()),
        ];
        given
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect()
    }

    pub(crate) fn refused(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.insecure_listen_address.is_some() {
            problems.push(
                "--insecure-listen-address is not supported: scrape-guard only serves TLS \
                 (use --secure-listen-address)"
                    .to_owned(),
            );
        }
        problems
    }
}
