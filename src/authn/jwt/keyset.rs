//! A key set fetched from its issuer, kept, and fetched again when a token names a key
//! it does not hold (the issuer rotated its keys), at most once per
//! `KeySetSettings::min_refresh_interval` so junk `kid`s cannot make us hammer the
//! issuer. The last good set stays in force when a fetch fails.
//!
//! How the bytes are fetched is the caller's (`Fetch`): an HTTPS GET of a `jwks_uri`,
//! discovery first, or the apiserver's `/openid/v1/jwks` through its client.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock},
    time::Duration,
};

use tokio::{sync::Mutex, time::Instant};

use super::{Claims, Expectations, Jwks, JwtError, Verifier};

/// The future a `Fetch` returns: the key set's JSON, or why it could not be had.
pub type FetchFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>>;

/// Gets a key set's JSON. Any `Fn() -> FetchFuture` is one.
pub trait Fetch: Send + Sync + 'static {
    fn fetch(&self) -> FetchFuture;
}

impl<F> Fetch for F
where
    F: Fn() -> FetchFuture + Send + Sync + 'static,
{
    fn fetch(&self) -> FetchFuture {
        self()
    }
}

/// Called after every fetch with the number of keys loaded, or why none were.
pub type Observer = Box<dyn Fn(Result<usize, &str>) + Send + Sync>;

/// How often the key set may be fetched again on behalf of tokens.
#[derive(Debug, Clone, Copy)]
pub struct KeySetSettings {
    /// The least time between two fetches caused by unknown `kid`s (or by tokens
    /// arriving while no set is loaded).
    pub min_refresh_interval: Duration,
}

impl Default for KeySetSettings {
    fn default() -> Self {
        Self {
            min_refresh_interval: Duration::from_secs(10),
        }
    }
}

/// A remote key set: the current `Jwks` (if one has loaded) and the means to refresh it.
pub struct RemoteJwks {
    fetch: Box<dyn Fetch>,
    settings: KeySetSettings,
    current: RwLock<Option<Arc<Jwks>>>,
    last_error: RwLock<Option<String>>,
    /// Held while fetching, so concurrent misses fetch once; the time of the last
    /// fetch for the rate limit.
    fetching: Mutex<Option<Instant>>,
    observer: Option<Observer>,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("loaded", &self.current().is_some())
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    /// Nothing is fetched yet: call `refresh` (or let the first token do it).
    pub fn new(fetch: impl Fetch, settings: KeySetSettings) -> Self {
        Self {
            fetch: Box::new(fetch),
            settings,
            current: RwLock::new(None),
            last_error: RwLock::new(None),
            fetching: Mutex::new(None),
            observer: None,
        }
    }

    /// Reports every fetch's outcome to `observer` (metrics, logs).
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The key set in force, if one has loaded.
    pub fn current(&self) -> Option<Arc<Jwks>> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Why the last fetch failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Fetches now, whatever the rate limit says (the background loader's call).
    pub async fn refresh(&self) -> Result<Arc<Jwks>, String> {
        let mut last = self.fetching.lock().await;
        self.fetch_now(&mut last).await
    }

    /// Verifies `token` with the current set, fetching it first if none has loaded and
    /// again if the token names a key the set does not hold.
    pub async fn verify(&self, token: &str, expect: &Expectations) -> Result<Claims, JwtError> {
        let keys = match self.current() {
            Some(keys) => keys,
            None => self.refresh_for_token(None).await?,
        };
        match Verifier::verify(token, &keys, expect) {
            Err(JwtError::UnknownKey { kid, alg }) => {
                let newer = self.refresh_for_token(Some(&keys)).await?;
                if Arc::ptr_eq(&newer, &keys) {
                    return Err(JwtError::UnknownKey { kid, alg });
                }
                Verifier::verify(token, &newer, expect)
            }
            result => result,
        }
    }

    /// A newer set than `seen` if another caller fetched one meanwhile, else a fetch
    /// if the rate limit allows, else `seen` again. `KeysUnavailable` when there is no
    /// set, or the last fetch failed (the token may be good: fail closed, not 401).
    async fn refresh_for_token(&self, seen: Option<&Arc<Jwks>>) -> Result<Arc<Jwks>, JwtError> {
        let mut last = self.fetching.lock().await;
        let current = self.current();
        match (&current, seen) {
            (Some(now), Some(seen)) if !Arc::ptr_eq(now, seen) => return Ok(Arc::clone(now)),
            (Some(now), None) => return Ok(Arc::clone(now)),
            _ => {}
        }
        let limited = last.is_some_and(|at| at.elapsed() < self.settings.min_refresh_interval);
        if !limited {
            return self
                .fetch_now(&mut last)
                .await
                .map_err(JwtError::KeysUnavailable);
        }
        match (current, self.last_error()) {
            (Some(keys), None) => Ok(keys),
            (_, Some(error)) => Err(JwtError::KeysUnavailable(error)),
            (None, None) => Err(JwtError::KeysUnavailable("not fetched yet".into())),
        }
    }

    async fn fetch_now(&self, last: &mut Option<Instant>) -> Result<Arc<Jwks>, String> {
        *last = Some(Instant::now());
        let result = match self.fetch.fetch().await {
            Ok(json) => Jwks::parse(&json),
            Err(error) => Err(error),
        };
        match result {
            Ok(keys) => {
                let keys = Arc::new(keys);
                if let Some(observe) = &self.observer {
                    observe(Ok(keys.keys().len()));
                }
                *self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::clone(&keys));
                *self
                    .last_error
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
                Ok(keys)
            }
            Err(error) => {
                if let Some(observe) = &self.observer {
                    observe(Err(&error));
                }
                *self
                    .last_error
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error.clone());
                Err(error)
            }
        }
    }
}
