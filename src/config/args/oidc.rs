//! `--oidc-*`: kube-rbac-proxy's OIDC flags, and kube-apiserver's names for the three
//! that it spells differently (`--oidc-issuer-url`, `--oidc-client-id`,
//! `--oidc-signing-algs`), aliases resolved in `config/oidc.rs`.

use std::path::PathBuf;

use clap::Args as ClapArgs;

/// kube-apiserver's names, listed with the other dialects' flags.
const ALIASES: &str = "Compatibility: kube-apiserver's OIDC flag names (aliases)";

/// OIDC authentication: verify bearer tokens as ID tokens instead of TokenReviews.
#[derive(Debug, Default, ClapArgs)]
#[command(next_help_heading = "OIDC authentication (replaces the TokenReview)")]
pub struct OidcArgs {
    /// The OpenID issuer's URL (https only). If set, bearer tokens are verified as its ID
    /// tokens, locally, instead of by a TokenReview; client certificates no longer
    /// authenticate (kube-rbac-proxy's behaviour).
    #[arg(long, env = "SCRAPE_GUARD_OIDC_ISSUER", value_name = "URL")]
    pub oidc_issuer: Option<String>,
    /// The client ID: required with --oidc-issuer; it must be in the token's aud.
    #[arg(
        long = "oidc-clientID",
        env = "SCRAPE_GUARD_OIDC_CLIENTID",
        value_name = "ID"
    )]
    pub oidc_client_id: Option<String>,
    /// CA bundle (PEM) verifying the issuer's certificate; else the system's roots.
    #[arg(long, env = "SCRAPE_GUARD_OIDC_CA_FILE", value_name = "FILE")]
    pub oidc_ca_file: Option<PathBuf>,
    /// The claim that names the user [default: email].
    #[arg(long, env = "SCRAPE_GUARD_OIDC_USERNAME_CLAIM", value_name = "CLAIM")]
    pub oidc_username_claim: Option<String>,
    /// The claim that lists the user's groups (a string or an array) [default: groups].
    #[arg(long, env = "SCRAPE_GUARD_OIDC_GROUPS_CLAIM", value_name = "CLAIM")]
    pub oidc_groups_claim: Option<String>,
    /// Prepended to the user name as given (no `{issuer}#` default, unlike kube-apiserver).
    #[arg(long, env = "SCRAPE_GUARD_OIDC_USERNAME_PREFIX", value_name = "PREFIX")]
    pub oidc_username_prefix: Option<String>,
    /// Prepended to each group.
    #[arg(long, env = "SCRAPE_GUARD_OIDC_GROUPS_PREFIX", value_name = "PREFIX")]
    pub oidc_groups_prefix: Option<String>,
    /// A signing algorithm accepted (RS256/384/512, PS256/384/512, ES256/384/512);
    /// repeat it or separate with commas [default: RS256].
    #[arg(
        long,
        env = "SCRAPE_GUARD_OIDC_SIGN_ALG",
        value_name = "ALG",
        value_delimiter = ','
    )]
    pub oidc_sign_alg: Vec<String>,

    /// kube-apiserver's name for --oidc-issuer (alias).
    #[arg(long, value_name = "URL", help_heading = ALIASES)]
    pub oidc_issuer_url: Option<String>,
    /// kube-apiserver's name for --oidc-clientID (alias).
    #[arg(long = "oidc-client-id", value_name = "ID", help_heading = ALIASES)]
    pub oidc_client_id_alias: Option<String>,
    /// kube-apiserver's name for --oidc-sign-alg (alias).
    #[arg(long, value_name = "ALG", value_delimiter = ',', help_heading = ALIASES)]
    pub oidc_signing_algs: Vec<String>,
}
