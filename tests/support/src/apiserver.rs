//! An in-process HTTPS apiserver that speaks the real TokenReview and
//! SubjectAccessReview JSON from a table of tokens and grants (and serves ConfigMaps
//! for the cluster lookup). It counts reviews, keeps
//! the specs it was sent, and can be told to fail, stall, slow down or go away — the
//! faults a real apiserver has, on demand and without a cluster. The real
//! kube-apiserver in the end-to-end suite is the judge of fidelity; this is for speed.
//! It is also a service-account issuer (`issuer.rs`): it serves the discovery document
//! and keys, and mints tokens a TokenReview of it then describes like kube-apiserver.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde_json::{json, Value};
use tokio::{net::TcpListener, task::JoinSet};

use crate::{
    issuer::{Issuer, ServiceAccountToken},
    Pki,
};

/// How the fake apiserver answers reviews.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answers every review from the tables.
    Normal,
    /// 500 Internal Server Error for every review.
    Fail,
    /// Never answers.
    Stall,
}

/// Who a token authenticates as.
#[derive(Clone, Debug)]
pub struct FakeUser {
    /// `status.user.username`.
    pub name: String,
    /// `status.user.uid`.
    pub uid: String,
    /// `status.user.groups`.
    pub groups: Vec<String>,
    /// The audiences the token is valid for (the review's `spec.audiences` must meet them).
    pub audiences: Vec<String>,
}

#[derive(Default)]
struct ApiState {
    users: HashMap<String, FakeUser>,
    allowed: HashSet<(String, String, String)>,
    sar_specs: Vec<Value>,
    token_review_specs: Vec<Value>,
    /// ConfigMaps by (namespace, name): their `data`.
    config_maps: HashMap<(String, String), Value>,
    /// Every ConfigMap read is answered 403.
    config_maps_forbidden: bool,
    config_map_reads: usize,
    /// `status.user.extra` of service-account tokens, by token.
    extras: HashMap<String, Value>,
}

/// An HTTPS apiserver that answers TokenReview and SubjectAccessReview like the real
/// one, from a table of tokens and allowed (user, verb, path) triples.
pub struct FakeApiserver {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    /// A kubeconfig for it (trusting the test CA), in the `Pki` temp dir.
    pub kubeconfig: PathBuf,
    token_reviews: Arc<AtomicUsize>,
    sars: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
    fail_next: Arc<AtomicUsize>,
    delay: Arc<Mutex<Duration>>,
    state: Arc<Mutex<ApiState>>,
    tasks: Mutex<JoinSet<()>>,
    issuer: Issuer,
    issuer_fetches: AtomicUsize,
    issuer_forbidden: AtomicBool,
}

impl FakeApiserver {
    /// Listens on 127.0.0.1:0 with the test serving certificate and writes its kubeconfig.
    pub async fn start(pki: &Pki) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let kubeconfig = pki.dir.path().join(format!("kubeconfig-{}", addr.port()));
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    \
                 server: https://127.0.0.1:{port}\n    certificate-authority: {ca}\n\
                 users:\n- name: proxy\n  user:\n    token: proxy-sa-token\n\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: proxy\n\
                 current-context: fake\n",
                port = addr.port(),
                ca = pki.ca_path.display()
            ),
        )
        .unwrap();
        let server = Arc::new(Self {
            addr,
            kubeconfig,
            token_reviews: Arc::default(),
            sars: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Normal)),
            fail_next: Arc::default(),
            delay: Arc::new(Mutex::new(Duration::ZERO)),
            state: Arc::default(),
            tasks: Mutex::new(JoinSet::new()),
            issuer: Issuer::new(),
            issuer_fetches: AtomicUsize::new(0),
            issuer_forbidden: AtomicBool::new(false),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_config(&[b"http/1.1"])));
        let this = Arc::clone(&server);
        server.tasks.lock().unwrap().spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let this2 = Arc::clone(&this);
                this.tasks.lock().unwrap().spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let this = Arc::clone(&this2);
                        async move { Ok::<_, Infallible>(this.answer(req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        server
    }

    /// Serves ConfigMap `namespace/name` with this `data` (replacing any before).
    pub fn set_config_map(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect();
        self.state
            .lock()
            .unwrap()
            .config_maps
            .insert((namespace.into(), name.into()), Value::Object(data));
    }

    /// Answers every ConfigMap read with 403, as for a service account without the Role.
    pub fn forbid_config_maps(&self) {
        self.state.lock().unwrap().config_maps_forbidden = true;
    }

    /// ConfigMap reads so far.
    pub fn config_map_reads(&self) -> usize {
        self.state.lock().unwrap().config_map_reads
    }

    /// A token that authenticates as `name` (groups: system:authenticated).
    pub fn add_token(&self, token: &str, name: &str) {
        self.add_user(
            token,
            FakeUser {
                name: name.into(),
                uid: format!("uid-{name}"),
                groups: vec!["system:authenticated".into()],
                audiences: vec!["https://kubernetes.default.svc".into()],
            },
        );
    }

    /// A token that authenticates as `user`.
    pub fn add_user(&self, token: &str, user: FakeUser) {
        self.state.lock().unwrap().users.insert(token.into(), user);
    }

    /// Grants `user` the non-resource `verb` on `path`, compared as exact strings. A
    /// resource review is looked up as (user, "", "").
    pub fn allow(&self, user: &str, verb: &str, path: &str) {
        self.state
            .lock()
            .unwrap()
            .allowed
            .insert((user.into(), verb.into(), path.into()));
    }

    /// A service-account token signed by this apiserver's issuer, which its
    /// TokenReviews then describe as kube-apiserver would (user, uid, groups, extra).
    pub fn mint_service_account_token(&self, spec: &ServiceAccountToken) -> String {
        let token = self.issuer.mint(spec);
        self.add_service_account(&token, spec);
        token
    }

    /// A legacy (Secret) token of `namespace/name`, which TokenReviews accept.
    pub fn mint_legacy_token(&self, namespace: &str, name: &str) -> String {
        let token = self.issuer.legacy(namespace, name);
        self.add_service_account(&token, &ServiceAccountToken::new(namespace, name));
        token
    }

    fn add_service_account(&self, token: &str, spec: &ServiceAccountToken) {
        let namespace = &spec.namespace;
        self.add_user(
            token,
            FakeUser {
                name: spec.username(),
                uid: spec.uid.clone(),
                groups: vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{namespace}"),
                    "system:authenticated".into(),
                ],
                audiences: spec.audiences.clone(),
            },
        );
        self.state
            .lock()
            .unwrap()
            .extras
            .insert(token.into(), spec.extra());
    }

    /// A new issuer signing key (with a new `kid`); the old ones stay published.
    pub fn rotate_issuer_key(&self) {
        self.issuer.rotate();
    }

    /// GETs of the issuer's discovery document and keys so far.
    pub fn issuer_fetches(&self) -> usize {
        self.issuer_fetches.load(Ordering::SeqCst)
    }

    /// Answers the issuer's documents 403, as to a proxy without the
    /// `system:service-account-issuer-discovery` binding.
    pub fn forbid_issuer_discovery(&self, forbidden: bool) {
        self.issuer_forbidden.store(forbidden, Ordering::SeqCst);
    }

    /// The token no longer authenticates anybody (it was revoked).
    pub fn remove_token(&self, token: &str) {
        self.state.lock().unwrap().users.remove(token);
    }

    /// Takes back a grant made with `allow`.
    pub fn disallow(&self, user: &str, verb: &str, path: &str) {
        self.state
            .lock()
            .unwrap()
            .allowed
            .remove(&(user.into(), verb.into(), path.into()));
    }

    /// TokenReviews received so far.
    pub fn token_reviews(&self) -> usize {
        self.token_reviews.load(Ordering::SeqCst)
    }

    /// Grants `user` the resource `verb` on `resource` (its plural name, any API group)
    /// in `namespace` ("" for the cluster scope), compared as exact strings.
    pub fn allow_resource(&self, user: &str, verb: &str, namespace: &str, resource: &str) {
        self.state.lock().unwrap().allowed.insert((
            user.into(),
            verb.into(),
            resource_key(resource, namespace),
        ));
    }

    /// SubjectAccessReviews received so far.
    pub fn sars(&self) -> usize {
        self.sars.load(Ordering::SeqCst)
    }

    /// The `spec` of every SubjectAccessReview so far, in order.
    pub fn sar_specs(&self) -> Vec<Value> {
        self.state.lock().unwrap().sar_specs.clone()
    }

    /// The `spec` of the last SubjectAccessReview (panics if there was none).
    pub fn last_sar_spec(&self) -> Value {
        self.state
            .lock()
            .unwrap()
            .sar_specs
            .last()
            .cloned()
            .unwrap()
    }

    /// The `spec` of the last TokenReview (panics if there was none).
    pub fn last_token_review_spec(&self) -> Value {
        self.state
            .lock()
            .unwrap()
            .token_review_specs
            .last()
            .cloned()
            .unwrap()
    }

    /// Answers the next `n` reviews with 500, then recovers.
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// How every review from now on is answered.
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// How long each review takes (to make concurrent misses overlap).
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// Closes the listener and every open connection: the apiserver is gone.
    pub fn kill(&self) {
        self.tasks.lock().unwrap().abort_all();
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        if path == "/version" {
            return json_response(
                StatusCode::OK,
                json!({"major": "1", "minor": "20", "gitVersion": "v1.20.2",
                       "gitCommit": "fake", "gitTreeState": "clean", "buildDate": "2021-01-01T00:00:00Z",
                       "goVersion": "go1.19", "compiler": "gc", "platform": "linux/amd64"}),
            );
        }
        if let Some(rest) = path.strip_prefix("/api/v1/namespaces/") {
            return self.config_map(rest);
        }
        if path == "/.well-known/openid-configuration" || path == "/openid/v1/jwks" {
            self.issuer_fetches.fetch_add(1, Ordering::SeqCst);
            if self.issuer_forbidden.load(Ordering::SeqCst) {
                return json_response(
                    StatusCode::FORBIDDEN,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "message": format!("forbidden: User \"system:serviceaccount:monitoring:proxy\" cannot get path \"{path}\""),
                           "reason": "Forbidden", "code": 403}),
                );
            }
            return match path.as_str() {
                "/openid/v1/jwks" => json_response(StatusCode::OK, self.issuer.jwks()),
                _ => json_response(StatusCode::OK, self.issuer.discovery()),
            };
        }
        let body: Value =
            serde_json::from_slice(&req.into_body().collect().await.unwrap().to_bytes())
                .unwrap_or(Value::Null);
        let counter = match path.as_str() {
            "/apis/authentication.k8s.io/v1/tokenreviews" => &self.token_reviews,
            "/apis/authorization.k8s.io/v1/subjectaccessreviews" => &self.sars,
            _ => return json_response(StatusCode::NOT_FOUND, json!({"kind": "Status"})),
        };
        counter.fetch_add(1, Ordering::SeqCst);
        let delay = *self.delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        let failing = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "message": "transient", "reason": "InternalError", "code": 500}),
            );
        }
        match *self.mode.lock().unwrap() {
            Mode::Normal => {}
            Mode::Fail => {
                return json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "message": "etcd is on fire", "reason": "InternalError", "code": 500}),
                )
            }
            Mode::Stall => {
                // Checked again below after the lock is released.
            }
        }
        if *self.mode.lock().unwrap() == Mode::Stall {
            std::future::pending::<()>().await;
        }
        let status = if path.ends_with("tokenreviews") {
            self.token_review_status(&body)
        } else {
            self.sar_status(&body)
        };
        let mut answer = body;
        answer["status"] = status;
        json_response(StatusCode::CREATED, answer)
    }

    /// GET /api/v1/namespaces/{namespace}/configmaps/{name}, as the apiserver answers it.
    fn config_map(&self, rest: &str) -> Response<Full<Bytes>> {
        let mut state = self.state.lock().unwrap();
        state.config_map_reads += 1;
        let Some((namespace, name)) = rest.split_once("/configmaps/") else {
            return json_response(StatusCode::NOT_FOUND, json!({"kind": "Status"}));
        };
        if state.config_maps_forbidden {
            return json_response(
                StatusCode::FORBIDDEN,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "message": format!("configmaps \"{name}\" is forbidden: User \"system:serviceaccount:monitoring:scrape-guard\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"{namespace}\""),
                       "reason": "Forbidden", "code": 403}),
            );
        }
        match state
            .config_maps
            .get(&(namespace.to_owned(), name.to_owned()))
        {
            Some(data) => json_response(
                StatusCode::OK,
                json!({"kind": "ConfigMap", "apiVersion": "v1",
                       "metadata": {"name": name, "namespace": namespace},
                       "data": data}),
            ),
            None => json_response(
                StatusCode::NOT_FOUND,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "message": format!("configmaps \"{name}\" not found"),
                       "reason": "NotFound", "code": 404}),
            ),
        }
    }

    fn token_review_status(&self, review: &Value) -> Value {
        let mut state = self.state.lock().unwrap();
        state.token_review_specs.push(review["spec"].clone());
        let token = review["spec"]["token"].as_str().unwrap_or_default();
        let Some(user) = state.users.get(token) else {
            return json!({"user": {}, "error": "invalid bearer token"});
        };
        let wanted: Vec<String> = review["spec"]["audiences"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let audiences: Vec<String> = if wanted.is_empty() {
            user.audiences.clone()
        } else {
            wanted
                .into_iter()
                .filter(|a| user.audiences.contains(a))
                .collect()
        };
        if audiences.is_empty() {
            return json!({"user": {}, "error": "token audiences are invalid for the target audiences"});
        }
        let mut answer = json!({
            "authenticated": true,
            "user": {"username": user.name, "uid": user.uid, "groups": user.groups},
            "audiences": audiences,
        });
        if let Some(extra) = state
            .extras
            .get(token)
            .filter(|e| e.as_object().is_some_and(|o| !o.is_empty()))
        {
            answer["user"]["extra"] = extra.clone();
        }
        answer
    }

    fn sar_status(&self, review: &Value) -> Value {
        let mut state = self.state.lock().unwrap();
        state.sar_specs.push(review["spec"].clone());
        let spec = &review["spec"];
        let key = (
            spec["user"].as_str().unwrap_or_default().to_owned(),
            spec["nonResourceAttributes"]["verb"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            spec["nonResourceAttributes"]["path"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        let resource = &spec["resourceAttributes"];
        let resource_key = resource.is_object().then(|| {
            (
                key.0.clone(),
                resource["verb"].as_str().unwrap_or_default().to_owned(),
                resource_key(
                    resource["resource"].as_str().unwrap_or_default(),
                    resource["namespace"].as_str().unwrap_or_default(),
                ),
            )
        });
        if state.allowed.contains(&key) || resource_key.is_some_and(|k| state.allowed.contains(&k))
        {
            json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"metrics\""})
        } else {
            json!({"allowed": false})
        }
    }
}

/// How a resource grant is keyed beside the non-resource (verb, path) ones.
fn resource_key(resource: &str, namespace: &str) -> String {
    format!("resource {resource} in {namespace:?}")
}

impl Drop for FakeApiserver {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.abort_all();
        }
    }
}

fn json_response(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}
