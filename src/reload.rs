//! Files that take effect without a restart, and the one way they are re-read.
//!
//! A `Watched<T>` holds the last good parse of a set of files. A reloader re-reads them
//! when inotify reports a change in their directories (where Kubernetes swaps a
//! Secret's `..data` symlink, and editors rename into place), and every few seconds
//! anyway, in case an event is missed or inotify is unavailable. It compares contents
//! and installs a new value only if the new contents parse. A broken or briefly
//! missing file is logged and the last good value stays in force: reloading can never
//! open a hole or take the process down. Every file the proxy re-reads goes through
//! `Watched`: the serving pair, the client CA, the upstream CA and client certificate,
//! the token, RBAC and config files.

use std::{
    collections::BTreeSet,
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use futures_util::{FutureExt, StreamExt};
use inotify::{EventStream, Inotify, WatchMask};

use crate::metrics::Metrics;

/// How often watched files are re-read even without a change event.
pub(crate) const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Events often come in bursts (a Secret update writes several files): wait this long
/// after the first one, then read once.
const SETTLE: Duration = Duration::from_millis(100);

/// Wakes a reloader when its files may have changed.
pub(crate) struct Changes {
    interval: tokio::time::Interval,
    events: Option<EventStream<[u8; 4096]>>,
}

impl Changes {
    /// Watches the directories holding `files`; without inotify, only the timer.
    pub(crate) fn new(files: &[&Path]) -> Self {
        let mut interval = tokio::time::interval(RELOAD_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let events = watch_directories(files)
            .map_err(|error| {
                tracing::warn!(%error, "cannot watch files for changes; re-reading every 5 s only");
            })
            .ok();
        Self { interval, events }
    }

    /// Returns at the next change event (after `SETTLE`) or timer tick.
    pub(crate) async fn next(&mut self) {
        let Some(events) = &mut self.events else {
            self.interval.tick().await;
            return;
        };
        tokio::select! {
            _ = self.interval.tick() => {}
            event = events.next() => match event {
                Some(Ok(_)) => {
                    tokio::time::sleep(SETTLE).await;
                    // Take what else arrived meanwhile without waiting for more.
                    while let Some(Some(Ok(_))) = events.next().now_or_never() {}
                }
                // The stream failed or ended: fall back to the timer for good.
                _ => self.events = None,
            },
        }
    }
}

fn watch_directories(files: &[&Path]) -> std::io::Result<EventStream<[u8; 4096]>> {
    let inotify = Inotify::init()?;
    let directories: BTreeSet<&Path> = files
        .iter()
        .map(|file| match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        })
        .collect();
    for directory in directories {
        inotify.watches().add(
            directory,
            WatchMask::CLOSE_WRITE
                | WatchMask::MOVED_TO
                | WatchMask::CREATE
                | WatchMask::DELETE
                | WatchMask::ATTRIB,
        )?;
    }
    inotify.into_event_stream([0; 4096])
}

type Parser<T> = dyn Fn(&[(PathBuf, Vec<u8>)]) -> Result<T, ReloadError> + Send + Sync;
type Hook<T> = dyn Fn(&T) + Send + Sync;
/// `Err` is a sentence naming the file (a condition is written by `config`, which
/// speaks in strings; see `ReloadError::Condition`).
type Check = dyn Fn(&[u8]) -> Result<(), String> + Send + Sync;

/// Why a watched value could not be loaded. At startup it fails the load (and names the
/// file); on a later look it is logged once and the last good value stays in force.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    /// A file could not be read (missing, unreadable).
    #[error("{}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The value's condition does not hold: its files no longer apply.
    #[error("{0}")]
    Condition(String),
    /// The parser refused the contents; its message names the file (and line).
    #[error("{0}")]
    Parse(String),
}

/// Another file that says whether a value's own files still apply: a listener's policy
/// files (its `authorization:` block, `configFile`, `rbacFile`) are read only while
/// `--listeners-file` declares the listener as it did at startup. The file is read
/// with the value's own, in the same look, so that a version of the value is always
/// one the condition held for; while it does not hold, the previous value stays in
/// force whole, and the log and the reload gauge say so.
#[derive(Clone)]
pub(crate) struct Condition {
    pub(crate) file: PathBuf,
    /// `Err` says why the value's files no longer apply.
    pub(crate) holds: Arc<Check>,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// The current value parsed from a set of files, replaced when they change.
///
/// The rules, the same for every file the proxy re-reads: the last good value stays in
/// force until new contents parse; a version is compared by digest (so a token file's
/// contents are not kept in memory a second time) and each rejected version or read
/// error is logged once, not on every tick; `on_swap` runs for the first value and for
/// every value swapped in after it. Each look is reported to the own metrics
/// (`scrape_guard_config_last_reload_successful` and the time of the last success), so
/// a broken file that is being ignored can be alerted on.
pub(crate) struct Watched<T> {
    what: &'static str,
    /// The value's own files, then its condition's file, if it has one.
    files: Vec<PathBuf>,
    /// How many of `files` are the value's own: those its reports name.
    own: usize,
    parse: Box<Parser<T>>,
    on_swap: Box<Hook<T>>,
    current: RwLock<Arc<T>>,
    loaded: Digest,
    /// `None` for a fixed value, which has no file to report on.
    metrics: Option<Arc<Metrics>>,
}

impl<T> fmt::Debug for Watched<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watched")
            .field("what", &self.what)
            .field("files", &&self.files[..self.own])
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Watched<T> {
    /// Reads and parses `files` now; an error names the file (the parser's job).
    pub(crate) fn load(
        what: &'static str,
        files: Vec<PathBuf>,
        parse: impl Fn(&[(PathBuf, Vec<u8>)]) -> Result<T, String> + Send + Sync + 'static,
        metrics: &Arc<Metrics>,
    ) -> Result<Arc<Self>, ReloadError> {
        Self::load_with(what, files, parse, metrics, |_| {})
    }

    /// `load`, for a value whose files apply only while `condition` holds: it is
    /// checked on every look, before `parse` sees the files (a value loaded at startup
    /// must meet it too).
    pub(crate) fn load_when(
        what: &'static str,
        files: Vec<PathBuf>,
        condition: Option<&Condition>,
        parse: impl Fn(&[(PathBuf, Vec<u8>)]) -> Result<T, String> + Send + Sync + 'static,
        metrics: &Arc<Metrics>,
    ) -> Result<Arc<Self>, ReloadError> {
        let Some(condition) = condition.cloned() else {
            return Self::load(what, files, parse, metrics);
        };
        let own = files.len();
        let mut all = files;
        all.push(condition.file.clone());
        let parse = move |contents: &[(PathBuf, Vec<u8>)]| {
            let (own_files, rest) = contents.split_at(own);
            if let Some((_, bytes)) = rest.first() {
                (condition.holds)(bytes).map_err(ReloadError::Condition)?;
            }
            parse(own_files).map_err(ReloadError::Parse)
        };
        Self::build(what, (all, own), parse, metrics, |_| {})
    }

    /// `load`, calling `on_swap` with the first value and with each one swapped in later
    /// (for state derived from the value, such as a certificate's expiry gauge).
    pub(crate) fn load_with(
        what: &'static str,
        files: Vec<PathBuf>,
        parse: impl Fn(&[(PathBuf, Vec<u8>)]) -> Result<T, String> + Send + Sync + 'static,
        metrics: &Arc<Metrics>,
        on_swap: impl Fn(&T) + Send + Sync + 'static,
    ) -> Result<Arc<Self>, ReloadError> {
        let own = files.len();
        let parse =
            move |contents: &[(PathBuf, Vec<u8>)]| parse(contents).map_err(ReloadError::Parse);
        Self::build(what, (files, own), parse, metrics, on_swap)
    }

    /// `files` and how many of them are the value's own (the rest are a condition's).
    fn build(
        what: &'static str,
        (files, own): (Vec<PathBuf>, usize),
        parse: impl Fn(&[(PathBuf, Vec<u8>)]) -> Result<T, ReloadError> + Send + Sync + 'static,
        metrics: &Arc<Metrics>,
        on_swap: impl Fn(&T) + Send + Sync + 'static,
    ) -> Result<Arc<Self>, ReloadError> {
        let contents = read_all(&files)?;
        let value = parse(&contents)?;
        on_swap(&value);
        let watched = Self {
            what,
            own,
            files,
            parse: Box::new(parse),
            on_swap: Box::new(on_swap),
            current: RwLock::new(Arc::new(value)),
            loaded: digest(&contents),
            metrics: Some(Arc::clone(metrics)),
        };
        watched.report(true);
        Ok(Arc::new(watched))
    }

    /// A value that comes from no file and never changes (a generated certificate).
    pub(crate) fn fixed(
        what: &'static str,
        value: T,
        on_swap: impl Fn(&T) + Send + Sync + 'static,
    ) -> Arc<Self> {
        on_swap(&value);
        Arc::new(Self {
            what,
            files: Vec::new(),
            own: 0,
            parse: Box::new(|_| Err(ReloadError::Parse("a fixed value is never re-read".into()))),
            on_swap: Box::new(on_swap),
            current: RwLock::new(Arc::new(value)),
            loaded: digest(&[]),
            metrics: None,
        })
    }

    /// The value in force.
    pub(crate) fn get(&self) -> Arc<T> {
        // A poisoned lock still holds the last good value.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Re-reads the files on change and swaps in valid new contents until `self` is
    /// dropped. Does nothing for a fixed value.
    pub(crate) fn spawn_reloader(self: &Arc<Self>) {
        if self.files.is_empty() {
            return;
        }
        let this = Arc::downgrade(self);
        let files: Vec<&Path> = self.files.iter().map(PathBuf::as_path).collect();
        let mut changes = Changes::new(&files);
        let mut seen = Seen::Version(self.loaded);
        // In the span it is started in (a listener's), so that its lines name it.
        let reloader = async move {
            loop {
                changes.next().await;
                let Some(this) = this.upgrade() else { return };
                this.reload(&mut seen);
            }
        };
        tokio::spawn(tracing::Instrument::in_current_span(reloader));
    }

    /// One look at the files. `seen` is what the last look found, so that an unchanged
    /// version costs no parse and a bad one is reported once.
    fn reload(&self, seen: &mut Seen) {
        let contents = match read_all(&self.files) {
            Ok(contents) => contents,
            Err(error) => {
                let error = error.to_string();
                if *seen != Seen::Unreadable(error.clone()) {
                    tracing::warn!(what = self.what, %error, "cannot re-read; keeping the previous version");
                    self.report(false);
                    *seen = Seen::Unreadable(error);
                }
                return;
            }
        };
        let version = digest(&contents);
        if *seen == Seen::Version(version) {
            return;
        }
        *seen = Seen::Version(version);
        match (self.parse)(&contents) {
            Ok(value) => {
                (self.on_swap)(&value);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
                self.report(true);
                tracing::info!(what = self.what, files = ?&self.files[..self.own], "reloaded");
            }
            Err(error) => {
                self.report(false);
                tracing::warn!(what = self.what, %error, "new version rejected; keeping the previous one");
            }
        }
    }

    /// Whether the files as they are now are the version in force.
    fn report(&self, ok: bool) {
        if let Some(metrics) = &self.metrics {
            let files: Vec<String> = self.files[..self.own]
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            metrics.file_loaded(self.what, &files.join(","), ok);
        }
    }
}

/// A SHA-256 over every file's path and contents.
type Digest = [u8; 32];

/// What the reloader found last time it looked.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// Contents with this digest (accepted or rejected).
    Version(Digest),
    /// This read error.
    Unreadable(String),
}

fn digest(contents: &[(PathBuf, Vec<u8>)]) -> Digest {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for (path, bytes) in contents {
        let path = path.as_os_str().as_encoded_bytes();
        context.update(&(path.len() as u64).to_le_bytes());
        context.update(path);
        context.update(&(bytes.len() as u64).to_le_bytes());
        context.update(bytes);
    }
    let mut out = [0; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// Files as read, wiped when dropped: a token file's tokens and a private key must
/// not stay behind in freed memory once they are parsed.
struct Contents(Vec<(PathBuf, Vec<u8>)>);

impl std::ops::Deref for Contents {
    type Target = [(PathBuf, Vec<u8>)];

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Drop for Contents {
    fn drop(&mut self) {
        for (_, bytes) in &mut self.0 {
            zeroize::Zeroize::zeroize(bytes);
        }
    }
}

fn read_all(files: &[PathBuf]) -> Result<Contents, ReloadError> {
    files
        .iter()
        .map(|path| {
            std::fs::read(path)
                .map(|bytes| (path.clone(), bytes))
                .map_err(|error| ReloadError::Read {
                    path: path.clone(),
                    error,
                })
        })
        .collect::<Result<_, _>>()
        .map(Contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_number(contents: &[(PathBuf, Vec<u8>)]) -> Result<u32, String> {
        let (path, bytes) = &contents[0];
        String::from_utf8_lossy(bytes)
            .trim()
            .parse()
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    #[tokio::test(start_paused = true)]
    async fn valid_changes_apply_and_broken_ones_keep_the_last_good_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n");
        std::fs::write(&file, "1").unwrap();
        let watched =
            Watched::load("number", vec![file.clone()], parse_number, &Arc::default()).unwrap();
        watched.spawn_reloader();
        assert_eq!(*watched.get(), 1);

        let settle = || tokio::time::sleep(RELOAD_INTERVAL * 2);
        std::fs::write(&file, "2").unwrap();
        settle().await;
        assert_eq!(*watched.get(), 2);

        std::fs::write(&file, "two").unwrap();
        settle().await;
        assert_eq!(*watched.get(), 2, "a broken file keeps the last good value");

        std::fs::remove_file(&file).unwrap();
        settle().await;
        assert_eq!(
            *watched.get(),
            2,
            "a missing file keeps the last good value"
        );

        std::fs::write(&file, "3").unwrap();
        settle().await;
        assert_eq!(*watched.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejected_version_is_parsed_once_and_on_swap_sees_each_accepted_value() {
        use std::sync::{
            atomic::{AtomicUsize, Ordering},
            Mutex,
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n");
        std::fs::write(&file, "1").unwrap();
        let parses = Arc::new(AtomicUsize::new(0));
        let swaps = Arc::new(Mutex::new(Vec::new()));
        let (counted, seen) = (Arc::clone(&parses), Arc::clone(&swaps));
        let metrics = Arc::new(Metrics::new());
        let status = |metrics: &Metrics| {
            let text = metrics.encode(0, 0);
            let line = text
                .lines()
                .find(|l| l.starts_with("scrape_guard_config_last_reload_successful{"))
                .map(str::to_owned);
            line.unwrap_or_default()
        };
        let watched = Watched::load_with(
            "number",
            vec![file.clone()],
            move |contents| {
                counted.fetch_add(1, Ordering::Relaxed);
                parse_number(contents)
            },
            &metrics,
            move |value| seen.lock().unwrap().push(*value),
        )
        .unwrap();
        watched.spawn_reloader();
        let settle = || tokio::time::sleep(RELOAD_INTERVAL * 3);

        std::fs::write(&file, "two").unwrap();
        settle().await;
        settle().await;
        assert_eq!(
            parses.load(Ordering::Relaxed),
            2,
            "the broken version is parsed once"
        );
        assert_eq!(*watched.get(), 1);
        assert!(status(&metrics).ends_with(" 0"), "{}", status(&metrics));

        std::fs::write(&file, "3").unwrap();
        settle().await;
        assert_eq!(*watched.get(), 3);
        assert_eq!(parses.load(Ordering::Relaxed), 3);
        assert_eq!(
            *swaps.lock().unwrap(),
            [1, 3],
            "on_swap sees the first and each accepted value"
        );
        assert!(status(&metrics).ends_with(" 1"), "{}", status(&metrics));
    }

    #[test]
    fn load_errors_name_the_file() {
        let err = Watched::load(
            "number",
            vec!["/nonexistent/n".into()],
            parse_number,
            &Arc::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/n"), "{err}");
    }

    /// Polled until `want` or 3 s: well under `RELOAD_INTERVAL`, so only a change
    /// event can make it in time.
    async fn eventually(watched: &Watched<u32>, want: u32) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < deadline {
            if *watched.get() == want {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn changes_are_seen_at_once_including_a_kubernetes_secret_swap() {
        // A Secret volume: n -> ..data/n, ..data -> ..v1; an update writes ..v2 and
        // renames a new ..data symlink over the old one.
        let dir = tempfile::tempdir().unwrap();
        let version = |name: &str, value: &str| {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("n"), value).unwrap();
            std::os::unix::fs::symlink(name, dir.path().join("..data_tmp")).unwrap();
            std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
        };
        version("..v1", "1");
        std::os::unix::fs::symlink("..data/n", dir.path().join("n")).unwrap();
        let watched = Watched::load(
            "number",
            vec![dir.path().join("n")],
            parse_number,
            &Arc::default(),
        )
        .unwrap();
        watched.spawn_reloader();
        // Let the reloader start and take its first, immediate look.
        tokio::time::sleep(Duration::from_millis(200)).await;

        version("..v2", "2");
        assert!(
            eventually(&watched, 2).await,
            "symlink swap not seen within 3 s"
        );

        let plain = dir.path().join("plain");
        std::fs::write(&plain, "5").unwrap();
        let watched =
            Watched::load("number", vec![plain.clone()], parse_number, &Arc::default()).unwrap();
        watched.spawn_reloader();
        tokio::time::sleep(Duration::from_millis(200)).await;
        std::fs::write(&plain, "6").unwrap();
        assert!(eventually(&watched, 6).await, "rewrite not seen within 3 s");
    }
}
