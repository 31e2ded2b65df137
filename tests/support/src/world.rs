//! The usual arrangement, in one call: a fake apiserver, an echo exporter, and
//! scrape-guard between them, with a scraper that may `get /metrics` and a user who may
//! do nothing. Tests that need a different arrangement build it from the parts.

use std::{sync::Arc, time::Duration};

use crate::{client, get, install_crypto, Echo, FakeApiserver, Pki, Proxy, METRICS_PAGE};

/// The scraper every suite uses: allowed to `get /metrics`.
pub const SCRAPER: &str = "system:serviceaccount:monitoring:prometheus";
/// A valid user with no grants at all.
pub const UNBOUND: &str = "system:serviceaccount:default:stranger";

/// A fake apiserver, an echo exporter and scrape-guard between them.
pub struct World {
    /// The test PKI (its temp dir holds the kubeconfig too).
    pub pki: Pki,
    /// The fake apiserver the proxy reviews against.
    pub api: Arc<FakeApiserver>,
    /// The exporter behind the proxy.
    pub echo: Echo,
    /// scrape-guard, in-process.
    pub proxy: Proxy,
    /// The scraper's bearer token (it authenticates as `SCRAPER`).
    pub token: String,
}

impl World {
    /// `token` authenticates as `SCRAPER` (may `get /metrics`), "unbound" as `UNBOUND`;
    /// `extra` are scrape-guard flags.
    pub async fn start(token: &str, extra: &[&str]) -> Self {
        install_crypto();
        let pki = Pki::new();
        let api = FakeApiserver::start(&pki).await;
        api.add_token(token, SCRAPER);
        api.add_token("unbound", UNBOUND);
        api.allow(SCRAPER, "get", "/metrics");
        let echo = Echo::start().await;
        let proxy = Proxy::start(&pki, &api, &echo.url(), extra).await;
        Self {
            pki,
            api,
            echo,
            proxy,
            token: token.to_owned(),
        }
    }

    /// Paths (without query) the exporter received, in order.
    pub fn forwarded_paths(&self) -> Vec<String> {
        self.echo.seen().iter().map(|s| path_of(&s.uri)).collect()
    }

    /// The path of the last SubjectAccessReview (`<none>` for a resource review).
    pub fn last_sar_path(&self) -> String {
        self.api.last_sar_spec()["nonResourceAttributes"]["path"]
            .as_str()
            .unwrap_or("<none>")
            .to_owned()
    }

    /// A normal HTTP/1.1 scrape through the client library: must be 200.
    pub async fn healthy_scrape(&self) {
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            get(
                &client(&self.pki, false),
                &self.proxy.url("/metrics"),
                Some(&self.token),
                &[],
            ),
        )
        .await
        .expect("a normal scrape was blocked for 10 s");
        assert_eq!(reply.status, 200, "a normal scrape still works");
        assert_eq!(reply.text(), METRICS_PAGE);
    }
}

fn path_of(uri: &str) -> String {
    uri.split('?').next().unwrap_or_default().to_owned()
}
