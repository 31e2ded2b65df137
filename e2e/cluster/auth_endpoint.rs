//! The auth endpoint behind a real nginx (`auth_request`), deciding against the real
//! apiserver: the service behind nginx sees only what scrape-guard allowed.

use std::{net::SocketAddr, path::Path, process::Command, time::Duration};

use super::support::{
    free_port, http_get_bearer, sa_user, write_file, Cluster, Process, RecordingUpstream,
    ScrapeGuard, Tail, PROMETHEUS_SA, UNBOUND_SA,
};

/// nginx from Debian (`NGINX` overrides), in front of `upstream`, asking the auth
/// endpoint on `auth_port` about every request. Stopped by PID when dropped.
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
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test --test cluster -- --ignored"]
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
        reply.status >= 500,
        "apiserver down: nginx answered {}",
        reply.describe()
    );
    assert_eq!(
        upstream.seen().len(),
        1,
        "nothing reached the service during the outage"
    );
}
