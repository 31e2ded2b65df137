//! The real binary: `--help` agrees with docs/flags.md, `-h` is one screen, env vars work, bad flags fail with
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

fn flags_md() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/flags.md")).unwrap()
}

/// Each flag `--help` defines, with the environment variable it shows, if any.
fn help_flags(help: &str) -> Vec<(String, Option<String>)> {
    let mut flags: Vec<(String, Option<String>)> = Vec::new();
    for line in help.lines() {
        // Flag definitions start their line: "      --flag <V>" or "  -v, --v <LEVEL>";
        // help text that wraps onto a line of its own is indented further.
        let trimmed = line.trim_start().trim_start_matches("-v, ");
        let indent = line.len() - line.trim_start().len();
        if trimmed.starts_with("--") && (indent == 6 || line.starts_with("  -v, ")) {
            if let Some(flag) = trimmed.split([' ', '=', '[', '<']).next() {
                if flag != "--help" && flag != "--version" {
                    flags.push((flag.to_owned(), None));
                }
            }
        }
        if let Some(env) = line.split("[env: ").nth(1) {
            let name = env.split(['=', ']']).next().unwrap_or_default();
            if let Some(last) = flags.last_mut() {
                last.1 = Some(name.to_owned());
            }
        }
    }
    flags
}

#[test]
fn help_and_the_flag_reference_list_the_same_flags() {
    let (code, help, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    let reference = flags_md();
    let flags = help_flags(&help);
    assert!(
        flags.len() > 40,
        "parsed too few flags from --help: {flags:?}"
    );
    for (flag, _) in &flags {
        assert!(
            reference.contains(&format!("`{flag}")),
            "{flag} is in --help but not in docs/flags.md"
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

/// docs/flags.md says which flags have no `SCRAPE_GUARD_<NAME>` variable; `--help`
/// shows the truth. Every other flag has one, named after it.
#[test]
fn environment_variables_are_what_the_flag_reference_says() {
    let (_, help, _) = run(&["--help"], &[]);
    let reference = flags_md();
    let none = reference
        .split("No environment variable:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("docs/flags.md: the \"No environment variable:\" paragraph");
    for (flag, env) in help_flags(&help) {
        let want = format!(
            "SCRAPE_GUARD_{}",
            flag.trim_start_matches('-')
                .to_uppercase()
                .replace('-', "_")
        );
        match env {
            Some(env) => {
                assert_eq!(env, want, "{flag}");
                assert!(
                    !none.contains(&format!("`{flag}`")),
                    "docs/flags.md says {flag} has no variable; --help shows {env}"
                );
            }
            None => {
                let listed = none.contains(&format!("`{flag}`"))
                    // The k8s.io/apiserver dialect is named as a whole: its table.
                    || reference.contains(&format!("`{flag}` | A |"))
                    || reference.contains(&format!("`{flag}` | |"))
                    || reference.contains(&format!("| `{flag}`, "))
                    // An alias of kube-apiserver's spelling: the flag it names has one.
                    || reference.contains(&format!("(alias `{flag}`)"));
                assert!(
                    listed,
                    "{flag} has no variable, and docs/flags.md does not say so"
                );
            }
        }
    }
}

/// `-h` is one screen of what a sidecar needs; `--help` has everything.
#[test]
fn short_help_fits_on_a_screen() {
    let (code, short, _) = run(&["-h"], &[]);
    assert_eq!(code, 0);
    let lines = short.lines().count();
    assert!(lines <= 40, "-h is {lines} lines:\n{short}");
    for flag in [
        "--upstream",
        "--secure-listen-address",
        "--tls-cert-file",
        "--proxy-endpoints-port",
    ] {
        assert!(short.contains(flag), "-h lacks {flag}:\n{short}");
    }
    assert!(short.contains("--help"), "-h points to --help:\n{short}");
    let (_, long, _) = run(&["--help"], &[]);
    assert!(long.lines().count() > 3 * lines);
}

/// The shipped manifests give the pod longer to stop than scrape-guard's default
/// `--shutdown-grace` (or the grace their own args set): one number, two places.
#[test]
fn manifests_wait_longer_than_the_shutdown_grace() {
    let (_, help, _) = run(&["--help"], &[]);
    let default = help
        .split("--shutdown-grace")
        .nth(1)
        .and_then(|rest| rest.split("[default: ").nth(1))
        .and_then(|rest| rest.split(']').next())
        .and_then(|d| d.strip_suffix('s'))
        .and_then(|d| d.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no --shutdown-grace default in --help"));
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
    let mut seen = 0;
    for entry in std::fs::read_dir(deploy).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let grace = text
            .split("--shutdown-grace=")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|d| d.parse::<u64>().ok())
            .unwrap_or(default);
        for period in text.split("terminationGracePeriodSeconds:").skip(1) {
            let period: u64 = period
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("{}: terminationGracePeriodSeconds", path.display()));
            assert!(
                period > grace,
                "{}: terminationGracePeriodSeconds {period} <= --shutdown-grace {grace}s",
                path.display()
            );
            seen += 1;
        }
    }
    assert!(seen > 0, "no terminationGracePeriodSeconds in deploy/");
}

#[test]
fn version_prints_the_version_in_kube_rbac_proxy_shape() {
    // kube-rbac-proxy (k8s.io/component-base verflag) prints "kube-rbac-proxy v0.21.0"
    // and exits 0, before looking at any other flag.
    let want = format!("scrape-guard v{}", env!("CARGO_PKG_VERSION"));
    for args in [
        &["--version"][..],
        &["--version=true"],
        &["--upstream=bogus", "--version"],
    ] {
        let (code, out, _) = run(args, &[]);
        assert_eq!(code, 0, "{args:?}");
        assert_eq!(out, format!("{want}\n"), "{args:?}");
    }
    let (code, out, _) = run(&["--version=raw"], &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("version.Info{Major:\""), "{out}");
    assert!(
        out.contains(&format!("GitVersion:\"v{}\"", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    // --version=false runs (and so wants --upstream); a foreign version is refused.
    let (code, _, err) = run(&["--version=false"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--upstream is required"), "{err}");
    let (code, _, err) = run(&["--version=v9.9.9", "--upstream=http://x/"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--version=v9.9.9"), "{err}");
}

#[test]
fn every_apiserver_dialect_alias_is_accepted_by_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = format!("--cert-dir={}", dir.path().display());
    // Everything parses and validates; the one problem is the one planted.
    let (code, _, err) = run(
        &[
            "--upstream=http://127.0.0.1:9100/",
            "--bind-address=127.0.0.1",
            "--secure-port=9443",
            &cert_dir,
            "--http2-max-streams-per-connection=50",
            "--disable-http2-serving=true",
            "--authentication-kubeconfig=/kubeconfig",
            "--authorization-kubeconfig=/kubeconfig",
            "--authentication-token-webhook-cache-ttl=10s",
            "--authorization-webhook-cache-authorized-ttl=10s",
            "--authorization-webhook-cache-unauthorized-ttl=10s",
            "--authentication-tolerate-lookup-failure",
            "--authentication-skip-lookup",
            "--permit-port-sharing=false",
            "--worker-threads=0",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        "scrape-guard: invalid configuration:\n  - --worker-threads must be at least 1",
        "{err}"
    );
    // A bad value names its flag, as for our own flags.
    for (flag, needle) in [
        ("--secure-port=70000", "--secure-port"),
        ("--authorization-webhook-cache-authorized-ttl=soon", "soon"),
        ("--disable-http2-serving=maybe", "--disable-http2-serving"),
    ] {
        let (code, _, err) = run(&["--upstream=http://x/", flag], &[]);
        assert_eq!(code, 2, "{flag}");
        assert!(err.contains(needle), "{flag}: {err}");
    }
}

#[test]
fn apiserver_dialect_flags_are_aliases_and_may_not_contradict() {
    let (code, _, err) = run(
        &[
            "--upstream=http://127.0.0.1:9100/",
            "--secure-listen-address=127.0.0.1:8443",
            "--secure-port=9443",
            "--authz-deny-ttl=30s",
            "--authorization-webhook-cache-unauthorized-ttl=10s",
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    for needle in [
        "--secure-listen-address 127.0.0.1:8443 and --secure-port 9443 disagree",
        "--authz-deny-ttl",
        "--authorization-webhook-cache-unauthorized-ttl",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    let (code, _, err) = run(
        &[
            "--upstream=http://127.0.0.1:9100/",
            "--tls-sni-cert-key=a.crt",
            "--permit-port-sharing",
        ],
        &[],
    );
    assert_eq!(code, 2);
    for needle in [
        "--tls-sni-cert-key \"a.crt\": expected the certificate and key files",
        "--permit-port-sharing is not supported",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
}

#[test]
fn bad_flags_exit_2_naming_each_flag() {
    let (code, _, err) = run(
        &[
            "--tls-min-version=VersionSSL30",
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
        "OIDC without its client ID is refused, not ignored"
    );
    assert!(err.contains("--oidc-clientID is required"), "{err}");
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

/// A distroless image may carry no CA bundle. A plain-http upstream needs none, so the
/// proxy starts; an https one without --upstream-ca-file is refused, saying what to do.
#[test]
fn no_system_ca_bundle_matters_only_for_an_https_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "t,alice,1\n").unwrap();
    let token_file = format!("--token-auth-file={}", tokens.display());
    let no_bundle = [
        ("SSL_CERT_FILE", "/nonexistent/ca.crt"),
        ("SSL_CERT_DIR", "/nonexistent"),
    ];

    let (code, _, err) = run(
        &["--upstream=https://127.0.0.1:9/", &token_file],
        &no_bundle,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--upstream-ca-file"), "{err}");

    let port = support::free_port();
    let mut child = Command::new(BIN)
        .args([
            &format!("--secure-listen-address=127.0.0.1:{port}"),
            "--upstream=http://127.0.0.1:9/",
            &token_file,
        ])
        .envs(no_bundle)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let listening = loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break true;
        }
        if child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    assert!(
        listening,
        "an http upstream needs no CA bundle, but:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fatal error names its flag, suggests a way out, and is printed once.
#[test]
fn startup_errors_name_the_flag_and_are_printed_once() {
    let (code, _, err) = run(
        &[
            "--upstream=http://127.0.0.1:9100/",
            "--tls-cert-file=/nonexistent/tls.crt",
            "--tls-private-key-file=/nonexistent/tls.key",
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--tls-cert-file"), "{err}");
    assert_eq!(err.matches("/nonexistent/tls.crt").count(), 1, "{err}");

    // Outside a cluster, without a kubeconfig: say what to give instead.
    let home = tempfile::tempdir().unwrap();
    let (code, _, err) = run(
        &["--upstream=http://127.0.0.1:9100/"],
        &[("HOME", home.path().to_str().unwrap())],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.matches("no Kubernetes API configuration").count(),
        1,
        "{err}"
    );
    for hint in ["--kubeconfig=FILE", "--token-auth-file", "--rbac-file"] {
        assert!(err.contains(hint), "missing {hint:?}: {err}");
    }
    assert!(!err.contains("'\""), "doubly quoted path: {err}");
}

/// The required flag and an example come first in `--help`.
#[test]
fn help_starts_with_the_required_flag_and_an_example() {
    let (code, help, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    let top: String = help.lines().take(12).collect::<Vec<_>>().join("\n");
    assert!(top.contains("Usage: scrape-guard --upstream=URL"), "{top}");
    assert!(
        top.contains("scrape-guard --upstream=http://127.0.0.1:9100/"),
        "{top}"
    );
}

/// A mistake in an --rbac-file is shown at its line, with the file's name.
#[test]
fn rbac_file_mistakes_show_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let rbac = dir.path().join("rbac.yaml");
    std::fs::write(
        &rbac,
        "kind: ClusterRole\nmetadata:\n  name: r\nrules:\n- nonResourceURLs: \"/metrics\"\n  verbs: [get]\n",
    )
    .unwrap();
    // The doctor's diagnosis, errors included, is on stderr.
    let (code, _, out) = run(
        &[
            "can-i",
            "--as=alice",
            &format!("--rbac-file={}", rbac.display()),
        ],
        &[],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("line 5"), "{out}");
    assert!(out.contains(&format!("{}:5:", rbac.display())), "{out}");
}
