//! `contextd backup`, `contextd restore` and `contextd migrate`: operator commands on the
//! database files, run beside (backup, migrate) or instead of (restore) a server.
//!
//! A backup directory holds `data/` (the data database and the audit log) and `keys/` (the
//! key store), and `manifest.json` naming each file with its size and SHA-256. It never holds
//! the master key. The data is copied first and the key store last, so that every key the
//! copied data needs is in the copied key store.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use contextd_store_sqlite::backup::{backup_file, check_integrity, restore_file};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::startup::{self, SqliteFiles, StorageArgs};

/// The layout version of a backup directory.
const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";

/// `contextd backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// A new (or empty) directory to write the backup into.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// `contextd restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup directory `contextd backup --to` wrote.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// Where the key store's part of the backup is, when it was stored apart
    /// (default: FROM/keys).
    #[arg(long, value_name = "DIR")]
    pub keys_from: Option<PathBuf>,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// What a backup directory holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    format: u32,
    created: String,
    contextd_version: String,
    backend: String,
    files: Vec<BackedUpFile>,
    master_key: String,
}

/// One file of a backup.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BackedUpFile {
    /// Path inside the backup directory.
    path: String,
    /// `data`, `audit` or `keys`.
    role: String,
    bytes: u64,
    sha256: String,
}

/// The roles of a backup's files, in the order they are copied, with their place in it.
fn layout(files: &SqliteFiles) -> [(&'static str, &Path, &'static str); 3] {
    [
        ("data", &files.data, "data/contextd.db"),
        ("audit", &files.audit, "data/contextd-audit.db"),
        ("keys", &files.keys, "keys/keys.db"),
    ]
}

/// `contextd backup --to DIR`: a consistent copy of the data, the audit log and the key store
/// while a server keeps serving writes.
pub fn backup(args: &BackupArgs) -> anyhow::Result<()> {
    let files = embedded(&args.storage, "backup")?;
    if args.to.exists() && std::fs::read_dir(&args.to)?.next().is_some() {
        bail!(
            "{} is not empty: a backup goes into a new directory",
            args.to.display()
        );
    }
    let mut manifest = Manifest {
        format: FORMAT,
        created: contextd_core::time::format(&contextd_core::time::now_ms()),
        contextd_version: env!("CARGO_PKG_VERSION").into(),
        backend: "sqlite".into(),
        files: Vec::new(),
        master_key: "not included: keep it apart from both data/ and keys/".into(),
    };
    for (role, source, inside) in layout(&files) {
        let target = args.to.join(inside);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let bytes = backup_file(source, &target)
            .with_context(|| format!("cannot back up {}", source.display()))?;
        manifest.files.push(BackedUpFile {
            path: inside.into(),
            role: role.into(),
            bytes,
            sha256: sha256_file(&target)?,
        });
        println!(
            "{role:<5} {} → {} ({bytes} bytes)",
            source.display(),
            target.display()
        );
    }
    let text = serde_json::to_string_pretty(&manifest)?;
    write_synced(&args.to.join(MANIFEST), text.as_bytes())?;
    println!(
        "backup written to {dir}\n\
         Store {dir}/keys apart from {dir}/data: the key store holds the keys that open the data, \
         and erasing a customer destroys their key there. The master key is not in the backup; \
         keep it apart from both (a restore needs it).",
        dir = args.to.display()
    );
    Ok(())
}

/// `contextd restore --from DIR`: puts a backup into an empty data directory, checking every
/// file against the manifest and its integrity, then opens it as `serve` would.
pub async fn restore(args: &RestoreArgs) -> anyhow::Result<()> {
    let files = embedded(&args.storage, "restore")?;
    if !startup::master_key_present(&args.storage) {
        bail!(
            "the master key of the backed-up data is needed: set CONTEXTD_MASTER_KEY, \
             --master-key-file PATH, or put it at {}",
            args.storage.data_dir.join("master.key").display()
        );
    }
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(args.from.join(MANIFEST))
            .with_context(|| format!("{} is not a contextd backup", args.from.display()))?,
    )
    .context("the backup's manifest is unreadable")?;
    if manifest.format != FORMAT {
        bail!(
            "backup format {} is not known to this contextd",
            manifest.format
        );
    }
    // Everything is checked before anything is put in place, so that a bad file leaves the
    // data directory as it was.
    let mut plan = Vec::new();
    for (role, target, _) in layout(&files) {
        for leftover in [
            PathBuf::new(),
            "-wal".into(),
            "-shm".into(),
            "-journal".into(),
        ] {
            let mut path = target.as_os_str().to_owned();
            path.push(leftover.as_os_str());
            if Path::new(&path).exists() {
                bail!(
                    "{} exists: restore only into an empty data directory",
                    Path::new(&path).display()
                );
            }
        }
        let entry = manifest
            .files
            .iter()
            .find(|f| f.role == role)
            .with_context(|| format!("the backup has no {role} file"))?;
        let source = match (role, &args.keys_from) {
            ("keys", Some(dir)) => dir.join("keys.db"),
            _ => args.from.join(&entry.path),
        };
        if sha256_file(&source)? != entry.sha256 {
            bail!("{} does not match the manifest", source.display());
        }
        check_integrity(&source).with_context(|| format!("{} is damaged", source.display()))?;
        plan.push((role, source, target));
    }
    let mut placed: Vec<&Path> = Vec::new();
    for (role, source, target) in &plan {
        std::fs::create_dir_all(target.parent().unwrap_or(Path::new(".")))?;
        if let Err(e) = restore_file(source, target) {
            for done in placed {
                let _ = std::fs::remove_file(done);
            }
            return Err(e).with_context(|| format!("cannot restore {}", source.display()));
        }
        placed.push(target);
        println!("{role:<5} {} → {}", source.display(), target.display());
    }
    startup::open_context(&args.storage)
        .await
        .context("the restored data does not open")?;
    println!(
        "restored the backup of {} into {}; start the server with the same master key",
        manifest.created,
        args.storage.data_dir.display()
    );
    Ok(())
}

/// `contextd migrate`: applies pending schema migrations and exits. `serve` does the same at
/// start; several instances (or this) may run at once: each migration is applied once.
pub async fn migrate(storage: &StorageArgs) -> anyhow::Result<()> {
    startup::open_context(storage).await?;
    println!("the database schema is current");
    Ok(())
}

fn embedded(storage: &StorageArgs, what: &str) -> anyhow::Result<SqliteFiles> {
    startup::sqlite_files(storage)?.with_context(|| {
        format!(
            "contextd {what} works on the embedded SQLite store; for PostgreSQL use pg_dump and \
             point-in-time recovery (docs/deploy.md, \"Backup and restore\")"
        )
    })
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}
