//! The 403 doctor: `scrape-guard can-i` and `scrape-guard rbac`.
//!
//! This project grew from one troubleshooting note: `forbidden: User
//! "system:anonymous" cannot get path "/metrics"`. `can-i` runs the proxy's own
//! authentication and authorization chain for a token (or a user) and says who it is,
//! what was decided, by which rule — and, when denied, prints the exact RBAC that would
//! allow it. `rbac` prints that RBAC directly.

mod explain;

use std::{fmt::Write as _, sync::Arc};

use http::Method;

use crate::{
    apiserver::Requester,
    app::{self, Chain},
    authn::BearerToken,
    authz::{Authorizer, Plan},
    config::{CanIArgs, CanIConfig, RbacArgs, Who},
    error::ProxyError,
    identity::{Source, User},
    metrics::Metrics,
    routes::{Pattern, Routes, Selected},
};

/// Exit codes, as documented in `--help`.
pub const ALLOWED: u8 = 0;
pub const DENIED: u8 = 1;
pub const ERROR: u8 = 2;

/// Who gets the grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    ServiceAccount { namespace: String, name: String },
    User(String),
    Group(String),
}

impl Subject {
    /// The RBAC subject for a user name: `system:serviceaccount:<ns>:<name>` is a
    /// ServiceAccount (bind the account, not the user string), anything else a User.
    pub fn for_user(name: &str) -> Self {
        match name
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
        {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains(':') =>
            {
                Self::ServiceAccount {
                    namespace: namespace.into(),
                    name: name.into(),
                }
            }
            _ => Self::User(name.into()),
        }
    }

    fn binding_suffix(&self) -> String {
        match self {
            Self::ServiceAccount { namespace, name } => format!("{namespace}:{name}"),
            Self::User(name) | Self::Group(name) => name.clone(),
        }
    }

    fn yaml(&self) -> String {
        match self {
            Self::ServiceAccount { namespace, name } => format!(
                "  - kind: ServiceAccount\n    name: {}\n    namespace: {}\n",
                quote(name),
                quote(namespace)
            ),
            Self::User(name) => format!(
                "  - kind: User\n    apiGroup: rbac.authorization.k8s.io\n    name: {}\n",
                quote(name)
            ),
            Self::Group(name) => format!(
                "  - kind: Group\n    apiGroup: rbac.authorization.k8s.io\n    name: {}\n",
                quote(name)
            ),
        }
    }
}

/// The ClusterRole and ClusterRoleBinding granting `verb` on `paths` to `subject`: a
/// YAML stream that starts with `---`, so that appending it to a file of RBAC objects
/// (`scrape-guard rbac >> rbac.yaml`) starts a new document instead of adding keys to
/// the file's last one.
pub fn rbac_yaml(subject: &Subject, paths: &[String], verb: &str) -> String {
    let role = if paths == ["/metrics"] && verb == "get" {
        "scrape-guard-metrics-reader".to_owned()
    } else {
        let slug: Vec<String> = paths.iter().map(|p| slug(p)).collect();
        format!("scrape-guard-{}-{}", slug_part(verb), slug.join("-"))
    };
    let binding = sanitize_name(&format!("{role}:{}", subject.binding_suffix()));
    let urls: Vec<String> = paths.iter().map(|p| quote(p)).collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "---\n\
         # Grants `{verb}` on {} to {}.\n\
         # Warning: a ClusterRole's nonResourceURLs apply on every endpoint that delegates\n\
         # authorization to this cluster's apiserver (kube-rbac-proxy, scrape-guard, the\n\
         # kubelet, control-plane /metrics). Bind it only to subjects that should scrape them.\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: ClusterRole\n\
         metadata:\n  name: {role}\n\
         rules:\n  - nonResourceURLs: [{}]\n    verbs: [{}]\n\
         ---\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: ClusterRoleBinding\n\
         metadata:\n  name: {}\n\
         roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: {role}\n\
         subjects:\n{}",
        paths.join(", "),
        describe(subject),
        urls.join(", "),
        quote(verb),
        quote(&binding),
        subject.yaml(),
    );
    out
}

fn describe(subject: &Subject) -> String {
    match subject {
        Subject::ServiceAccount { namespace, name } => {
            format!(
                "ServiceAccount {namespace}/{name} (user system:serviceaccount:{namespace}:{name})"
            )
        }
        Subject::User(name) => format!("User {name}"),
        Subject::Group(name) => format!("Group {name}"),
    }
}

/// `scrape-guard rbac`.
pub fn rbac(args: &RbacArgs) -> Result<String, String> {
    let subject = match (&args.serviceaccount, &args.user, &args.group) {
        (Some(sa), _, _) => {
            let (namespace, name) = sa
                .split_once('/')
                .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
                .ok_or_else(|| format!("--serviceaccount {sa:?}: want NAMESPACE/NAME"))?;
            Subject::ServiceAccount {
                namespace: namespace.into(),
                name: name.into(),
            }
        }
        (None, Some(user), _) => Subject::User(user.clone()),
        (None, None, Some(group)) => Subject::Group(group.clone()),
        (None, None, None) => {
            return Err("one of --serviceaccount, --user or --group is required".into())
        }
    };
    let paths = if args.paths.is_empty() {
        vec!["/metrics".to_owned()]
    } else {
        args.paths.clone()
    };
    if let Some(bad) = paths
        .iter()
        .find(|p| !p.starts_with('/') && p.as_str() != "*")
    {
        return Err(format!("--path {bad:?} must start with '/'"));
    }
    Ok(rbac_yaml(&subject, &paths, &args.verb))
}

/// What `scrape-guard can-i` found. The binary prints `diagnosis` on stderr and
/// `grant` alone on stdout, so that `can-i … >> rbac.yaml` or `can-i … | kubectl apply
/// -f -` take the RBAC and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Who the caller is, what was decided and by which rule; how to use `grant`.
    pub diagnosis: String,
    /// When denied, the RBAC that would allow it: YAML starting with `---`.
    pub grant: Option<String>,
    /// [`ALLOWED`], [`DENIED`] or [`ERROR`].
    pub code: u8,
}

impl Answer {
    fn said(diagnosis: String, code: u8) -> Self {
        Self {
            diagnosis,
            grant: None,
            code,
        }
    }
}

/// `scrape-guard can-i`.
pub async fn can_i(args: CanIArgs) -> Answer {
    match run_can_i(args).await {
        Ok(answer) => answer,
        Err(error) => Answer::said(format!("error: {error}\n"), ERROR),
    }
}

async fn run_can_i(args: CanIArgs) -> Result<Answer, String> {
    let config = CanIConfig::try_from(args).map_err(|e| e.to_string())?;
    // The proxy's own chain and the flags' listener's authorizer, from the same
    // settings and built the same way as the proxy's.
    let metrics = Arc::new(Metrics::new());
    let chain = app::chain(&config.auth, &metrics)
        .await
        .map_err(|e| e.to_string())?;
    // With `upstreams:`, each route's own authorizer, on the proxy's ServeMux.
    let mut routed = Vec::with_capacity(config.routes.len());
    for (pattern, policy) in &config.routes {
        let authz = chain
            .authorizer(policy, Arc::clone(&metrics))
            .map_err(|e| e.to_string())?;
        routed.push((pattern.clone(), (pattern.clone(), authz)));
    }
    let own = chain
        .authorizer(&config.policy, metrics)
        .map_err(|e| e.to_string())?;
    let Chain {
        apiserver, authn, ..
    } = chain;
    let mut out = String::new();
    let routes = (!routed.is_empty()).then(|| Routes::mux(routed, config.livez.clone()));
    let authz = match &routes {
        None => &own,
        Some(routes) => match route(routes, &config.path, &mut out) {
            Ok(authz) => authz,
            Err(code) => return Ok(Answer::said(out, code)),
        },
    };

    let user = match &config.who {
        Who::User { name, groups } => Arc::new(User {
            name: name.clone(),
            groups: groups.as_slice().into(),
            ..User::default()
        }),
        Who::Token(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
            let token = BearerToken::new(text.trim())
                .map_err(|_| format!("--token-file {}: not a bearer token", path.display()))?;
            match authn.authenticate_token(token, Requester::Process).await {
                Ok(user) => user,
                Err(ProxyError::Unauthenticated(why)) => {
                    let _ = writeln!(out, "user:      (not authenticated: {why})");
                    let _ = writeln!(out, "decision:  denied with 401 Unauthorized: scrape-guard cannot tell who this token belongs to");
                    let _ = writeln!(
                        out,
                        "fix:       use a valid, unexpired token{}",
                        audience_hint(&config.auth.authn.audiences)
                    );
                    return Ok(Answer::said(out, DENIED));
                }
                Err(other) => return Err(other.to_string()),
            }
        }
    };

    // The request the proxy would see: the method whose verb is --verb, --path with its
    // query, --header; the config file decides what that asks (an endpoint, rewrites).
    let request = request_for(&config.verb, &config.path, &config.headers)?;
    let plan = match authz.plan(&request, request.uri.path()) {
        Ok(plan) => plan,
        Err(ProxyError::BadRequest(why)) => {
            let _ = writeln!(out, "user:      {}", user.name);
            let _ = writeln!(out, "decision:  denied with 400 Bad Request: {why}");
            return Ok(Answer::said(out, DENIED));
        }
        Err(other) => return Err(other.to_string()),
    };
    let single = match &plan {
        Plan::Check(checks) if checks.origin.is_none() && checks.records.len() == 1 => {
            Some(checks.records[0].clone())
        }
        _ => None,
    };
    let Some(attributes) = single else {
        return explain_plan(
            authz,
            &user,
            &plan,
            &apiserver,
            &config.policy.rbac_files,
            out,
        )
        .await;
    };
    let outcome = authz
        .decide(&user, &attributes, Requester::Process)
        .await
        .map_err(|e| e.to_string())?;

    let uid = if user.uid.is_empty() {
        String::new()
    } else {
        format!(" (uid {})", user.uid)
    };
    let _ = writeln!(out, "user:      {}{uid}", user.name);
    let _ = writeln!(
        out,
        "groups:    {}",
        if user.groups.is_empty() {
            "(none)".into()
        } else {
            user.groups.join(", ")
        }
    );
    let _ = writeln!(out, "request:   {}", attributes.action());
    let reason = if outcome.reason.is_empty() {
        "no rule allows it".to_owned()
    } else {
        outcome.reason.clone()
    };
    if outcome.allowed {
        let _ = writeln!(out, "decision:  allowed");
        let _ = writeln!(
            out,
            "by:        {}: {reason}",
            describe_source(outcome.source)
        );
        return Ok(Answer::said(out, ALLOWED));
    }
    let _ = writeln!(out, "decision:  denied");
    let _ = writeln!(
        out,
        "by:        {}: {reason}",
        describe_source(outcome.source)
    );
    let _ = writeln!(
        out,
        "forbidden: User {:?} cannot {}",
        user.name,
        attributes.action()
    );
    let _ = writeln!(
        out,
        "\n{}",
        how_to_apply(apiserver.is_some(), &config.policy.rbac_files)
    );
    let subject = Subject::for_user(&user.name);
    let grant = if attributes.resource.is_some() {
        explain::resource_rbac_yaml(&subject, &attributes)
    } else {
        rbac_yaml(
            &subject,
            std::slice::from_ref(&attributes.path.to_string()),
            &attributes.verb,
        )
    };
    Ok(Answer {
        diagnosis: out,
        grant: Some(grant),
        code: DENIED,
    })
}

/// What to do with the grant, said on stderr: apply it to the cluster that decided, or,
/// standalone, add it to the policy file (`>>` is safe: it starts with `---`).
fn how_to_apply(apiserver: bool, rbac_files: &[std::path::PathBuf]) -> String {
    match (apiserver, rbac_files) {
        (true, _) => "To allow it, apply the RBAC printed on stdout: \
                      scrape-guard can-i ... | kubectl apply -f -"
            .to_owned(),
        // Standalone: there is no cluster to apply it to; the RBAC file is the policy.
        (false, []) => "To allow it, save the RBAC printed on stdout and pass it with \
                        --rbac-file: scrape-guard can-i ... > rbac.yaml"
            .to_owned(),
        (false, [first, ..]) => format!(
            "To allow it, append the RBAC printed on stdout to the --rbac-file (it is re-read \
             when it changes): scrape-guard can-i ... >> {}",
            first.display()
        ),
    }
}

/// The route of `upstreams:` the proxy would give `target` (a path and query), named
/// in `out`; when the proxy answers without authorizing (404, 301, `--livez-path`), what
/// it answers, said in `out`, and the exit code.
fn route<'r>(
    routes: &'r Routes<(Pattern, Authorizer)>,
    target: &str,
    out: &mut String,
) -> Result<&'r Authorizer, u8> {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let (said, code) = match routes.select(path, query) {
        Ok(Selected::Route(routed)) => {
            let (pattern, authz) = routed.target;
            let _ = writeln!(out, "route:     upstreams: path {pattern}");
            return Ok(authz);
        }
        Ok(Selected::Livez) => (
            "route:     --livez-path\ndecision:  allowed: the proxy answers OK, no authentication"
                .to_owned(),
            ALLOWED,
        ),
        Err(ProxyError::MovedPermanently(to)) => (
            format!(
                "route:     none yet: the proxy redirects it\n\
                 decision:  301 Moved Permanently to {to}: ask about that path"
            ),
            DENIED,
        ),
        // `select` answers nothing else: no route.
        Err(_) => (
            format!(
                "route:     no path of upstreams: matches {path}\n\
                 decision:  denied with 404 Not Found: the proxy routes it nowhere"
            ),
            DENIED,
        ),
    };
    let _ = writeln!(out, "{said}");
    Err(code)
}

/// `can-i` for a request decided by one of the config file's `endpoints`, or by
/// several records at once (rewrites): each rule's decision, then the RBAC for the
/// first denied one.
async fn explain_plan(
    authz: &crate::authz::Authorizer,
    user: &User,
    plan: &Plan,
    apiserver: &Option<Arc<crate::apiserver::Apiserver>>,
    rbac_files: &[std::path::PathBuf],
    mut out: String,
) -> Result<Answer, String> {
    let _ = writeln!(out, "user:      {}", user.name);
    let explained = explain::explain(authz, user, plan, &mut out).await?;
    if explained.allowed {
        let _ = writeln!(out, "decision:  allowed");
        return Ok(Answer::said(out, ALLOWED));
    }
    let _ = writeln!(out, "decision:  denied");
    let Some(record) = explained.grant.filter(|r| r.resource.is_some()) else {
        return Ok(Answer::said(out, DENIED));
    };
    let _ = writeln!(out, "\n{}", how_to_apply(apiserver.is_some(), rbac_files));
    Ok(Answer {
        diagnosis: out,
        grant: Some(explain::resource_rbac_yaml(
            &Subject::for_user(&user.name),
            &record,
        )),
        code: DENIED,
    })
}

/// The request `can-i` asks about: the method whose verb is `verb` (`get` is GET,
/// `create` POST, ...; another verb is its own method in upper case).
fn request_for(
    verb: &str,
    target: &str,
    headers: &[(String, String)],
) -> Result<http::request::Parts, String> {
    let method = match verb {
        "get" => Method::GET,
        "create" => Method::POST,
        "update" => Method::PUT,
        "patch" => Method::PATCH,
        "delete" => Method::DELETE,
        "head" => Method::HEAD,
        "options" => Method::OPTIONS,
        other => Method::from_bytes(other.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("--verb {other:?} is not a method name"))?,
    };
    let mut request = http::Request::builder().method(method).uri(target);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(())
        .map_err(|e| format!("--path {target:?} or --header: {e}"))?;
    Ok(request.into_parts().0)
}

fn describe_source(source: Source) -> &'static str {
    match source {
        Source::Local => "local policy",
        Source::Apiserver | Source::Cache => "apiserver",
        Source::Stale => "apiserver (stale)",
        Source::Standalone => "standalone",
        Source::Certificate => "client certificate",
        Source::Oidc => "OIDC issuer",
    }
}

fn audience_hint(audiences: &[String]) -> String {
    if audiences.is_empty() {
        String::new()
    } else {
        format!(
            " issued for one of these audiences: {} (kubectl create token --audience=…)",
            audiences.join(", ")
        )
    }
}

/// A YAML scalar, quoted when it could be misread.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && !s.starts_with(['-', '.'])
        && !matches!(
            s,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
        )
        && s.parse::<f64>().is_err();
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

fn slug(path: &str) -> String {
    let slug = slug_part(path.trim_matches('/'));
    if slug.is_empty() {
        "root".into()
    } else {
        slug
    }
}

fn slug_part(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if c == '*' {
            out.push_str("-all");
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// RBAC object names may not contain '/' or '%'.
fn sanitize_name(s: &str) -> String {
    s.replace(['/', '%'], "-")
}

#[cfg(test)]
mod tests;
