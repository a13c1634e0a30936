//! The state file shared by `bench load` and `bench run`: the benchmark's API keys, a sample of
//! the customers made (id and mobile number as stored) and the long-journey customers.
//!
//! It holds bearer tokens of the lab partition, so it is written owner-only (0600).

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// What earlier loads made on one server.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BenchState {
    /// The server these objects live on.
    pub url: String,
    /// Its storage backend.
    pub backend: String,
    /// Machine API keys made by `load` (the load is spread over them).
    pub tokens: Vec<String>,
    /// Number of the next customer to make: numbers (hence phone numbers) stay unique over
    /// successive loads.
    pub next_index: u64,
    /// Objects made by every load so far (the dataset size of a run).
    pub objects: u64,
    /// Customers made by every load so far.
    pub customers_total: u64,
    /// A sample of the customers, evenly spread, for lookups.
    pub customers: Vec<SampleCustomer>,
    /// Customers with at least `timeline_len` activities.
    pub timeline: Vec<String>,
    /// Fewest activities of a `timeline` customer.
    pub timeline_len: u64,
}

/// A customer to look up.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SampleCustomer {
    /// Object id.
    pub id: String,
    /// `Context_Mobile_Phone` as stored.
    pub mobile: String,
}

impl BenchState {
    /// Reads the state file; `None` if there is none.
    pub fn read(path: &Path) -> anyhow::Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{} is not a bench state file", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the state file (owner-only: it holds tokens), replacing it atomically.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(&serde_json::to_vec(self)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    /// Keeps at most `n` sample customers, evenly spread over all of them.
    pub fn thin_sample(&mut self, n: usize) {
        let len = self.customers.len();
        if n == 0 || len <= n {
            return;
        }
        let kept = (0..n)
            .map(|i| self.customers[i * len / n].clone())
            .collect();
        self.customers = kept;
    }
}
