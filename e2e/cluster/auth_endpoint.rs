//! The auth endpoint behind a real nginx (`auth_request`), deciding against the real
//! apiserver: the service behind nginx sees only what scrape-guard allowed.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpSocket,
};

use super::support::{
    free_port, http_get_bearer, random_hex, sa_user, write_file, Cluster, Process,
    RecordingUpstream, ScrapeGuard, Tail, PROMETHEUS_SA, UNBOUND_SA,
};

/// nginx from Debian (`NGINX` overrides), in front of `upstream`, asking the auth
/// endpoint on `auth_port` about every request, configured as the README shows: the
/// client's address in `X-Forwarded-For`, and the endpoint's 503 passed on as a 503
/// (nginx turns any auth status but 2xx, 401 and 403 into a 500 of its own). Stopped
/// by PID when dropped.
struct Nginx {
    process: Process,
    addr: SocketAddr,
}

impl Nginx {
    async fn start(dir: &Path, auth_port: u16, upstream: &str) -> Self {
        let port = free_port();
        let dir = dir.join("nginx");
        std::fs::create_dir_all(&dir).expect("nginx dir");
        let d = dir.display();
        let config = format!(
            r#"daemon off;
user root;
worker_processes 1;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      auth_request /scrape-guard-auth;
      auth_request_set $user $upstream_http_x_remote_user;
      auth_request_set $auth_status $upstream_status;
      error_page 500 = @auth_failed;
      proxy_set_header X-Remote-User $user;
      proxy_pass {upstream};
    }}
    location = /scrape-guard-auth {{
      internal;
      proxy_pass https://127.0.0.1:{auth_port};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Forwarded-For $remote_addr;
    }}
    location @auth_failed {{
      if ($auth_status = 503) {{
        add_header Retry-After 1 always;
        return 503;
      }}
      return 500;
    }}
  }}
}}
"#
        );
        let conf = dir.join("nginx.conf");
        write_file(&conf, &config);
        let binary = std::env::var("NGINX").unwrap_or_else(|_| "nginx".into());
        let mut command = Command::new(binary);
        command.arg("-p").arg(&dir).arg("-c").arg(&conf);
        let mut process = Process::spawn("nginx", command, &dir.join("nginx.log"), Tail::Lines(20));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        process
            .await_ready(Duration::from_secs(15), "nginx listening", || async move {
                tokio::net::TcpStream::connect(addr)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
            .await;
        Self { process, addr }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.process.stop();
    }
}

#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn auth_endpoint_behind_a_real_nginx() {
    let cluster = Cluster::private().await;
    let upstream = RecordingUpstream::start().await;
    let auth_port = free_port();
    let _guard = ScrapeGuard::launch(&cluster, "auth-endpoint", &upstream.url())
        .arg(format!("--auth-endpoint-address=127.0.0.1:{auth_port}"))
        .start()
        .await;
    let nginx = Nginx::start(cluster.dir(), auth_port, &upstream.url()).await;
    let get = |token: Option<String>| async move {
        http_get_bearer(nginx.addr, "/metrics", token.as_deref())
            .await
            .unwrap_or_else(|e| panic!("GET through nginx: {e}"))
    };

    let bound = cluster.mint_token(PROMETHEUS_SA).await;
    let reply = get(Some(bound.clone())).await;
    assert_eq!(reply.status, 200, "bound token: {}", reply.describe());
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "the service saw: {seen:?}");
    assert!(
        seen[0].has_header("x-remote-user"),
        "nginx passed the identity on: {seen:?}"
    );

    let unbound = cluster.mint_token(UNBOUND_SA).await;
    let reply = get(Some(unbound)).await;
    assert_eq!(
        reply.status,
        403,
        "{} without RBAC: {}",
        sa_user(UNBOUND_SA),
        reply.describe()
    );
    let reply = get(None).await;
    assert_eq!(reply.status, 401, "no token: {}", reply.describe());
    assert_eq!(upstream.seen().len(), 1, "nothing else reached the service");

    // A fresh token while the apiserver is down: no decision, so nginx must not pass it.
    let fresh = cluster.mint_token(PROMETHEUS_SA).await;
    cluster.stop_apiserver();
    let reply = get(Some(fresh)).await;
    cluster.start_apiserver().await;
    assert!(
        reply.status.as_u16() >= 500,
        "apiserver down: nginx answered {}",
        reply.describe()
    );
    assert_eq!(reply.status, 503, "the endpoint's 503, passed on");
    assert_eq!(reply.headers["retry-after"], "1", "{}", reply.describe());
    assert_eq!(
        upstream.seen().len(),
        1,
        "nothing reached the service during the outage"
    );
}

/// `GET target` exactly as written (no client library parses it), over a connection
/// from `source` (a 127.0.0.x address: another client of nginx) to `addr`. Returns the
/// status code; bounded by 15 s.
async fn raw_get(
    source: Ipv4Addr,
    addr: SocketAddr,
    target: &str,
    token: &str,
) -> Result<u16, String> {
    let exchange = async {
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket
            .bind(SocketAddr::from((source, 0)))
            .map_err(|e| format!("bind {source}: {e}"))?;
        let mut tcp = socket
            .connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\n\r\n"
        );
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        let head = String::from_utf8_lossy(&answer[..answer.len().min(64)]).into_owned();
        head.get(9..12)
            .and_then(|code| code.parse().ok())
            .ok_or(format!("not an HTTP answer: {head:?}"))
    };
    tokio::time::timeout(Duration::from_secs(15), exchange)
        .await
        .unwrap_or_else(|_| Err(format!("GET {target}: no answer within 15 s")))
}

/// Behind nginx every user shares its address. One client flooding junk tokens is held
/// to its own `--max-reviews-per-peer` (keyed on the address nginx puts in
/// `X-Forwarded-For`), not everyone's; and a `#` in the request target is refused, not
/// reviewed as the part before it.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn auth_endpoint_behind_nginx_per_client_caps_and_fragments() {
    let cluster = Cluster::shared().await;
    let upstream = RecordingUpstream::start().await;
    let auth_port = free_port();
    let _guard = ScrapeGuard::launch(&cluster, "auth-endpoint-fair", &upstream.url())
        .arg(format!("--auth-endpoint-address=127.0.0.1:{auth_port}"))
        .start()
        .await;
    let nginx = Nginx::start(cluster.dir(), auth_port, &upstream.url()).await;
    let addr = nginx.addr;
    let (flooder, user) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));

    // A `#` nginx passes on raw: never reviewed as `/metrics` alone.
    let token = cluster.mint_token(PROMETHEUS_SA).await;
    let target = "/metrics#/../../secret";
    let status = raw_get(user, addr, target, &token).await.unwrap();
    assert_ne!(status, 200, "{target} through nginx");
    assert!(
        upstream.seen().is_empty(),
        "the service saw {:?}",
        upstream.seen()
    );

    // 16 requests with junk tokens at once, for 4 s, from one client...
    let until = Instant::now() + Duration::from_secs(4);
    let flood: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while Instant::now() < until {
                    let junk = format!("junk-{}", random_hex(16));
                    statuses.push(raw_get(flooder, addr, "/metrics", &junk).await);
                }
                statuses
            })
        })
        .collect();
    // ...while another user behind the same nginx comes with a new token.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fresh = cluster.mint_token(PROMETHEUS_SA).await;
    let status = raw_get(user, addr, "/metrics", &fresh).await;
    let mut junk = Vec::new();
    for task in flood {
        junk.extend(task.await.expect("flood task"));
    }
    let limited = junk.iter().filter(|s| matches!(s, Ok(503))).count();
    let refused = junk.iter().filter(|s| matches!(s, Ok(401))).count();
    eprintln!(
        "junk flood: {refused} x 401, {limited} x 503 of {}",
        junk.len()
    );
    assert!(limited > 0, "the flooder hit its own cap: {junk:?}");
    assert_eq!(
        status,
        Ok(200),
        "the other user's new token, during the flood"
    );
    assert_eq!(
        upstream.seen().len(),
        1,
        "only the other user's request passed"
    );
}
