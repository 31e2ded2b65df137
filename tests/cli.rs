//! The real binary: `--help` agrees with the README, env vars work, bad flags fail with
//! exit 2 naming the flag, and SIGTERM drains and exits 0 without logging secrets.

use scrape_guard_testkit as support;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_scrape-guard");

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn help_and_readme_list_the_same_flags() {
    let (code, help, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    // Flag definitions start their line: "      --flag <V>" or "  -v, --v <LEVEL>".
    let flags: Vec<&str> = help
        .lines()
        .map(|line| line.trim_start().trim_start_matches("-v, "))
        .filter(|line| line.starts_with("--"))
        .filter_map(|line| line.split([' ', '=', '[', '<']).next())
        .filter(|flag| *flag != "--help" && *flag != "--version")
        .collect();
    assert!(
        flags.len() > 40,
        "parsed too few flags from --help: {flags:?}"
    );
    for flag in flags {
        assert!(
            readme.contains(&format!("`{flag}")),
            "{flag} is in --help but not in README.md"
        );
    }
    for group in [
        "Serving:",
        "Upstream:",
        "Kubernetes API:",
        "Caching:",
        "Logging:",
        "Compatibility",
    ] {
        assert!(help.contains(group), "--help lacks the {group} group");
    }
}

#[test]
fn version_prints_the_version() {
    let (code, out, _) = run(&["--version"], &[]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("scrape-guard {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_flags_exit_2_naming_each_flag() {
    let (code, _, err) = run(
        &[
            "--tls-min-version=VersionTLS10",
            "--allow-paths=/a",
            "--ignore-paths=/b",
            "--worker-threads=0",
        ],
        &[],
    );
    assert_eq!(code, 2);
    for needle in [
        "--tls-min-version",
        "--allow-paths and --ignore-paths",
        "--worker-threads must be at least 1",
        "--upstream is required",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    let (code, _, err) = run(
        &["--upstream=http://x/", "--oidc-issuer=https://issuer"],
        &[],
    );
    assert_eq!(
        code, 2,
        "an auth flag we do not implement is refused, not ignored"
    );
    assert!(err.contains("--oidc-issuer"), "{err}");
}

#[test]
fn unknown_key_exchanges_exit_2_naming_them() {
    let (code, _, err) = run(
        &[
            "--upstream=http://127.0.0.1:9100/",
            "--tls-curve-preferences=X25519,P-256,secp384r1",
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("unknown key exchange P-256, secp384r1"),
        "{err}"
    );
    let (code, _, err) = run(
        &["--upstream=http://127.0.0.1:9100/"],
        &[("SCRAPE_GUARD_TLS_CURVE_PREFERENCES", "CurveP521")],
    );
    assert_eq!(code, 2, "nothing usable is left: {err}");
    assert!(err.contains("implements none of CurveP521"), "{err}");
}

#[test]
fn key_exchanges_this_build_lacks_are_a_warning_naming_them() {
    support::install_crypto();
    let pki = support::Pki::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = runtime.block_on(support::FakeApiserver::start(&pki));
    let echo = runtime.block_on(support::Echo::start());
    let port = support::free_port();
    let child = runtime.block_on(support::spawn_binary(
        BIN,
        &pki,
        &api,
        &echo.url(),
        port,
        &["--tls-curve-preferences=CurveP521,X25519MLKEM768"],
        &[],
    ));
    let (status, logs) = runtime.block_on(support::terminate(child));
    assert_eq!(status.code(), Some(0), "exit status; logs:\n{logs}");
    let warning = logs
        .lines()
        .find(|line| line.contains("WARN") && line.contains("--tls-curve-preferences"))
        .unwrap_or_else(|| panic!("no warning:\n{logs}"));
    assert!(warning.contains("unavailable=\"CurveP521\""), "{warning}");
    assert!(warning.contains("using=\"X25519MLKEM768\""), "{warning}");
    assert!(
        logs.contains("curves=\"X25519MLKEM768\""),
        "the startup line names what is offered:\n{logs}"
    );
}

#[test]
fn env_vars_set_flags() {
    let (_, _, err) = run(
        &["--tls-min-version=bogus"],
        &[("SCRAPE_GUARD_UPSTREAM", "http://127.0.0.1:9100/")],
    );
    assert!(!err.contains("--upstream is required"), "{err}");
    let (code, _, err) = run(
        &["--upstream=http://127.0.0.1:9100/"],
        &[("SCRAPE_GUARD_AUTHZ_DENY_TTL", "soon")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("soon"), "the env value was parsed: {err}");
}

#[test]
fn missing_certificate_file_is_a_startup_error_naming_it() {
    let (code, _, err) = run(
        &[
            "--upstream=http://127.0.0.1:9100/",
            "--tls-cert-file=/nonexistent/tls.crt",
            "--tls-private-key-file=/nonexistent/tls.key",
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/tls.crt"), "{err}");
}

#[test]
fn sigterm_drains_and_exits_zero_without_logging_secrets() {
    support::install_crypto();
    let pki = support::Pki::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = runtime.block_on(support::FakeApiserver::start(&pki));
    api.add_token("very-secret-token", "alice");
    api.allow("alice", "get", "/metrics");
    let echo = runtime.block_on(support::Echo::start());
    let port = support::free_port();
    let child = runtime.block_on(support::spawn_binary(
        BIN,
        &pki,
        &api,
        &echo.url(),
        port,
        &["--logtostderr", "-v=2"],
        &[("SCRAPE_GUARD_LOG", "debug")],
    ));
    runtime.block_on(async {
        let client = support::client(&pki, false);
        let url = format!("https://localhost:{port}/metrics");
        let allowed = support::get(&client, &url, Some("very-secret-token"), &[]).await;
        assert_eq!(allowed.status, 200);
        let denied = support::get(&client, &url, Some("another-secret"), &[]).await;
        assert_eq!(denied.status, 401);
    });

    let (status, logs) = runtime.block_on(support::terminate(child));
    assert_eq!(status.code(), Some(0), "exit status; logs:\n{logs}");
    assert!(
        logs.contains("scrape-guard serving"),
        "startup line missing:\n{logs}"
    );
    assert!(
        logs.contains("--logtostderr"),
        "ignored flags are named once:\n{logs}"
    );
    assert!(
        !logs.contains("very-secret-token"),
        "a token was logged:\n{logs}"
    );
    assert!(
        !logs.contains("another-secret"),
        "a token was logged:\n{logs}"
    );
}
