//! Reading and validating `--listeners-file`.

use super::*;
use crate::{
    config::{Args, Config},
    tls::TlsSource,
    yaml,
};
use clap::Parser;

/// The file, written to a temp dir, and the config the flags make of it.
fn parse(yaml: &str, flags: &[&str]) -> (tempfile::TempDir, Result<Config, String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("listeners.yaml");
    std::fs::write(&path, yaml).unwrap();
    let file = format!("--listeners-file={}", path.display());
    let mut argv = vec!["scrape-guard", file.as_str()];
    argv.extend_from_slice(flags);
    let args = Args::try_parse_from(argv).unwrap();
    (dir, Config::try_from(args).map_err(|e| e.to_string()))
}

const TWO: &str = r#"
listeners:
- name: main
  secureListenAddress: ":8443"
  upstream: http://127.0.0.1:8081/
  tlsCertFile: /etc/tls/tls.crt
  tlsPrivateKeyFile: /etc/tls/tls.key
  allowPaths: /metrics,/federate
  authorization:
    static:
    - {user: {name: a}, path: /metrics}
- Name: telemetry
  SecureListenAddress: "[::1]:9443"
  upstream: https://127.0.0.1:8082/base/
  upstreamCaFile: /etc/ca.crt
  upstreamTimeout: 5s
  clientCAFile: /etc/client-ca.crt
  ignorePaths: [/healthz]
  authHeaderFieldsEnabled: true
  authHeaderUserFieldName: x-user
  configFile: /etc/krp/config.yaml
  rbacFile: [/etc/rbac/a.yaml, /etc/rbac/b.yaml]
"#;

#[test]
fn each_listener_gets_its_own_settings_and_the_flags_tls_policy() {
    let (_dir, config) = parse(
        TWO,
        &["--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
    );
    let config = config.unwrap();
    assert!(
        config.listeners.iter().all(|l| l.origin != Origin::Flags),
        "no --upstream: the file declares them all"
    );
    let [main, telemetry] = &config.listeners[..] else {
        panic!("two listeners: {:?}", config.listeners)
    };
    assert_eq!((main.name.as_deref(), main.line()), (Some("main"), 3));
    assert_eq!(main.listen.to_string(), ":8443");
    assert_eq!(main.upstream.url.to_string(), "http://127.0.0.1:8081/");
    assert!(matches!(&main.tls.source, TlsSource::Files { cert, .. } if cert.ends_with("tls.crt")));
    assert!(
        main.paths.to_string().contains("/federate"),
        "{}",
        main.paths
    );
    assert_eq!(main.upstream.timeout, std::time::Duration::from_secs(30));
    assert!(!main.upstream.identity.enabled);
    assert_eq!(main.upstream.identity.user, "x-remote-user");
    assert!(matches!(
        main.policy.config,
        Some(ConfigSource::Block { .. })
    ));
    assert!(main.policy.rbac_files.is_empty());

    assert_eq!(
        telemetry.name.as_deref(),
        Some("telemetry"),
        "keys in any case, as Go reads them"
    );
    assert_eq!(telemetry.listen.host, "::1");
    assert_eq!(
        telemetry.upstream.timeout,
        std::time::Duration::from_secs(5)
    );
    assert!(telemetry.upstream.options.ca_file.is_some());
    assert!(matches!(telemetry.tls.source, TlsSource::SelfSigned));
    assert!(telemetry.tls.client_ca_file.is_some());
    assert!(telemetry.upstream.identity.enabled);
    assert_eq!(telemetry.upstream.identity.user, "x-user");
    assert!(
        matches!(&telemetry.policy.config, Some(ConfigSource::File(p)) if p.ends_with("config.yaml"))
    );
    assert_eq!(telemetry.policy.rbac_files.len(), 2);
    for listener in [main, telemetry] {
        assert_eq!(
            listener.tls.policy.cipher_suites().len(),
            1 + 3,
            "--tls-cipher-suites applies to every listener"
        );
    }
}

#[test]
fn with_upstream_the_flags_define_the_default_listener_too() {
    let yaml = "listeners:\n- {name: telemetry, secureListenAddress: ':9443', upstream: 'http://127.0.0.1:8082/'}\n";
    let (_dir, config) = parse(yaml, &["--upstream=http://127.0.0.1:8081/"]);
    let config = config.unwrap();
    let flags = &config.listeners[0];
    assert_eq!(flags.upstream.url.to_string(), "http://127.0.0.1:8081/");
    assert_eq!(flags.listen.to_string(), "0.0.0.0:8443");
    assert_eq!(flags.origin, Origin::Flags);
    assert_eq!(config.listeners.len(), 1 + 1);
}

/// Fails naming the first of `wants` that `error` lacks.
fn assert_contains(error: &str, wants: &[&str]) {
    for want in wants {
        assert!(error.contains(want), "missing {want:?} in\n{error}");
    }
}

fn error_of(yaml: &str, flags: &[&str]) -> String {
    let (dir, config) = parse(yaml, flags);
    let error = config.unwrap_err();
    let path = dir.path().join("listeners.yaml");
    (error.replace(&path.display().to_string(), "FILE"))
        .trim_start_matches("invalid configuration:\n  - ")
        .to_owned()
}

#[test]
fn unknown_or_repeated_keys_are_errors_with_file_and_line() {
    let table = [
        (
            "listeners:\n- name: a\n  upstreem: http://x/\n",
            "--listeners-file FILE: line 3: unknown key listeners[0].upstreem; did you mean upstream?",
        ),
        (
            "listener: []\n",
            "--listeners-file FILE: line 1: unknown key listener; did you mean listeners?",
        ),
        (
            "authorization:\n  static: []\n",
            "--listeners-file FILE: line 1: unknown key authorization (a kube-rbac-proxy config file? give it as --config-file or as a listener's configFile, or put its authorization: block under a listener)",
        ),
        (
            "listeners:\n- name: a\n  Upstream: http://x/\n  upstream: http://y/\n",
            "--listeners-file FILE: line 4: listeners[0].upstream is given twice (first on line 3)",
        ),
        (
            "listeners:\n- just-a-name\n",
            "--listeners-file FILE: line 2: listeners[0] must be a mapping (name, secureListenAddress, upstream, …)",
        ),
        (
            "listeners:\n- name: a\n  allowPaths: {a: b}\n",
            "--listeners-file FILE: line 3: listeners[0].allowPaths must be a list, not a mapping",
        ),
        (
            "listeners: []\n---\nlisteners: []\n",
            "--listeners-file FILE: line 3: a second YAML document; the listeners go in one",
        ),
    ];
    for (yaml, want) in table {
        let error = error_of(yaml, &[]);
        assert!(error.starts_with(want), "{yaml}\n→ {error}\nwant {want}");
        assert!(
            !error.contains("declares no listener"),
            "one problem, not two: {error}"
        );
    }
    let error = error_of("listeners: []\n", &["--listeners-file=/nonexistent/l.yaml"]);
    assert!(
        error.contains("--listeners-file /nonexistent/l.yaml: No such file"),
        "the last --listeners-file counts, and a missing one is named: {error}"
    );
}

#[test]
fn duplicate_names_and_addresses_name_both_listeners() {
    let yaml = "listeners:\n\
        - {name: a, secureListenAddress: ':8443', upstream: 'http://x/'}\n\
        - {name: a, secureListenAddress: '127.0.0.1:9443', upstream: 'http://x/'}\n\
        - {name: b, secureListenAddress: '127.0.0.1:8443', upstream: 'http://x/'}\n\
        - {name: c, secureListenAddress: '127.0.0.1:0', upstream: 'http://x/'}\n\
        - {name: d, secureListenAddress: '127.0.0.1:0', upstream: 'http://x/'}\n\
        - {name: default, secureListenAddress: '127.0.0.1:7443', upstream: 'http://x/'}\n\
        - {name: e, secureListenAddress: '127.0.0.1:6443', upstream: 'http://x/'}\n\
        - {name: f, secureListenAddress: '[::]:5443', upstream: 'http://x/'}\n";
    let error = error_of(
        yaml,
        &[
            "--upstream=http://y/",
            "--secure-listen-address=127.0.0.1:5443",
            "--proxy-endpoints-port=6443",
        ],
    );
    assert_contains(
        &error,
        &[
            "--listeners-file FILE line 3: listener a: the name is taken by the listener at line 2",
            "--listeners-file FILE line 4: listener b: secureListenAddress 127.0.0.1:8443 is listener a's (line 2) too",
            "--listeners-file FILE line 7: listener default: \"default\" is the name of the listener the flags define (--upstream); choose another",
            "--listeners-file FILE line 8: listener e: secureListenAddress 127.0.0.1:6443 is --proxy-endpoints-port too",
            "--listeners-file FILE line 9: listener f: secureListenAddress [::]:5443 is --secure-listen-address's (the \"default\" listener) too",
        ],
    );
    assert!(
        !error.contains("listener c:"),
        "port 0 is a new port each time:\n{error}"
    );
    assert!(!error.contains("listener d:"), "{error}");
}

#[test]
fn a_listeners_problems_name_its_keys_line_and_name() {
    let yaml = "listeners:\n\
        - name: Bad_Name\n  secureListenAddress: '8443'\n\
        - name: b\n  secureListenAddress: ':9443'\n  tlsCertFile: /x.crt\n  upstreamForceH2C: true\n  upstream: https://x/\n  upstreamTimeout: soon\n\
        - name: c\n  secureListenAddress: ':9444'\n  upstream: http://x/\n  configFile: /c.yaml\n  authorization: {}\n\
        - secureListenAddress: ':9445'\n  upstream: http://x/\n";
    let error = error_of(yaml, &[]);
    assert_contains(
        &error,
        &[
            "line 2: listener Bad_Name: name \"Bad_Name\" must be a DNS label",
            "line 2: listener Bad_Name: secureListenAddress \"8443\": missing port in address",
            "line 2: listener Bad_Name: upstream is required (e.g. http://127.0.0.1:9100/)",
            "line 4: listener b: tlsCertFile needs tlsPrivateKeyFile",
            "line 4: listener b: upstreamForceH2C is for http:// or unix:// upstreams",
            "line 4: listener b: upstreamTimeout \"soon\" is not a duration",
            "line 10: listener c: configFile and authorization: give one",
            "line 15: a listener: name is required",
        ],
    );
}

#[test]
fn the_default_listeners_flags_without_upstream_are_refused_naming_the_key() {
    let yaml = "listeners:\n- {name: a, secureListenAddress: ':9443', upstream: 'http://x/'}\n";
    let error = error_of(
        yaml,
        &[
            "--tls-cert-file=/x.crt",
            "--tls-private-key-file=/x.key",
            "--allow-paths=/metrics",
            "--auth-header-user-field-name=x-user",
            "--upstream-timeout=30s",
        ],
    );
    assert_contains(
        &error,
        &[
            "--tls-cert-file configures the listener --upstream defines, and there is none (--listeners-file declares them all): give it to a listener there, as tlsCertFile",
            "--tls-private-key-file configures",
            "--allow-paths configures",
            "--auth-header-user-field-name configures",
        ],
    );
    assert!(
        !error.contains("--upstream-timeout"),
        "its default is no setting:\n{error}"
    );
    assert!(!error.contains("--upstream is required"), "{error}");

    let error = error_of("listeners: []\n", &[]);
    assert!(
        error.contains("declares no listener and --upstream is not given"),
        "{error}"
    );
    let (_dir, config) = parse("listeners:\n", &["--upstream=http://x/"]);
    assert!(
        config.is_ok(),
        "an empty list beside --upstream: {config:?}"
    );
}

#[test]
fn locate_finds_a_listeners_block_and_nothing_else() {
    let yaml = "listeners:\n\
        - name: a\n  authorization:\n    static: []\n\
        - name: b\n  upstreem: typo\n\
        - name: c\n  authorization: {}\n";
    let docs = yaml::parse(yaml).unwrap();
    let block = locate(&docs, "a").unwrap().unwrap();
    assert_eq!(block.referenced.line(), 4);
    assert!(
        locate(&docs, "b").unwrap().is_none(),
        "no block, another's typo is no error"
    );
    assert!(locate(&docs, "c").unwrap().is_some());
    let gone = locate(&docs, "d").unwrap_err();
    assert!(gone.contains("listener d is no longer declared"), "{gone}");
    let twice = yaml::parse("listeners:\n- {name: a}\n- {name: a}\n").unwrap();
    assert!(locate(&twice, "a")
        .unwrap_err()
        .contains("line 3: listener a is declared twice"));
}

#[test]
fn only_a_change_outside_the_authorization_blocks_needs_a_restart() {
    let (_dir, config) = parse(TWO, &[]);
    let shape = config.unwrap().listeners_file.unwrap().shape;
    let check = |yaml: &str| unchanged(&[("l.yaml".into(), yaml.as_bytes().to_vec())], &shape);
    let authz_only = TWO.replace(
        "path: /metrics}",
        "path: /federate}\n    - {user: {name: b}}",
    );
    assert_eq!(check(&authz_only), Ok(()));
    let moved = TWO.replace(
        "upstream: http://127.0.0.1:8081/",
        "upstream: http://127.0.0.1:9091/",
    );
    assert_ne!(moved, TWO);
    let error = check(&moved).unwrap_err();
    assert!(
        error.starts_with(
            "l.yaml: listener main changed: only the listeners' authorization blocks are re-read"
        ),
        "{error}"
    );
    let renamed = TWO.replace("Name: telemetry", "Name: extra");
    let error = check(&renamed).unwrap_err();
    assert!(
        error.contains("listener telemetry removed, listener extra added"),
        "{error}"
    );
    let error = check("listeners: [\n").unwrap_err();
    assert!(error.starts_with("l.yaml: "), "{error}");
}

#[test]
fn a_listeners_policy_follows_its_entry_only_while_the_entry_is_as_at_startup() {
    let (_dir, config) = parse(TWO, &[]);
    let listeners = config.unwrap().listeners;
    let holds = |listener: usize, yaml: &str| {
        let condition = listeners[listener].policy.condition.clone().unwrap();
        (condition.holds)(yaml.as_bytes())
    };
    let (main, telemetry) = (0, 1);
    assert_eq!(holds(main, TWO), Ok(()));
    assert_eq!(holds(telemetry, TWO), Ok(()));
    let restart = |result: Result<(), String>, what: &str| {
        let error = result.expect_err(what);
        assert!(
            error.contains("its policy stays as it was until the next start"),
            "{what}: {error}"
        );
        error
    };
    // Its own block edited: it follows.
    let edited = TWO.replace("path: /metrics}", "path: /federate}");
    assert_eq!(holds(main, &edited), Ok(()));
    // The block moved into a configFile (the same policy, another place).
    let moved_out = TWO.replace(
        "  authorization:\n    static:\n    - {user: {name: a}, path: /metrics}\n",
        "  configFile: /etc/krp/main.yaml\n",
    );
    assert_ne!(moved_out, TWO);
    let error = restart(holds(main, &moved_out), "block to configFile");
    assert!(
        error.contains("line 3: listener main is declared differently"),
        "{error}"
    );
    assert_eq!(holds(telemetry, &moved_out), Ok(()), "another's change");
    // And the other way: telemetry's configFile becomes a block.
    let moved_in = TWO.replace(
        "  configFile: /etc/krp/config.yaml\n",
        "  authorization: {static: [{user: {name: t}}]}\n",
    );
    assert_ne!(moved_in, TWO);
    restart(holds(telemetry, &moved_in), "configFile to block");
    restart(
        holds(telemetry, &TWO.replace("config.yaml", "other.yaml")),
        "a configFile path",
    );
    restart(
        holds(telemetry, &TWO.replace("b.yaml]", "c.yaml]")),
        "an rbacFile path",
    );
    // Two names swapped: each entry is the other listener's now.
    let swapped = TWO
        .replace("name: main", "name: SWAP")
        .replace("Name: telemetry", "Name: main")
        .replace("name: SWAP", "name: telemetry");
    restart(holds(main, &swapped), "swapped names (main)");
    restart(holds(telemetry, &swapped), "swapped names (telemetry)");
    // Reordered, or another listener added: each entry still says the same.
    let (head, entries) = TWO.split_at(TWO.find("- name: main").unwrap());
    let (main_entry, telemetry_entry) = entries.split_at(entries.find("- Name").unwrap());
    let reordered = format!("{head}{telemetry_entry}{main_entry}");
    assert_eq!(holds(main, &reordered), Ok(()));
    assert_eq!(holds(telemetry, &reordered), Ok(()));
    let added = format!("{TWO}- name: extra\n  secureListenAddress: \":9444\"\n");
    assert_eq!(holds(main, &added), Ok(()));
    // Removed, declared twice, or the file broken.
    let removed = TWO.split("- Name: telemetry").next().unwrap();
    assert_eq!(holds(main, removed), Ok(()));
    let error = restart(holds(telemetry, removed), "removed");
    assert!(
        error.contains("listener telemetry is no longer declared"),
        "{error}"
    );
    let twice = format!("{TWO}- name: main\n  secureListenAddress: \":9444\"\n");
    restart(holds(main, &twice), "declared twice");
    assert!(holds(main, "listeners: [\n").is_err());
    // A mistake in another listener's entry does not hold this one back; its own does.
    let typo = TWO.replace("upstreamTimeout: 5s", "upstreamTimeout: 5s\n  upstreem: x");
    assert_eq!(holds(main, &typo), Ok(()));
    assert!(holds(telemetry, &typo).is_err());
}

#[test]
fn flag_names_read_as_listener_keys() {
    assert_eq!(
        in_keys("--upstream-ca-file needs an https:// --upstream"),
        "upstreamCAFile needs an https:// upstream"
    );
    assert_eq!(
        in_keys("--tls-cert-file/--tls-private-key-file /x: no such file"),
        "tlsCertFile/tlsPrivateKeyFile /x: no such file"
    );
    assert_eq!(
        in_keys("--rbac-file /r.yaml line 3: bad"),
        "rbacFile /r.yaml line 3: bad"
    );
}

#[test]
fn every_declared_setting_has_a_default_that_parses_and_names_of_its_own() {
    let mut problems = Problems::default();
    let args = Fields::default().args(&mut problems);
    assert!(problems.errors.is_empty(), "{:?}", problems.errors);
    assert_eq!(args.given(), Vec::<Key>::new(), "unset is not given");
    let mut names: Vec<&str> = KEYS.iter().flat_map(|k| [k.key, k.flag]).collect();
    names.extend(["name", "authorization"]);
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 2 * KEYS.len() + 2);
}
