//! What the suite asks the real apiserver, through kube: tokens from the TokenRequest
//! API, RBAC objects, SubjectAccessReviews ("can-i"), manifests applied with
//! server-side apply, and the apiserver's own count of the reviews it has served.
//!
//! (Server-side apply is for setup only. In 1.20 it rejects a Service port without
//! `protocol` — "associative list with keys has an element that omits key field" —
//! which `kubectl apply` accepts and the apiserver defaults, so the check of deploy/
//! runs what users run: `kubectl apply --dry-run=server`.)

use std::{
    fmt,
    ops::Sub,
    path::Path,
    sync::atomic::{AtomicI64, Ordering},
    time::Duration,
};

use k8s_openapi::{
    api::{
        authentication::v1::{TokenRequest, TokenRequestSpec},
        authorization::v1::{
            NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
        },
        core::v1::{Namespace, ServiceAccount},
        rbac::v1::{ClusterRoleBinding, RoleRef, Subject as RbacSubject},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    core::GroupVersionKind,
    discovery::{self, Scope},
};
use serde_json::Value;

use super::Cluster;
use crate::cluster::support::{
    eventually, remember_secret, repo_path, sa_user, snippet, PROMETHEUS_SA, PROXY_SA, UNBOUND_SA,
};

/// The ClusterRole deploy/rbac-scraper.yaml defines: `get` on /metrics.
pub(crate) const METRICS_READER: &str = "scrape-guard-metrics-reader";
const FIELD_MANAGER: &str = "scrape-guard-e2e";
/// The kinds a deploy/ file may consist of to be applied for real at setup.
const RBAC_KINDS: [&str; 6] = [
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// What setup applied from deploy/ and what that left missing (then the fallback
/// fixtures were applied so that the other tests can still run).
#[derive(Default)]
pub(super) struct DeployRbac {
    pub(super) applied: Vec<String>,
    pub(super) missing: Vec<String>,
}

/// Whom a binding grants the metrics ClusterRole to.
pub(crate) enum Subject<'a> {
    ServiceAccount((&'a str, &'a str)),
    Group(&'a str),
}

/// The apiserver's own count of reviews served (`apiserver_request_total`, all labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reviews {
    pub(crate) token_reviews: u64,
    pub(crate) access_reviews: u64,
}

pub(crate) async fn client(kubeconfig: &Path) -> kube::Client {
    let text = Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("reading {}: {e}", kubeconfig.display()));
    let config = kube::Config::from_custom_kubeconfig(text, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kube config from {}: {e}", kubeconfig.display()));
    kube::Client::try_from(config).expect("a kube client")
}

/// Setup shared by every control plane: deploy/'s RBAC for real (checked, with the
/// fallback fixtures if it falls short), the scraper account, namespace e2e with an
/// account that has no binding.
pub(super) async fn prepare(client: &kube::Client) -> DeployRbac {
    ensure_namespace(client, PROXY_SA.0).await;
    let mut rbac = DeployRbac::default();
    for file in deploy_files() {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let objects = parse_manifests(&text).unwrap_or_default();
        let rbac_only = !objects.is_empty()
            && objects
                .iter()
                .all(|o| RBAC_KINDS.contains(&o["kind"].as_str().unwrap_or_default()));
        if !rbac_only {
            continue;
        }
        let name = file_name(&file);
        match apply_file(client, &file).await {
            Ok(_) => rbac.applied.push(name),
            Err(e) => rbac.missing.push(format!("applying {name} failed: {e}")),
        }
    }
    // The scraper's account may come from the Prometheus side of a real cluster.
    ensure_service_account(client, PROMETHEUS_SA).await;
    rbac.missing.extend(rbac_gaps(client).await);
    if !rbac.missing.is_empty() {
        eprintln!(
            "NOTE: deploy/ RBAC ({:?}) is not enough: {:?}; applying e2e/fixtures/fallback-rbac-*.yaml",
            rbac.applied, rbac.missing
        );
        for fallback in ["fallback-rbac-proxy.yaml", "fallback-rbac-scraper.yaml"] {
            let path = repo_path("e2e/fixtures").join(fallback);
            if let Err(e) = apply_file(client, &path).await {
                panic!("applying {}: {e}", path.display());
            }
        }
        let still = rbac_gaps(client).await;
        assert!(
            still.is_empty(),
            "RBAC still incomplete after the fallback: {still:?}"
        );
    }
    ensure_namespace(client, UNBOUND_SA.0).await;
    ensure_service_account(client, UNBOUND_SA).await;
    assert!(
        !may_get_metrics(client, UNBOUND_SA).await,
        "{}/{} may get /metrics without any binding: does the cluster grant it to every account?",
        UNBOUND_SA.0,
        UNBOUND_SA.1
    );
    rbac
}

/// What scrape-guard and the scraper need and cannot do (empty: deploy/ is enough).
async fn rbac_gaps(client: &kube::Client) -> Vec<String> {
    let mut missing = Vec::new();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), PROXY_SA.0);
    if accounts.get_opt(PROXY_SA.1).await.ok().flatten().is_none() {
        missing.push(format!("ServiceAccount {}/{}", PROXY_SA.0, PROXY_SA.1));
    }
    for (group, resource) in [
        ("authentication.k8s.io", "tokenreviews"),
        ("authorization.k8s.io", "subjectaccessreviews"),
    ] {
        if !can(client, PROXY_SA, Access::Create { group, resource }).await {
            missing.push(format!(
                "{} cannot create {resource}.{group}",
                sa_user(PROXY_SA)
            ));
        }
    }
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(client.clone());
    if roles.get_opt(METRICS_READER).await.ok().flatten().is_none() {
        missing.push(format!("ClusterRole {METRICS_READER}"));
    }
    if !may_get_metrics(client, PROMETHEUS_SA).await {
        missing.push(format!("{} cannot get /metrics", sa_user(PROMETHEUS_SA)));
    }
    missing
}

enum Access {
    Create {
        group: &'static str,
        resource: &'static str,
    },
    Get(&'static str),
}

/// A SubjectAccessReview for a service account (user and groups as the apiserver
/// authenticates it), as `kubectl auth can-i --as` would ask.
async fn can(client: &kube::Client, sa: (&str, &str), access: Access) -> bool {
    let (resource_attributes, non_resource_attributes) = match access {
        Access::Create { group, resource } => (
            Some(ResourceAttributes {
                verb: Some("create".into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                ..Default::default()
            }),
            None,
        ),
        Access::Get(path) => (
            None,
            Some(NonResourceAttributes {
                path: Some(path.into()),
                verb: Some("get".into()),
            }),
        ),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(sa_user(sa)),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", sa.0),
                "system:authenticated".into(),
            ]),
            resource_attributes,
            non_resource_attributes,
            ..Default::default()
        },
        ..Default::default()
    };
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = reviews
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| panic!("SubjectAccessReview for {}: {e}", sa_user(sa)));
    answer.status.is_some_and(|s| s.allowed)
}

async fn may_get_metrics(client: &kube::Client, sa: (&str, &str)) -> bool {
    can(client, sa, Access::Get("/metrics")).await
}

pub(crate) async fn ensure_namespace(client: &kube::Client, name: &str) {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    create_if_missing(Api::all(client.clone()), &namespace, name).await;
}

pub(crate) async fn ensure_service_account(client: &kube::Client, (namespace, name): (&str, &str)) {
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    create_if_missing(Api::namespaced(client.clone(), namespace), &account, name).await;
}

async fn create_if_missing<K>(api: Api<K>, object: &K, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_already_exists() => {}
        Err(e) => panic!("creating {name}: {e}"),
    }
}

static TOKEN_SEQUENCE: AtomicI64 = AtomicI64::new(0);

/// A fresh token of a service account from the TokenRequest API (audience: the
/// apiserver's default unless given). Two requests for one account within a second
/// return the same JWT in 1.20 (no `jti`), so every request asks for a different
/// lifetime: each token is really new.
pub(crate) async fn mint_token(
    client: &kube::Client,
    (namespace, name): (&str, &str),
    audience: Option<&str>,
) -> String {
    let seq = TOKEN_SEQUENCE.fetch_add(1, Ordering::SeqCst) + 1;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.map(|a| vec![a.to_owned()]).unwrap_or_default(),
            expiration_seconds: Some(7200 + seq),
            ..Default::default()
        },
        ..Default::default()
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let answer = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"));
    let token = answer
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("TokenRequest for {namespace}/{name} returned no token"));
    let label = match audience {
        Some(a) => format!("token #{seq} of {namespace}/{name} (audience {a})"),
        None => format!("token #{seq} of {namespace}/{name}"),
    };
    remember_secret(label, &token);
    token
}

// === manifests ===

/// The manifest files directly in deploy/ and deploy/cert-manager/, and the mixin's
/// PrometheusRule, sorted.
pub(crate) fn deploy_files() -> Vec<std::path::PathBuf> {
    // deploy/*.yaml (what kustomization.yaml lists, and the file itself is not an
    // object) and deploy/cert-manager/*.yaml (applied by hand, beside cert-manager).
    let mut files = Vec::new();
    for dir in [repo_path("deploy"), repo_path("deploy/cert-manager")] {
        files.extend(
            std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.file_name().is_some_and(|n| n != "kustomization.yaml")
                        && p.extension()
                            .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
                }),
        );
    }
    // The mixin's PrometheusRule (applied by hand too; its neighbours are promtool's
    // tests and a Grafana dashboard, not objects).
    files.push(repo_path("deploy/mixin/prometheusrule.yaml"));
    files.sort();
    files
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The objects of a multi-document YAML (or JSON) manifest, `kind: List` unpacked.
pub(crate) fn parse_manifests(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    let mut objects = Vec::new();
    for doc in docs {
        match doc["kind"].as_str() {
            Some("List") => objects.extend(doc["items"].as_array().cloned().unwrap_or_default()),
            _ => objects.push(doc),
        }
    }
    Ok(objects)
}

/// Server-side applies every object of a file: "Kind namespace/name" for each, or the
/// apiserver's first complaint.
pub(crate) async fn apply_file(client: &kube::Client, path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut done = Vec::new();
    for object in parse_manifests(&text)? {
        done.push(apply_object(client, object).await?);
    }
    Ok(done)
}

async fn apply_object(client: &kube::Client, object: Value) -> Result<String, String> {
    let object: DynamicObject =
        serde_json::from_value(object).map_err(|e| format!("not a Kubernetes object: {e}"))?;
    let types = object.types.clone().ok_or("no apiVersion/kind")?;
    let gvk = GroupVersionKind::try_from(&types).map_err(|e| e.to_string())?;
    let name = object.metadata.name.clone().ok_or("no metadata.name")?;
    let (resource, capabilities) = discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| format!("{} {name}: kind unknown to the apiserver: {e}", types.kind))?;
    let (api, shown): (Api<DynamicObject>, _) = match capabilities.scope {
        Scope::Namespaced => {
            let namespace = object.metadata.namespace.as_deref().unwrap_or("default");
            (
                Api::namespaced_with(client.clone(), namespace, &resource),
                format!("{} {namespace}/{name}", types.kind),
            )
        }
        Scope::Cluster => (
            Api::all_with(client.clone(), &resource),
            format!("{} {name}", types.kind),
        ),
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(&object))
        .await
        .map(|_| shown.clone())
        .map_err(|e| format!("{shown}: {e}"))
}

// === impl Cluster ===

impl Cluster {
    /// A fresh token of `sa` for the apiserver's default audience.
    pub(crate) async fn mint_token(&self, sa: (&str, &str)) -> String {
        mint_token(self.client(), sa, None).await
    }

    /// A fresh token of `sa` for `audience` only.
    pub(crate) async fn mint_token_for(&self, sa: (&str, &str), audience: &str) -> String {
        mint_token(self.client(), sa, Some(audience)).await
    }

    /// Creates the namespace and the service account unless they exist.
    pub(crate) async fn ensure_service_account(&self, sa: (&str, &str)) {
        ensure_namespace(self.client(), sa.0).await;
        ensure_service_account(self.client(), sa).await;
    }

    /// Whether the apiserver's RBAC lets `sa` get /metrics (a SubjectAccessReview).
    pub(crate) async fn may_get_metrics(&self, sa: (&str, &str)) -> bool {
        may_get_metrics(self.client(), sa).await
    }

    /// Binds the metrics ClusterRole (deploy/rbac-scraper.yaml's) to `subject` through a
    /// ClusterRoleBinding called `name`.
    pub(crate) async fn bind_metrics_reader(&self, name: &str, subject: Subject<'_>) {
        let subject = match subject {
            Subject::ServiceAccount((namespace, account)) => RbacSubject {
                kind: "ServiceAccount".into(),
                name: account.into(),
                namespace: Some(namespace.into()),
                api_group: None,
            },
            Subject::Group(group) => RbacSubject {
                kind: "Group".into(),
                name: group.into(),
                api_group: Some("rbac.authorization.k8s.io".into()),
                namespace: None,
            },
        };
        let binding = ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: METRICS_READER.into(),
            },
            subjects: Some(vec![subject]),
        };
        let bindings: Api<ClusterRoleBinding> = Api::all(self.client().clone());
        bindings
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&binding),
            )
            .await
            .unwrap_or_else(|e| panic!("applying ClusterRoleBinding {name}: {e}"));
    }

    /// Deletes a ClusterRoleBinding (gone already is fine).
    pub(crate) async fn delete_binding(&self, name: &str) {
        let bindings: Api<ClusterRoleBinding> = Api::all(self.client().clone());
        match bindings.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(e) => panic!("deleting ClusterRoleBinding {name}: {e}"),
        }
    }

    /// Whether a ClusterRole / ClusterRoleBinding of that name exists.
    pub(crate) async fn cluster_role_exists(&self, name: &str) -> bool {
        let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(self.client().clone());
        roles.get_opt(name).await.ok().flatten().is_some()
    }

    pub(crate) async fn binding_exists(&self, name: &str) -> bool {
        let bindings: Api<ClusterRoleBinding> = Api::all(self.client().clone());
        bindings.get_opt(name).await.ok().flatten().is_some()
    }

    pub(crate) async fn delete_cluster_role(&self, name: &str) {
        let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(self.client().clone());
        match roles.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(e) => panic!("deleting ClusterRole {name}: {e}"),
        }
    }

    /// Server-side applies every object of a manifest file ("Kind ns/name" for each).
    pub(crate) async fn apply_file(&self, path: &Path) -> Result<Vec<String>, String> {
        apply_file(self.client(), path).await
    }

    /// Waits (bounded) until the CustomResourceDefinition `name` is Established and its
    /// kind is in the apiserver's discovery documents.
    pub(crate) async fn await_crd_established(&self, name: &str) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client().clone());
        let what = format!("CustomResourceDefinition {name} Established and discoverable");
        eventually(Duration::from_secs(30), &what, || async {
            let crd = crds.get(name).await.map_err(|e| e.to_string())?;
            let established = crd
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if !established {
                return Err("not Established yet".into());
            }
            let version = crd.spec.versions.first().ok_or("no versions")?;
            let gvk = GroupVersionKind::gvk(&crd.spec.group, &version.name, &crd.spec.names.kind);
            discovery::pinned_kind(self.client(), &gvk)
                .await
                .map(drop)
                .map_err(|e| format!("not in discovery yet: {e}"))
        })
        .await;
    }

    /// The apiserver's count of reviews served, once it has stopped moving (a request
    /// is counted as its response is written, so read until two reads agree).
    pub(crate) async fn reviews(&self) -> Reviews {
        let mut previous = self.reviews_now().await;
        for _ in 0..15 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = self.reviews_now().await;
            if now == previous {
                return now;
            }
            previous = now;
        }
        panic!("apiserver_request_total still moving after 4.5 s (last: {previous:?})")
    }

    async fn reviews_now(&self) -> Reviews {
        let request = http::Request::get("/metrics")
            .body(Vec::new())
            .expect("a GET request");
        let text = self
            .client()
            .request_text(request)
            .await
            .unwrap_or_else(|e| panic!("GET the apiserver's /metrics: {e}"));
        Reviews::parse(&text)
    }
}

// === impl Reviews ===

impl Reviews {
    fn parse(metrics: &str) -> Self {
        let mut reviews = Self {
            token_reviews: 0,
            access_reviews: 0,
        };
        for line in metrics.lines() {
            if !line.starts_with("apiserver_request_total{") {
                continue;
            }
            let value = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("unreadable sample: {}", snippet(line, 200)));
            if line.contains("resource=\"tokenreviews\"") {
                reviews.token_reviews += value as u64;
            } else if line.contains("resource=\"subjectaccessreviews\"") {
                reviews.access_reviews += value as u64;
            }
        }
        reviews
    }
}

impl Sub for Reviews {
    type Output = Self;

    fn sub(self, before: Self) -> Self {
        Self {
            token_reviews: self.token_reviews - before.token_reviews,
            access_reviews: self.access_reviews - before.access_reviews,
        }
    }
}

impl fmt::Display for Reviews {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} TokenReview(s) and {} SubjectAccessReview(s)",
            self.token_reviews, self.access_reviews
        )
    }
}
