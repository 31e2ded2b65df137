use super::*;

#[test]
fn exposition_names_and_labels() {
    let metrics = Metrics::new();
    metrics.request(200, 0.01);
    metrics.request(403, 0.002);
    metrics.authenticated(Authn::Authenticated, Source::Cache);
    metrics.authorized(Authz::Allowed, Source::Stale);
    metrics.review(Review::TokenReview, 0.05, false);
    metrics.review_limited(Review::SubjectAccessReview, Limited::Peer);
    metrics.certificate_expires(1_900_000_000);
    metrics.file_loaded("--rbac-file", "/etc/rbac/a.yaml", true);
    metrics.file_loaded("--token-auth-file", "/etc/tokens.csv", false);
    let text = metrics.encode(3, 4);
    for needle in [
        "scrape_guard_requests_total{code=\"200\"} 1",
        "scrape_guard_requests_total{code=\"403\"} 1",
        "scrape_guard_authentication_total{result=\"authenticated\",source=\"cache\"} 1",
        "scrape_guard_authorization_total{result=\"allowed\",source=\"stale\"} 1",
        "scrape_guard_review_errors_total{review=\"tokenreview\"} 1",
        "scrape_guard_reviews_limited_total{review=\"subjectaccessreview\",reason=\"peer\"} 1",
        "scrape_guard_review_duration_seconds_count{review=\"tokenreview\"} 1",
        "scrape_guard_cache_entries{cache=\"authentication\"} 3",
        "scrape_guard_certificate_expiry_timestamp_seconds 1900000000",
        "scrape_guard_config_last_reload_successful{flag=\"--rbac-file\",file=\"/etc/rbac/a.yaml\"} 1",
        "scrape_guard_config_last_reload_successful{flag=\"--token-auth-file\",file=\"/etc/tokens.csv\"} 0",
        "scrape_guard_config_last_reload_success_timestamp_seconds{flag=\"--rbac-file\",file=\"/etc/rbac/a.yaml\"}",
        "scrape_guard_build_info{version=",
        "scrape_guard_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn a_listener_view_labels_its_series_and_shares_the_registry() {
    let metrics = Metrics::new();
    let main = metrics.for_listener("main");
    let telemetry = metrics.for_listener("telemetry");
    main.request(200, 0.01);
    telemetry.request(200, 0.01);
    telemetry.request(200, 0.01);
    metrics.request(401, 0.01);
    main.authorized(Authz::Allowed, Source::Local);
    telemetry.authenticated(Authn::Authenticated, Source::Cache);
    main.certificate_expires(1_900_000_000);
    telemetry.file_loaded("--listeners-file", "/etc/l.yaml", false);
    telemetry.handshake_failed(HandshakeFailure::ClientCertificate);
    main.review(Review::TokenReview, 0.05, false);
    let text = metrics.encode(1, 2);
    for needle in [
        "scrape_guard_requests_total{listener=\"main\",code=\"200\"} 1",
        "scrape_guard_requests_total{listener=\"telemetry\",code=\"200\"} 2",
        "scrape_guard_requests_total{code=\"401\"} 1",
        "scrape_guard_request_duration_seconds_count{listener=\"telemetry\"} 2",
        "scrape_guard_authorization_total{listener=\"main\",result=\"allowed\",source=\"local\"} 1",
        "scrape_guard_authentication_total{listener=\"telemetry\",result=\"authenticated\",source=\"cache\"} 1",
        "scrape_guard_certificate_expiry_timestamp_seconds{listener=\"main\"} 1900000000",
        "scrape_guard_config_last_reload_successful{listener=\"telemetry\",flag=\"--listeners-file\",file=\"/etc/l.yaml\"} 0",
        "scrape_guard_tls_handshake_failures_total{listener=\"telemetry\",reason=\"client_certificate\"} 1",
        // Reviews and caches are shared: no listener.
        "scrape_guard_review_errors_total{review=\"tokenreview\"} 1",
        "scrape_guard_cache_entries{cache=\"authorization\"} 2",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    // The process's own numbers move between two readings.
    let ours = |text: &str| -> String {
        text.lines()
            .filter(|line| !line.contains("process_"))
            .collect()
    };
    assert_eq!(
        ours(&main.unlabelled().encode(1, 2)),
        ours(&text),
        "one registry"
    );
}

#[test]
fn a_serving_view_exports_its_latencies_before_the_first_request() {
    let metrics = Metrics::new();
    assert!(!metrics
        .encode(0, 0)
        .contains("request_duration_seconds_count"));
    metrics.serving();
    metrics.for_listener("main").serving();
    let text = metrics.encode(0, 0);
    for needle in [
        "scrape_guard_request_duration_seconds_count 0",
        "scrape_guard_upstream_duration_seconds_count 0",
        "scrape_guard_request_duration_seconds_count{listener=\"main\"} 0",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn both_formats_carry_the_same_samples() {
    let metrics = Metrics::new();
    metrics.request(200, 0.01);
    metrics.tls_connection(Alpn::H2);
    metrics.certificate_expires(1_900_000_000);
    let open_metrics = metrics.encode_as(Format::OPEN_METRICS, 1, 2);
    let text = metrics.encode_as(Format::Text, 1, 2);
    for needle in [
        "# TYPE scrape_guard_requests counter\n",
        "# TYPE process_cpu_seconds counter\n",
        "scrape_guard_tls_connections_total{alpn=\"h2\"} 1\n",
    ] {
        assert!(
            open_metrics.contains(needle),
            "missing {needle:?} in\n{open_metrics}"
        );
    }
    assert!(open_metrics.ends_with("# EOF\n"), "{open_metrics}");
    for needle in [
        "# HELP scrape_guard_requests_total Requests answered, by status code.\n",
        "# TYPE scrape_guard_requests_total counter\n",
        "# TYPE process_cpu_seconds_total counter\n",
        "# TYPE scrape_guard_request_duration_seconds histogram\n",
        "# TYPE process_resident_memory_bytes gauge\n",
        "scrape_guard_tls_connections_total{alpn=\"h2\"} 1\n",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains("# EOF"), "{text}");
    // Every family is of a type the text format has, and named as its samples are.
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').expect("name and type");
        assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
        assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
    }
    let samples = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("process_"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(samples(&text), samples(&open_metrics));
}
