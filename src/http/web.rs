//! The web config in force: TLS acceptor, users and headers, re-read when the file or one of the
//! files it names changes. Each new connection and each request compare their modification times (a few `stat`s),
//! so a renewed certificate or a changed password needs no restart. A file that no longer loads
//! keeps the last good configuration in force, logged once when it starts and once when it ends,
//! and shown as `stack_exporter_web_config_last_reload_successful` 0.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hyper::header::{HeaderName, HeaderValue};
use tokio_rustls::TlsAcceptor;

use super::auth::Auth;
use super::{tls, webconfig};
use crate::collector::exporter::HTTP_STATS as STATS;
use crate::logging::Condition;

/// Longest the per-connection check of the files may take (they could sit on a hung network
/// mount): past it the connection goes on with the configuration in force.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Web {
    path: PathBuf,
    current: Mutex<Arc<Loaded>>,
    pub auth: Auth,
    reload_failing: Condition,
    /// A check of the files is under way.
    checking: AtomicBool,
}

/// Ends a check however it ends, a panic included.
struct CheckDone<'a>(&'a AtomicBool);

impl Drop for CheckDone<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One loaded state of the web config.
pub struct Loaded {
    pub acceptor: Option<TlsAcceptor>,
    pub users: std::collections::BTreeMap<String, String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The files it was made from, with what `stat` said of each then.
    stamps: Vec<(PathBuf, Option<Stamp>)>,
}

/// Enough of a file's metadata to see it replaced, rewritten or renamed over (certbot swaps
/// symlinks; `stat` follows them).
type Stamp = (Option<SystemTime>, u64, u64);

impl Web {
    /// Loads the web config at start: any error refuses to start, naming the file, line and key.
    pub fn load(path: &Path) -> anyhow::Result<Arc<Web>> {
        let loaded = load(path)?;
        STATS.web_config.store(true, Ordering::Relaxed);
        Ok(Arc::new(Web {
            path: path.to_path_buf(),
            current: Mutex::new(Arc::new(loaded)),
            auth: Auth::default(),
            reload_failing: Condition::default(),
            checking: AtomicBool::new(false),
        }))
    }

    pub fn current(&self) -> Arc<Loaded> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The configuration for a new connection or request: re-read first if a file changed, so
    /// a user removed from the file is refused even on a connection Prometheus keeps alive.
    /// One check runs at a time: under a flood of connections the others take the configuration
    /// in force (at most one check old) instead of queueing `stat`s on the blocking threads the
    /// collectors need, and a check stuck on a hung mount delays no one after its first second.
    pub async fn fresh(self: &Arc<Self>) -> Arc<Loaded> {
        if self.checking.swap(true, Ordering::AcqRel) {
            return self.current();
        }
        let web = self.clone();
        let check = tokio::task::spawn_blocking(move || {
            let _done = CheckDone(&web.checking);
            web.reload_if_changed()
        });
        match tokio::time::timeout(CHECK_TIMEOUT, check).await {
            Ok(Ok(loaded)) => loaded,
            _ => self.current(),
        }
    }

    fn reload_if_changed(&self) -> Arc<Loaded> {
        let current = self.current();
        let changed = current
            .stamps
            .iter()
            .any(|(path, stamp)| stamp_of(path) != *stamp);
        if !changed {
            return current;
        }
        match load(&self.path) {
            Ok(loaded) => {
                let loaded = Arc::new(loaded);
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = loaded.clone();
                STATS
                    .web_config_reload_failing
                    .store(false, Ordering::Relaxed);
                if !self.reload_failing.set("web config reload", None) {
                    log::info!("web config reloaded from {}", self.path.display());
                }
                loaded
            }
            Err(e) => {
                STATS
                    .web_config_reload_failing
                    .store(true, Ordering::Relaxed);
                self.reload_failing.set(
                    "web config reload",
                    Some(format!("{e:#}; the last good configuration stays in force")),
                );
                current
            }
        }
    }
}

fn load(path: &Path) -> anyhow::Result<Loaded> {
    // Stamped before reading: a change made while we read is seen by the next connection.
    let mut stamps = vec![(path.to_path_buf(), stamp_of(path))];
    let config = webconfig::load(path)?;
    let acceptor = match &config.tls {
        Some(settings) => {
            stamps.extend(tls_files(settings).map(|file| {
                let stamp = stamp_of(&file);
                (file, stamp)
            }));
            let server_config = tls::server_config(settings)
                .map_err(|e| anyhow::anyhow!("{}:{e:#}", path.display()))?;
            Some(TlsAcceptor::from(server_config))
        }
        None => None,
    };
    Ok(Loaded {
        acceptor,
        users: config.users,
        headers: config.headers,
        stamps,
    })
}

fn tls_files(settings: &webconfig::TlsSettings) -> impl Iterator<Item = PathBuf> {
    let ca_file = match &settings.client_auth {
        webconfig::ClientVerification::None => None,
        webconfig::ClientVerification::Optional { ca_file }
        | webconfig::ClientVerification::Required { ca_file } => Some(ca_file.clone()),
    };
    [settings.cert_file.clone(), settings.key_file.clone()]
        .into_iter()
        .chain(ca_file)
}

fn stamp_of(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok(), meta.len(), inode(&meta)))
}

/// The file's inode: a file replaced by one of the same size and time still differs. Windows has
/// none to offer through std; there the time and size alone tell.
#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &std::fs::Metadata) -> u64 {
    0
}
