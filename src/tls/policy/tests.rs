use super::*;

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The policy of the default build, whichever build runs the test.
fn standard(
    min_version: &str,
    suites: &[String],
    warnings: &mut Vec<String>,
) -> Result<TlsPolicy, String> {
    TlsPolicy::from_flags_for(Module::Standard, min_version, suites, warnings)
}

fn fips(min_version: &str, suites: &[&str]) -> Result<TlsPolicy, String> {
    TlsPolicy::from_flags_for(Module::Fips, min_version, &owned(suites), &mut Vec::new())
}

// === the FIPS build's policy ===

#[test]
fn fips_default_serves_only_aes_gcm() {
    use rustls::CipherSuite as S;
    let policy = fips("", &[]).unwrap();
    let mut served: Vec<_> = policy.cipher_suites().iter().map(|s| s.suite()).collect();
    served.sort_by_key(|s| u16::from(*s));
    let mut want = vec![
        S::TLS13_AES_128_GCM_SHA256,
        S::TLS13_AES_256_GCM_SHA384,
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ];
    want.sort_by_key(|s| u16::from(*s));
    assert_eq!(served, want);
    let curves: Vec<_> = policy.curves().names().collect();
    assert!(!curves.contains(&"X25519"), "{curves:?}");
    // A TLS 1.3-only FIPS policy serves the two AES-GCM suites.
    assert_eq!(fips("VersionTLS13", &[]).unwrap().cipher_suites().len(), 2);
}

#[test]
fn fips_refuses_listed_suites_that_are_not_approved_naming_them() {
    for (list, named) in [
        (
            &[
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            ][..],
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305 is not FIPS-approved",
        ),
        (
            &["TLS_CHACHA20_POLY1305_SHA256"],
            "TLS_CHACHA20_POLY1305_SHA256 is not FIPS-approved",
        ),
        (
            // The default build warns about these and serves the rest; FIPS refuses.
            &[
                "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
                "TLS_RSA_WITH_AES_128_GCM_SHA256",
            ],
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TLS_RSA_WITH_AES_128_GCM_SHA256 are not \
             FIPS-approved",
        ),
    ] {
        let err = fips("", list).unwrap_err();
        assert!(err.starts_with("--tls-cipher-suites: "), "{err}");
        assert!(err.contains(named), "{err}");
        assert!(
            err.contains("serves TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, "),
            "{err}"
        );
    }
    // Unknown names stay unknown; approved ones are served.
    let err = fips("", &["TLS_MADE_UP"]).unwrap_err();
    assert!(err.contains("unknown cipher suite TLS_MADE_UP"), "{err}");
    let policy = fips(
        "",
        &[
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_AES_128_GCM_SHA256",
        ],
    )
    .unwrap();
    assert_eq!(policy.cipher_suites().len(), 3);
}

#[test]
fn kube_prometheus_suites_are_all_served() {
    let names = owned(&[
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    ]);
    let mut warnings = Vec::new();
    let policy = standard("VersionTLS12", &names, &mut warnings).unwrap();
    assert_eq!(policy.tls12_suites.len(), 6);
    assert_eq!(policy.cipher_suites().len(), 9);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn suites_are_in_gos_server_order_whatever_the_flag_order() {
    let names = owned(&[
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ]);
    let policy = standard("", &names, &mut Vec::new()).unwrap();
    let order: Vec<_> = policy.cipher_suites().iter().map(|s| s.suite()).collect();
    use rustls::CipherSuite as S;
    let with_aes = [
        S::TLS13_AES_128_GCM_SHA256,
        S::TLS13_AES_256_GCM_SHA384,
        S::TLS13_CHACHA20_POLY1305_SHA256,
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    let without_aes = [
        S::TLS13_CHACHA20_POLY1305_SHA256,
        S::TLS13_AES_128_GCM_SHA256,
        S::TLS13_AES_256_GCM_SHA384,
        S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ];
    let want = if aes_gcm_hardware() {
        with_aes
    } else {
        without_aes
    };
    assert_eq!(order, want);
}

#[test]
fn unservable_and_unknown_names_are_named() {
    let names = owned(&["TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_MADE_UP"]);
    let err = standard("VersionTLS12", &names, &mut Vec::new()).unwrap_err();
    assert!(
        err.contains("TLS_RSA_WITH_AES_128_CBC_SHA is not supported"),
        "{err}"
    );
    assert!(err.contains("unknown cipher suite TLS_MADE_UP"), "{err}");
    let err = standard(
        "",
        &owned(&["ECDHE-RSA-AES128-GCM-SHA256"]),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(err.contains("OpenSSL name"), "{err}");
}

#[test]
fn metallb_list_serves_its_gcm_suites_and_names_the_cbc_ones_once() {
    let names = owned(&[
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_RSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    ]);
    let mut warnings = Vec::new();
    let policy = standard("VersionTLS12", &names, &mut warnings).unwrap();
    assert_eq!(policy.tls12_suites.len(), 2);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    for name in &names[2..] {
        assert!(warnings[0].contains(name.as_str()), "{warnings:?}");
    }
    assert!(warnings[0].contains("not implemented by rustls"));
}

#[test]
fn tls10_and_11_minimums_serve_tls12_up_with_a_warning() {
    for version in ["VersionTLS10", "VersionTLS11"] {
        let mut warnings = Vec::new();
        let policy = standard(version, &[], &mut warnings).unwrap();
        assert_eq!(policy.versions().len(), 2);
        assert!(warnings[0].contains(version), "{warnings:?}");
    }
}

#[test]
fn tls13_minimum_offers_only_tls13() {
    let policy = standard("VersionTLS13", &[], &mut Vec::new()).unwrap();
    assert!(policy
        .cipher_suites()
        .iter()
        .all(|s| s.version() == &rustls::version::TLS13));
    assert!(standard("tls1.2", &[], &mut Vec::new()).is_err());
    assert!(standard("VersionSSL30", &[], &mut Vec::new()).is_err());
    // OpenShift's "Modern" profile: TLS 1.3 names only, TLS 1.3 minimum.
    let modern = owned(&["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"]);
    let mut warnings = Vec::new();
    assert!(standard("VersionTLS13", &modern, &mut warnings).is_ok());
    assert!(warnings.is_empty(), "{warnings:?}");
}
