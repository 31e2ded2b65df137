//! Test doubles for scrape-guard's integration tests, end-to-end suite and benches. They speak
//! the real wire formats over real sockets on 127.0.0.1, so a test exercises the same
//! TLS, HTTP and JSON code a cluster would:
//! - [`pki`]: a CA and certificates generated into a temp dir (nothing checked in expires);
//! - [`apiserver`]: HTTPS, the real TokenReview/SubjectAccessReview JSON; counts reviews
//!   and can be told to fail, stall or go away;
//! - [`issuer`]: the fake apiserver's service-account issuer (keys, discovery, tokens);
//! - [`echo`]: a plain-HTTP exporter that records what it received;
//! - [`raw_upstream`]: an exporter written by hand, recording request heads byte for
//!   byte and answering with given bytes, late or in two parts;
//! - [`proxy`]: scrape-guard in-process, started from command-line flags;
//! - [`process`]: the one child-process guard ([`Process`]: SIGTERM then SIGKILL and a
//!   log file, or SIGKILL at once), the real binary as a child, and [`free_port`];
//! - [`oidc_issuer`]: an OpenID issuer over HTTPS (discovery, key set, ID tokens) that can rotate and fail;
//! - [`https`]: clients trusting the test CA, and the one collected response, [`Reply`];
//! - [`http1`], [`http2`]: requests written by hand, for what a client library would not send;
//! - [`world`]: all of the above wired together;
//! - [`eventually()`]: the one way to wait for something to happen.
//!
//! Which test uses them for what: ARCHITECTURE.md, "Where the tests live" (the one index
//! of the tests).
//!
//! A crate of its own rather than a `mod support;` in every test: each test binary uses
//! part of it, and only a library's unused `pub` items are not dead code. The items
//! tests use most are re-exported here.

pub mod apiserver;
pub mod echo;
pub mod eventually;
pub mod http1;
pub mod http2;
pub mod https;
pub mod issuer;
pub mod oidc_issuer;
pub mod pki;
pub mod process;
pub mod proxy;
pub mod raw_upstream;
pub mod world;

pub use apiserver::{FakeApiserver, FakeUser, Mode};
pub use echo::{Echo, Seen, METRICS_PAGE};
pub use eventually::eventually;
pub use https::{client, client_with, get, send, HttpsClient, Reply};
pub use issuer::{ServiceAccountToken, ISSUER};
pub use oidc_issuer::FakeIssuer;
pub use pki::{install_crypto, Pki};
pub use process::{free_port, run_to_end, spawn_binary, terminate, Process, Tail};
pub use proxy::Proxy;
pub use raw_upstream::{Answer, RawUpstream};
pub use world::{World, SCRAPER, UNBOUND};

/// The first `max` characters of `text` on one line, for failure messages.
pub fn snippet(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}
