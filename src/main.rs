//! The binary: flags → config → logging → run. Everything else is in the library.

use std::{io::Write, process::ExitCode};

use scrape_guard::{doctor, init_logging, Args, Cli, Command, Config, VersionFlag};

fn main() -> ExitCode {
    // Before anything touches TLS: rustls, tokio-rustls and kube all share this one.
    // aws-lc-rs, the provider `tls` builds on (kube's `aws-lc-rs` feature agrees): it
    // has the post-quantum key exchange X25519MLKEM768.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse_args();
    match cli.version.as_ref().map(VersionFlag::output) {
        Some(Ok(Some(text))) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Some(Err(error)) => {
            eprintln!("scrape-guard: {error}");
            return ExitCode::from(2);
        }
        Some(Ok(None)) | None => {}
    }
    match cli.command {
        None => proxy(cli.args),
        Some(Command::Rbac(args)) => match doctor::rbac(&args) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("scrape-guard rbac: {error}");
                ExitCode::from(doctor::ERROR)
            }
        },
        Some(Command::CanI(args)) => {
            init_logging("text", "warn");
            let Some(runtime) = runtime(1) else {
                return ExitCode::from(doctor::ERROR);
            };
            // The diagnosis on stderr, the RBAC alone on stdout: `>> rbac.yaml` and
            // `| kubectl apply -f -` take nothing else.
            let answer = runtime.block_on(doctor::can_i(*args));
            eprint!("{}", answer.diagnosis);
            if let Some(grant) = &answer.grant {
                print!("{grant}");
            }
            let _ = std::io::stdout().flush();
            ExitCode::from(answer.code)
        }
    }
}

fn proxy(args: Args) -> ExitCode {
    let json = args.logging.log_format == "json";
    init_logging(&args.logging.log_format, "info");
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
    let Some(runtime) = runtime(config.worker_threads) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(scrape_guard::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Once: a JSON log line for log pipelines, plain text for a person.
            if json {
                tracing::error!(%error, "scrape-guard could not start");
            } else {
                eprintln!("scrape-guard: {error}");
            }
            ExitCode::FAILURE
        }
    }
}

fn runtime(worker_threads: usize) -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .enable_all()
        .build()
        .map_err(|error| eprintln!("scrape-guard: starting the async runtime: {error}"))
        .ok()
}
