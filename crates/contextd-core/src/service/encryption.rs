//! Encryption jobs and checks: data-key rotation, re-encryption in the background, the
//! start-up key check and the encryption status of a partition.

use super::*;

pub use contextd_proto::system::EncryptionStatus;

/// What [`Context::verify_keys`] found.
#[derive(Clone, Debug, Default)]
pub struct KeyCheck {
    /// Organizations checked.
    pub organizations: usize,
    /// Organizations whose keys are wrapped by their own key-encryption key, which is not
    /// loaded: their data is unreadable here until it is (`--org-kek`).
    pub without_org_kek: Vec<OrgRecord>,
}

/// The start-up message of one organization whose keys don't open, if they don't.
fn key_problem(org: &OrgRecord, checks: &[(Partition, PartitionCheck)]) -> Option<String> {
    let who = format!("organization '{}' ({})", org.name, org.id);
    let missing: Vec<Partition> = checks
        .iter()
        .filter(|(_, c)| *c == PartitionCheck::Missing)
        .map(|(p, _)| *p)
        .collect();
    if !missing.is_empty() {
        let what = match missing.as_slice() {
            [one] if checks.len() > 1 => format!("keys for the {one} partition of {who}"),
            _ => format!("keys for {who}"),
        };
        return Some(format!(
            "the key store has no {what}: wrong --data-dir, or a key store of another deployment?"
        ));
    }
    checks.iter().find_map(|(_, c)| match c {
        PartitionCheck::WrongKek { org_kek: false } => Some(format!(
            "the keys of {who} do not open with the configured master key: wrong master key \
             (CONTEXTD_MASTER_KEY / master.key)?"
        )),
        PartitionCheck::WrongKek { org_kek: true } => Some(format!(
            "the keys of {who} do not open with the organization's own key-encryption key \
             given by --org-kek: wrong key file?"
        )),
        _ => None,
    })
}

impl Context {
    /// Adds a data-key version to the caller's partition (admin); the background job then
    /// re-encrypts what the older versions protect.
    pub async fn rotate_data_key(&self, actor: &Principal) -> Result<EncryptionStatus, CoreError> {
        actor.require(&[Role::Admin])?;
        let version = self.keys.rotate(actor.scope).await?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "datakey.rotate",
            None,
            vec![],
            format!("version={version}"),
        )
        .await?;
        self.encryption_status(actor.scope).await
    }

    /// Adds a data-key version to a partition on the operator's behalf (`contextd keys
    /// rotate`): audited like [`Context::rotate_data_key`], with no actor.
    pub async fn rotate_data_key_as_operator(&self, scope: Scope) -> Result<u32, CoreError> {
        let version = self.keys.rotate(scope).await?;
        self.audit_action(
            None,
            scope,
            "datakey.rotate",
            None,
            vec![],
            format!("version={version} source=cli"),
        )
        .await?;
        Ok(version)
    }

    /// Current key version and re-encryption progress of a partition. When its keys don't
    /// open here (an org's own KEK not loaded) or the last re-encryption run failed in it, the
    /// state is `failing` with the reason, and the version is the newest stored.
    pub async fn encryption_status(&self, scope: Scope) -> Result<EncryptionStatus, CoreError> {
        let (version, mut error) = match self.keys.current_version(scope).await {
            Ok(v) => (v, None),
            Err(CoreError::Keys(msg)) => {
                let stored = self
                    .keys
                    .store()
                    .data_keys(scope)
                    .await
                    .map_err(|e| CoreError::Keys(e.to_string()))?;
                (
                    stored.iter().map(|k| k.version).max().unwrap_or(0),
                    Some(msg),
                )
            }
            Err(e) => return Err(e),
        };
        if error.is_none() {
            error = self.reencrypt_failure(scope);
        }
        let pending_customer_keys = self
            .keys
            .store()
            .count_customer_keys_wrapped_before(scope, version)
            .await
            .map_err(|e| CoreError::Keys(e.to_string()))?;
        let pending_objects = self.store.count_objects_to_reseal(scope, version).await?;
        let idle = pending_customer_keys == 0 && pending_objects == 0;
        Ok(EncryptionStatus {
            data_key_version: version,
            pending_customer_keys,
            pending_objects,
            state: match (&error, idle) {
                (Some(_), _) => "failing",
                (None, true) => "idle",
                (None, false) => "reencrypting",
            }
            .to_owned(),
            error,
        })
    }

    fn reencrypt_failure(&self, scope: Scope) -> Option<String> {
        let failures = self
            .reencrypt_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        failures.get(&scope).cloned()
    }

    /// Checks that every organization's keys open with the configured key-encryption keys;
    /// run at start, before serving. Fails naming each organization whose keys are missing or
    /// don't unwrap, and the likely cause; an organization whose own KEK is not loaded is
    /// only reported (its data stays unreadable here, everything else works).
    pub async fn verify_keys(&self) -> Result<KeyCheck, CoreError> {
        let orgs = self.store.orgs().await?;
        let mut check = KeyCheck {
            organizations: orgs.len(),
            ..KeyCheck::default()
        };
        let mut problems = Vec::new();
        for org in orgs {
            let mut checks = Vec::new();
            for partition in Partition::ALL {
                let scope = Scope {
                    org: org.id,
                    partition,
                };
                checks.push((partition, self.keys.check_partition(scope).await?));
            }
            if let Some(problem) = key_problem(&org, &checks) {
                problems.push(problem);
            } else if checks
                .iter()
                .any(|(_, c)| *c == PartitionCheck::OrgKekNotLoaded)
            {
                check.without_org_kek.push(org);
            }
        }
        const SHOWN: usize = 5;
        match problems.len() {
            0 => Ok(check),
            n => {
                let mut msg = problems[..n.min(SHOWN)].join("; ");
                if n > SHOWN {
                    msg.push_str(&format!("; and {} more organizations", n - SHOWN));
                }
                Err(CoreError::Keys(msg))
            }
        }
    }

    /// Re-encrypts one batch in one partition: re-wraps customer keys and re-seals objects
    /// still under older data-key versions. Returns how many items were processed.
    pub async fn reencrypt_batch(&self, scope: Scope, batch: usize) -> Result<usize, CoreError> {
        let mut done = self.keys.rewrap_customer_keys(scope, batch).await?;
        let version = self.keys.current_version(scope).await?;
        let keys = self.keys.object_keys(scope, None).await?;
        for o in self.store.objects_to_reseal(scope, version, batch).await? {
            let mut sealed = BTreeMap::new();
            for (name, value) in &o.sealed {
                let plain = keys.open(o.id, name, value)?;
                sealed.insert(name.clone(), keys.seal(o.id, name, &plain)?);
            }
            match self
                .store
                .reseal_object(scope, o.id, o.version, &sealed, version)
                .await
            {
                // Changed meanwhile: the writer sealed it under the current key already, or the
                // next batch picks it up again.
                Ok(()) | Err(StoreError::VersionConflict { .. }) | Err(StoreError::NotFound) => {
                    done += 1
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(done)
    }

    /// Runs re-encryption to completion over every partition (the background job: on start,
    /// after a rotation, and periodically, so an interrupted rotation resumes after a restart).
    pub async fn reencrypt_all(&self, batch: usize) -> Result<usize, CoreError> {
        self.keys.refresh();
        let scopes = self
            .keys
            .store()
            .scopes()
            .await
            .map_err(|e| CoreError::Keys(e.to_string()))?;
        let mut total = 0;
        for scope in scopes {
            // A scope that fails (an org's own KEK not loaded here) must not stall the others:
            // remember why, for `/v1/status`, and go on.
            match self.reencrypt_scope(scope, batch).await {
                Ok(n) => {
                    total += n;
                    self.set_reencrypt_failure(scope, None);
                }
                Err(e) => self.set_reencrypt_failure(scope, Some(e.to_string())),
            }
        }
        Ok(total)
    }

    async fn reencrypt_scope(&self, scope: Scope, batch: usize) -> Result<usize, CoreError> {
        let mut total = 0;
        // Bounded: objects rewritten meanwhile by a process with stale keys wait for the next run.
        for _ in 0..100_000 {
            let n = self.reencrypt_batch(scope, batch).await?;
            total += n;
            if n == 0 {
                break;
            }
        }
        Ok(total)
    }

    fn set_reencrypt_failure(&self, scope: Scope, error: Option<String>) {
        let mut failures = self
            .reencrypt_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match error {
            Some(e) => {
                // Logged when it starts or changes, not on every periodic run.
                if failures.get(&scope) != Some(&e) {
                    tracing::warn!(org = %scope.org, partition = %scope.partition, error = %e,
                        "re-encryption fails in this partition; the others go on");
                }
                failures.insert(scope, e);
            }
            None => {
                failures.remove(&scope);
            }
        }
    }
}
