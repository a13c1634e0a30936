//! Where a component keeps its connectionData between restarts.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

/// Keeps the component's one connectionData (none while the component is not registered).
///
/// [`Registration`](super::Registration) calls [`load`](RegistrationStore::load) on every `GET`
/// and `PUT` and [`save`](RegistrationStore::save) when a `PUT` changes the value, one `PUT` at
/// a time. An error of either is answered as a 500 naming the store's error; implementations
/// wrap their own errors with [`io::Error::other`].
///
/// A connectionData holds secrets: a store must not log it, nor show it in a `Debug` output.
#[async_trait]
pub trait RegistrationStore: Send + Sync + 'static {
    /// The stored connectionData; `None` when there is none. An empty string counts as none.
    async fn load(&self) -> io::Result<Option<String>>;

    /// Stores `connection_data`, or forgets it with `None` (deregistration).
    async fn save(&self, connection_data: Option<&str>) -> io::Result<()>;
}

/// A store in memory: the registration is lost when the process ends. For tests, and for
/// components that keep their configuration elsewhere and hand it over at start.
///
/// ```
/// use contextd_client::registration::MemoryStore;
///
/// let empty = MemoryStore::new();
/// let registered = MemoryStore::with_connection_data("eyJzZXJ2aWNlVXJsIjoi…");
/// assert!(!format!("{registered:?}").contains("eyJ"));
/// # let _ = empty;
/// ```
#[derive(Default)]
pub struct MemoryStore {
    value: Mutex<Option<String>>,
}

impl MemoryStore {
    /// An empty store: the component is not registered.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store already holding `connection_data` (an empty string is none).
    pub fn with_connection_data(connection_data: impl Into<String>) -> Self {
        let value: String = connection_data.into();
        Self {
            value: Mutex::new((!value.is_empty()).then_some(value)),
        }
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.value.lock().map(|v| v.is_some()).unwrap_or(false);
        f.debug_struct("MemoryStore")
            .field("connection_data", &if set { "[redacted]" } else { "none" })
            .finish()
    }
}

#[async_trait]
impl RegistrationStore for MemoryStore {
    async fn load(&self) -> io::Result<Option<String>> {
        Ok(self
            .value
            .lock()
            .map_err(|_| io::Error::other("the memory store's lock is poisoned"))?
            .clone())
    }

    async fn save(&self, connection_data: Option<&str>) -> io::Result<()> {
        *self
            .value
            .lock()
            .map_err(|_| io::Error::other("the memory store's lock is poisoned"))? =
            connection_data.filter(|v| !v.is_empty()).map(str::to_owned);
        Ok(())
    }
}

/// A store in one file holding the connectionData as text (a trailing newline and other
/// whitespace around it are ignored). No file, or an empty one, means not registered.
///
/// Every save writes a new file next to it (readable by its owner only, mode `0600` on Unix),
/// flushes it to disk and renames it over the old one, so a crash leaves either the old or the
/// new connectionData, never half of one. Deregistering removes the file. A missing parent
/// directory is created.
///
/// ```no_run
/// use contextd_client::registration::FileStore;
///
/// let store = FileStore::new("/var/lib/my-component/contextservice.connectiondata");
/// assert!(store.path().ends_with("contextservice.connectiondata"));
/// ```
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store in the file at `path` (not touched until the first load or save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file holding the connectionData.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl RegistrationStore for FileStore {
    async fn load(&self) -> io::Result<Option<String>> {
        let path = self.path.clone();
        blocking(move || match std::fs::read_to_string(&path) {
            Ok(text) => {
                let text = text.trim();
                Ok((!text.is_empty()).then(|| text.to_owned()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(with_path(e, "read", &path)),
        })
        .await
    }

    async fn save(&self, connection_data: Option<&str>) -> io::Result<()> {
        let path = self.path.clone();
        let value = connection_data.filter(|v| !v.is_empty()).map(str::to_owned);
        blocking(move || match value {
            Some(value) => write_atomically(&path, value.as_bytes()),
            None => match std::fs::remove_file(&path) {
                Ok(()) => {
                    sync_parent(&path);
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(with_path(e, "remove", &path)),
            },
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("the file store's task failed: {e}")))?
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("can't {what} {}: {e}", path.display()))
}

/// Writes `bytes` to a new owner-only file beside `path`, syncs it, and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;

    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} does not name a file", path.display()),
            )
        })?
        .to_string_lossy()
        .into_owned();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| with_path(e, "create the directory", &dir))?;
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let result = options
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.write_all(b"\n")?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(with_path(e, "write", path));
    }
    sync_parent(path);
    Ok(())
}

/// Makes a rename or removal in `path`'s directory durable (best effort; Unix only).
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_round_trip() {
        let store = MemoryStore::new();
        assert_eq!(store.load().await.unwrap(), None);
        store.save(Some("abc")).await.unwrap();
        assert_eq!(store.load().await.unwrap().as_deref(), Some("abc"));
        store.save(Some("")).await.unwrap();
        assert_eq!(store.load().await.unwrap(), None);
        assert_eq!(
            MemoryStore::with_connection_data("").load().await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn file_store_round_trip_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!(
            "contextd-client-store-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        let store = FileStore::new(dir.join("nested").join("data"));
        assert_eq!(store.load().await.unwrap(), None);
        store.save(Some("one")).await.unwrap();
        store.save(Some("two")).await.unwrap();
        assert_eq!(store.load().await.unwrap().as_deref(), Some("two"));
        let names: Vec<_> = std::fs::read_dir(dir.join("nested"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("data")]);
        store.save(None).await.unwrap();
        store.save(None).await.unwrap();
        assert_eq!(store.load().await.unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
