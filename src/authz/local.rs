//! Local policy: everything that can be decided without asking the apiserver.
//!
//! Two sources, both optional and both reloaded on change (see `reload.rs`):
//! - `--config-file` (kube-rbac-proxy's schema), or a listener's `authorization:` block
//!   in `--listeners-file` (the same schema): which attributes a request is authorized
//!   as, and static allow rules;
//! - `--rbac-file` (repeatable): the cluster's own RBAC objects, evaluated here.
//!
//! Local policy only ever *allows*. When it has no allow, the apiserver decides — or,
//! with no apiserver (standalone mode), the answer is 403.

use std::{path::PathBuf, sync::Arc};

use http::{HeaderMap, Method, Uri};

use super::{
    config_file::ConfigFile,
    plan::{Authorizers, Plan},
    rbac::Rbac,
    Attributes, ConfigSource, PolicyError,
};
use crate::{
    error::ProxyError,
    identity::User,
    metrics::Metrics,
    reload::{Condition, ReloadError, Watched},
};

/// The local layers of the authorizer chain.
#[derive(Debug, Default, Clone)]
pub(crate) struct LocalPolicy {
    config: Option<Arc<Watched<ConfigFile>>>,
    rbac: Option<Arc<Watched<Rbac>>>,
}

impl LocalPolicy {
    /// Loads the files now; any error names the flag's file and line. With a
    /// `condition` (a listener of `--listeners-file`), every one of them is re-read only
    /// while it holds: the policy in force is the one its entry names, or the previous
    /// one whole.
    pub(crate) fn load(
        config: Option<&ConfigSource>,
        rbac_files: &[PathBuf],
        condition: Option<&Condition>,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, PolicyError> {
        let config = config
            .map(|source| match source {
                ConfigSource::File(path) => {
                    let files = vec![path.clone()];
                    Watched::load_when(
                        "--config-file",
                        files,
                        condition,
                        ConfigFile::parse,
                        metrics,
                    )
                    .map_err(PolicyError::Config)
                }
                ConfigSource::Block { file, locate } => {
                    let locate = Arc::clone(locate);
                    let parse = move |files: &[(PathBuf, Vec<u8>)]| {
                        ConfigFile::parse_block("--listeners-file", files, &locate)
                    };
                    let files = vec![file.clone()];
                    Watched::load_when("--listeners-file", files, condition, parse, metrics)
                        .map_err(PolicyError::Block)
                }
                ConfigSource::Route { file, locate } => {
                    let locate = Arc::clone(locate);
                    let parse = move |files: &[(PathBuf, Vec<u8>)]| {
                        ConfigFile::parse_block("--config-file", files, &locate)
                    };
                    let files = vec![file.clone()];
                    Watched::load_when("--config-file", files, condition, parse, metrics)
                        .map_err(PolicyError::Config)
                }
                ConfigSource::Env { contents, locate } => {
                    let files = [(PathBuf::from("KUBE_RBAC_PROXY_CONFIG"), contents.to_vec())];
                    let parsed = match locate {
                        Some(locate) => ConfigFile::parse_block("--config-file", &files, locate),
                        None => ConfigFile::parse(&files),
                    };
                    parsed
                        .map(|config| Watched::fixed("--config-file", config, |_| {}))
                        .map_err(|e| PolicyError::Config(ReloadError::Parse(e)))
                }
            })
            .transpose()?;
        let rbac = (!rbac_files.is_empty())
            .then(|| {
                let files = rbac_files.to_vec();
                // Named as the reload gauges name them, so the two series join.
                let label: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                let (label, counter) = (label.join(","), Arc::clone(metrics));
                // A version that parses is the one swapped in: its count is the one in force.
                let parse = move |files: &[(PathBuf, Vec<u8>)]| {
                    let rbac = Rbac::parse(files)?;
                    counter.rbac_file_warnings(&label, rbac.warnings());
                    Ok(rbac)
                };
                Watched::load_when("--rbac-file", files, condition, parse, metrics)
            })
            .transpose()
            .map_err(PolicyError::Rbac)?;
        Ok(Self { config, rbac })
    }

    /// Re-reads the files when they change, keeping the last good version.
    pub(crate) fn spawn_reloaders(&self) {
        if let Some(config) = &self.config {
            config.spawn_reloader();
        }
        if let Some(rbac) = &self.rbac {
            rbac.spawn_reloader();
        }
    }

    /// What a request must be allowed to do (see `ConfigFile::plan`).
    pub(crate) fn plan(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<Plan, ProxyError> {
        match &self.config {
            Some(config) => config.get().plan(method, uri, headers, path),
            None => Ok(Plan::from(vec![Attributes::new(method, path)])),
        }
    }

    /// Which local rule allows this, if any: static rules first, then RBAC — those of
    /// them that `authorizers` lets decide.
    pub(crate) fn allows(
        &self,
        user: &User,
        attributes: &Attributes,
        authorizers: Authorizers,
    ) -> Option<String> {
        if let Some(reason) = self
            .config
            .as_ref()
            .filter(|_| authorizers.static_rules)
            .and_then(|c| c.get().static_allows(user, attributes))
        {
            return Some(reason);
        }
        self.rbac
            .as_ref()
            .filter(|_| authorizers.rbac)
            .and_then(|r| r.get().allows(user, attributes))
    }

    /// Whether any local rule could ever allow something.
    pub(crate) fn is_empty(&self) -> bool {
        let no_static = self
            .config
            .as_ref()
            .is_none_or(|c| !c.get().has_static_rules());
        let no_rbac = self.rbac.as_ref().is_none_or(|r| r.get().is_empty());
        no_static && no_rbac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The warnings of the `--rbac-file` version loaded are exported, under the labels
    /// of its reload gauge.
    #[test]
    fn rbac_file_warnings_are_counted_in_the_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rbac.yaml");
        std::fs::write(
            &file,
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: \
             {name: b}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: \
             missing}\nsubjects:\n- {kind: ServiceAccount, name: prometheus}\n",
        )
        .unwrap();
        let metrics = Arc::new(Metrics::new());
        LocalPolicy::load(None, std::slice::from_ref(&file), None, &metrics).unwrap();
        let labels = format!("{{flag=\"--rbac-file\",file=\"{}\"}}", file.display());
        let text = metrics.encode(0, 0);
        for series in [
            format!("scrape_guard_rbac_file_warnings{labels} 2"),
            format!("scrape_guard_config_last_reload_successful{labels} 1"),
        ] {
            assert!(text.lines().any(|l| l == series), "no {series}:\n{text}");
        }
    }
}
