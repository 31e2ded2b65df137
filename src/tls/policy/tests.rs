use super::*;

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
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
    let policy = TlsPolicy::from_flags("VersionTLS12", &names, &mut warnings).unwrap();
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
    let policy = TlsPolicy::from_flags("", &names, &mut Vec::new()).unwrap();
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
    let err = TlsPolicy::from_flags("VersionTLS12", &names, &mut Vec::new()).unwrap_err();
    assert!(
        err.contains("TLS_RSA_WITH_AES_128_CBC_SHA is not supported"),
        "{err}"
    );
    assert!(err.contains("unknown cipher suite TLS_MADE_UP"), "{err}");
    let err = TlsPolicy::from_flags(
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
    let policy = TlsPolicy::from_flags("VersionTLS12", &names, &mut warnings).unwrap();
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
        let policy = TlsPolicy::from_flags(version, &[], &mut warnings).unwrap();
        assert_eq!(policy.versions().len(), 2);
        assert!(warnings[0].contains(version), "{warnings:?}");
    }
}

#[test]
fn tls13_minimum_offers_only_tls13() {
    let policy = TlsPolicy::from_flags("VersionTLS13", &[], &mut Vec::new()).unwrap();
    assert!(policy
        .cipher_suites()
        .iter()
        .all(|s| s.version() == &rustls::version::TLS13));
    assert!(TlsPolicy::from_flags("tls1.2", &[], &mut Vec::new()).is_err());
    assert!(TlsPolicy::from_flags("VersionSSL30", &[], &mut Vec::new()).is_err());
    // OpenShift's "Modern" profile: TLS 1.3 names only, TLS 1.3 minimum.
    let modern = owned(&["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"]);
    let mut warnings = Vec::new();
    assert!(TlsPolicy::from_flags("VersionTLS13", &modern, &mut warnings).is_ok());
    assert!(warnings.is_empty(), "{warnings:?}");
}
