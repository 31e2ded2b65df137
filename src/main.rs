//! The binary: flags → config → logging → run. Everything else is in the library.

use std::process::ExitCode;

use clap::Parser;
use scrape_guard::config::{Args, Config};

fn main() -> ExitCode {
    // Before anything touches TLS: rustls, tokio-rustls and kube all share this one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    init_logging(&args.logging.log_format);
    let ignored = args.legacy.ignored();
    if !ignored.is_empty() {
        tracing::warn!(flags = ?ignored, "ignoring kube-rbac-proxy/klog flags that have no effect here");
    }
    let config = match Config::try_from(args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("scrape-guard: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("scrape-guard: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(scrape_guard::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "scrape-guard could not start");
            eprintln!("scrape-guard: {error}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCRAPE_GUARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
