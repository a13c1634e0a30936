//! Start-up: the only place that names storage backends. Opens the data store and the key
//! store from the configuration, loads or creates the master key, builds the context service.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use contextd_core::crypto::{Keyring, MasterKey};
use contextd_core::service::{Context, ContextConfig};
use contextd_core::store::{KeyStore, Store};
use contextd_store_postgres::{PgKeyStore, PgStore};
use contextd_store_sqlite::{SqliteKeyStore, SqliteStore};

/// Where data lives.
#[derive(Clone, Debug, clap::Args)]
pub struct StorageArgs {
    /// Data directory: SQLite files, the key store and (unless --master-key-file or
    /// CONTEXTD_MASTER_KEY names it elsewhere) the master key file.
    #[arg(long, env = "CONTEXTD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The master key (key-encryption key) file, kept apart from the data: 64 hex digits or
    /// base64 of 32 bytes; created (mode 0600) on first start if missing. Default
    /// DATA_DIR/master.key, with a warning at every start.
    #[arg(long, env = "CONTEXTD_MASTER_KEY_FILE", value_name = "PATH")]
    pub master_key_file: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://…`; default: SQLite in the data directory.
    #[arg(long, env = "CONTEXTD_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Requests with no write to them or their activities for this long are closed.
    #[arg(long, env = "CONTEXTD_REQUEST_AUTOCLOSE", default_value = "5days", value_parser = humantime::parse_duration)]
    pub request_autoclose: std::time::Duration,
    /// A connector that has not exchanged its credentials for a token this long is `stale`.
    #[arg(long, env = "CONTEXTD_CONNECTOR_STALE_AFTER", default_value = "1day", value_parser = humantime::parse_duration)]
    pub connector_stale_after: std::time::Duration,
    /// Organizations' own key-encryption keys, `ORG_NAME=PATH` (repeatable, or comma-separated
    /// in the environment); an org that brought its own key is unreadable without it.
    #[arg(long = "org-kek", env = "CONTEXTD_ORG_KEKS", value_delimiter = ',')]
    pub org_keks: Vec<String>,
    /// Most keys in one search (400 above).
    #[arg(long, env = "CONTEXTD_SEARCH_MAX_TERMS", default_value_t = contextd_core::search::MAX_TERMS)]
    pub search_max_terms: usize,
    /// Most values under one search key (400 above).
    #[arg(long, env = "CONTEXTD_SEARCH_MAX_VALUES", default_value_t = contextd_core::search::MAX_VALUES)]
    pub search_max_values: usize,
    /// Longest search value in characters (400 above).
    #[arg(long, env = "CONTEXTD_SEARCH_MAX_VALUE_CHARS", default_value_t = contextd_core::search::MAX_VALUE_CHARS)]
    pub search_max_value_chars: usize,
}

/// Opens both stores and returns the context service.
pub async fn open_context(args: &StorageArgs) -> anyhow::Result<Arc<Context>> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let (store, keys): (Arc<dyn Store>, Arc<dyn KeyStore>) =
        match (sqlite_files(args)?, args.database_url.as_deref()) {
            (Some(files), _) => open_sqlite(&files)?,
            (None, Some(url)) => open_postgres(url).await?,
            (None, None) => bail!("no database configured"),
        };
    let shared_database = args
        .database_url
        .as_deref()
        .is_some_and(|u| u.starts_with("postgres"));
    if shared_database
        && std::env::var_os("CONTEXTD_MASTER_KEY").is_none()
        && args.master_key_file.is_none()
    {
        tracing::warn!(
            "neither CONTEXTD_MASTER_KEY nor --master-key-file is set: using the master key file \
             of this data directory; every instance sharing the database needs the same master key"
        );
    }
    let master = master_key(&args.data_dir, args.master_key_file.as_deref())?;
    let config = ContextConfig {
        request_autoclose: chrono::Duration::from_std(args.request_autoclose)
            .context("request auto-close period is too long")?,
        connector_stale_after: chrono::Duration::from_std(args.connector_stale_after)
            .context("connector stale period is too long")?,
        search_limits: contextd_core::search::SearchLimits {
            max_terms: args.search_max_terms,
            max_values: args.search_max_values,
            max_value_chars: args.search_max_value_chars,
        },
        ..ContextConfig::default()
    };
    let mut org_keks = Vec::new();
    for spec in &args.org_keks {
        let (name, path) = spec
            .split_once('=')
            .context("--org-kek takes ORG_NAME=PATH")?;
        let org = store
            .org_by_name(name)
            .await?
            .with_context(|| format!("--org-kek names an unknown organization '{name}'"))?;
        org_keks.push((org.id, read_key_file(Path::new(path))?));
    }
    let keyring = Keyring::new(master, keys, config.cached_customer_keys).with_org_keks(org_keks);
    let context = Arc::new(Context::new(store, keyring, config));
    check_keys(&context).await?;
    Ok(context)
}

/// Refuses to go on when an organization's keys are missing or don't open: answering with
/// 500s (or searches that find nothing) would hide a wrong data directory or master key.
async fn check_keys(context: &Context) -> anyhow::Result<()> {
    match context.verify_keys().await {
        Ok(check) => {
            for org in &check.without_org_kek {
                tracing::warn!(org = %org.name, id = %org.id,
                    "organization '{}' uses its own key-encryption key, which is not loaded \
                     (--org-kek {}=PATH): its data is unreadable until it is", org.name, org.name);
            }
            Ok(())
        }
        Err(contextd_core::CoreError::Keys(msg)) => bail!("refusing to start: {msg}"),
        Err(e) => Err(e).context("cannot check the encryption keys"),
    }
}

/// Reads a key file (64 hex digits or base64 of 32 bytes).
pub fn read_key_file(path: &Path) -> anyhow::Result<MasterKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    MasterKey::parse(&text).with_context(|| format!("{} is not a valid key", path.display()))
}

fn open_sqlite(files: &SqliteFiles) -> anyhow::Result<(Arc<dyn Store>, Arc<dyn KeyStore>)> {
    let store = SqliteStore::open(&files.data)
        .with_context(|| format!("cannot open {}", files.data.display()))?;
    let keys = SqliteKeyStore::open(&files.keys)
        .with_context(|| format!("cannot open {}", files.keys.display()))?;
    Ok((Arc::new(store), Arc::new(keys)))
}

/// The data in schema `contextd` and the key store in schema `contextd_keys` of one
/// database. Instances sharing the database must share the master key too.
async fn open_postgres(url: &str) -> anyhow::Result<(Arc<dyn Store>, Arc<dyn KeyStore>)> {
    let store = PgStore::connect(url)
        .await
        .context("cannot open the PostgreSQL data store")?;
    let keys = PgKeyStore::connect(url)
        .await
        .context("cannot open the PostgreSQL key store")?;
    Ok((Arc::new(store), Arc::new(keys)))
}

/// The KEK: `CONTEXTD_MASTER_KEY`, else the file `--master-key-file` names, else the data
/// directory's `master.key` (which then draws a warning: a copy of the data directory would
/// hold the key to its data). A key file that does not exist is created (0600).
fn master_key(data_dir: &Path, file: Option<&Path>) -> anyhow::Result<MasterKey> {
    if let Ok(text) = std::env::var("CONTEXTD_MASTER_KEY") {
        return MasterKey::parse(&text).context("CONTEXTD_MASTER_KEY is invalid");
    }
    let path = match file {
        Some(path) => path.to_owned(),
        None => {
            let path = data_dir.join("master.key");
            tracing::warn!(path = %path.display(),
                "the master key file sits beside the data: a copy of the data directory holds the \
                 key to its data. Move it elsewhere and start with --master-key-file PATH (or \
                 CONTEXTD_MASTER_KEY_FILE, or the key itself in CONTEXTD_MASTER_KEY)");
            path
        }
    };
    key_file(&path)
}

/// Reads the key file at `path`, or creates it with a new key (0600) if it does not exist.
fn key_file(path: &Path) -> anyhow::Result<MasterKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            MasterKey::parse(&text).with_context(|| format!("{} is invalid", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(path) {
                Ok(mut file) => {
                    file.write_all(key.to_base64().as_bytes())?;
                    file.sync_all()?;
                    tracing::info!(path = %path.display(), "created a new master key file; back it up apart from the data");
                    Ok(key)
                }
                // Another instance created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => key_file(path),
                Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
            }
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The files of the embedded store.
#[derive(Clone, Debug)]
pub struct SqliteFiles {
    /// The data database.
    pub data: PathBuf,
    /// The audit log, beside the data file.
    pub audit: PathBuf,
    /// The key store (wrapped keys), in the data directory.
    pub keys: PathBuf,
}

/// Where the SQLite files of `args` are, or `None` when the data lives in PostgreSQL.
pub fn sqlite_files(args: &StorageArgs) -> anyhow::Result<Option<SqliteFiles>> {
    let data = match args.database_url.as_deref() {
        None => args.data_dir.join("contextd.db"),
        Some(url) if url.starts_with("sqlite://") => {
            PathBuf::from(url.trim_start_matches("sqlite://"))
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            return Ok(None)
        }
        Some(_) => bail!("unsupported database URL: use sqlite://PATH or postgres://…"),
    };
    Ok(Some(SqliteFiles {
        audit: SqliteStore::audit_path(&data),
        keys: args.data_dir.join("keys.db"),
        data,
    }))
}

/// Whether a master key is at hand without creating one: `CONTEXTD_MASTER_KEY`, the file
/// `--master-key-file` names, or the data directory's `master.key`.
pub fn master_key_present(args: &StorageArgs) -> bool {
    std::env::var_os("CONTEXTD_MASTER_KEY").is_some()
        || args
            .master_key_file
            .clone()
            .unwrap_or_else(|| args.data_dir.join("master.key"))
            .exists()
}

/// Opens the data store alone, its audit log included, without the key store or the master
/// key: for the operator commands on the audit log (`contextd audit verify|archive`). A data
/// file that does not exist is an error, not a new empty store.
pub async fn open_store(args: &StorageArgs) -> anyhow::Result<Arc<dyn Store>> {
    match (sqlite_files(args)?, args.database_url.as_deref()) {
        (Some(files), _) => {
            if !files.data.exists() {
                bail!("no database at {}", files.data.display());
            }
            let store = SqliteStore::open(&files.data)
                .with_context(|| format!("cannot open {}", files.data.display()))?;
            Ok(Arc::new(store))
        }
        (None, Some(url)) => {
            let store = PgStore::connect(url)
                .await
                .context("cannot open the PostgreSQL data store")?;
            Ok(Arc::new(store))
        }
        (None, None) => bail!("no database configured"),
    }
}
