//! Files that take effect without a restart: token files, RBAC files, the config file.
//!
//! A `Watched<T>` holds the last good parse of a set of files. A poller re-reads them
//! every few seconds (content compare, so Kubernetes' `..data` symlink swaps and
//! editors' rename-into-place are both seen) and installs a new value only if the new
//! contents parse. A broken or briefly missing file is logged and the last good value
//! stays in force: reloading can never open a hole or take the process down.

use std::{
    fmt,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

/// How often watched files are re-read.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

type Parser<T> = dyn Fn(&[(PathBuf, Vec<u8>)]) -> Result<T, String> + Send + Sync;

/// The current value parsed from a set of files, replaced when they change.
pub struct Watched<T> {
    what: &'static str,
    files: Vec<PathBuf>,
    parse: Box<Parser<T>>,
    current: RwLock<Arc<T>>,
}

impl<T> fmt::Debug for Watched<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watched")
            .field("what", &self.what)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Watched<T> {
    /// Reads and parses `files` now; an error names the file (the parser's job).
    pub fn load(
        what: &'static str,
        files: Vec<PathBuf>,
        parse: impl Fn(&[(PathBuf, Vec<u8>)]) -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, String> {
        let contents = read_all(&files)?;
        let value = parse(&contents)?;
        Ok(Arc::new(Self {
            what,
            files,
            parse: Box::new(parse),
            current: RwLock::new(Arc::new(value)),
        }))
    }

    /// The value in force.
    pub fn get(&self) -> Arc<T> {
        // A poisoned lock still holds the last good value.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Polls the files and swaps in valid new contents until `self` is dropped.
    pub fn spawn_reloader(self: &Arc<Self>) {
        if self.files.is_empty() {
            return;
        }
        let this = Arc::downgrade(self);
        let mut last = read_all(&self.files).ok();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(RELOAD_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                let Some(this) = this.upgrade() else { return };
                let contents = match read_all(&this.files) {
                    Ok(contents) => contents,
                    Err(error) => {
                        tracing::warn!(what = this.what, %error, "cannot re-read; keeping the previous version");
                        continue;
                    }
                };
                if last.as_ref() == Some(&contents) {
                    continue;
                }
                match (this.parse)(&contents) {
                    Ok(value) => {
                        *this.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
                        tracing::info!(what = this.what, files = ?this.files, "reloaded");
                    }
                    Err(error) => {
                        tracing::warn!(what = this.what, %error, "new version rejected; keeping the previous one");
                    }
                }
                last = Some(contents);
            }
        });
    }
}

fn read_all(files: &[PathBuf]) -> Result<Vec<(PathBuf, Vec<u8>)>, String> {
    files
        .iter()
        .map(|path| {
            std::fs::read(path)
                .map(|bytes| (path.clone(), bytes))
                .map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect()
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
        let watched = Watched::load("number", vec![file.clone()], parse_number).unwrap();
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

    #[test]
    fn load_errors_name_the_file() {
        let err = Watched::load("number", vec!["/nonexistent/n".into()], parse_number).unwrap_err();
        assert!(err.contains("/nonexistent/n"), "{err}");
    }
}
