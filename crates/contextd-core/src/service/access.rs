//! People and credentials (docs/security.md): users with Argon2id passwords, web sessions, API keys,
//! partner grants, the audit log, and the privacy operations erase and export.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::audit::audit_entry;
use crate::auth::{self, Principal, PrincipalKind, Role};
use crate::error::{CoreError, FieldError};
use crate::ids::{truncate, ObjectId, Partition, Scope};
use crate::object::Kind;
use crate::service::Context;
use crate::store::{AuditQuery, GrantRecord, SessionRecord, StoreError, UserChange, UserRecord};
use crate::time::now_ms;

pub use contextd_proto::access::{
    AuditPage, AuditView, CustomerExport, KeyView, NewGrant, NewKey, NewUser, UserPatch, UserView,
};

/// Shortest accepted password.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Lifetime of a web session.
pub const SESSION_HOURS: i64 = 12;

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id,
            name: u.name.clone(),
            role: u.role,
            created: u.created,
            disabled: u.disabled,
        }
    }
}

/// A new session: the cookie secret and the CSRF token, both shown once.
#[derive(Clone)]
pub struct NewSession {
    /// Cookie value.
    pub secret: String,
    /// Value of the `x-csrf-token` header unsafe requests must carry.
    pub csrf: String,
    /// The user.
    pub user: UserView,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

fn hash_password(password: &str) -> Result<String, CoreError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CoreError::bad_request(format!("cannot hash the password: {e}")))
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A valid Argon2id hash of a random password, verified against when the user does not exist
/// so that unknown names cost as much time as wrong passwords.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&Uuid::new_v4().to_string()).unwrap_or_default())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CoreError::Keys(format!("worker failed: {e}")))
}

/// Why `role` can't be a person's, if it can't.
fn person_role_error(role: Role) -> Option<FieldError> {
    (role == Role::Machine).then(|| {
        FieldError::new(
            "role",
            "people are admin, agent or partner; machines use API keys",
        )
    })
}

/// Why `password` is refused, if it is.
fn password_error(password: &str) -> Option<FieldError> {
    (password.chars().count() < MIN_PASSWORD_CHARS).then(|| {
        FieldError::new(
            "password",
            format!("at least {MIN_PASSWORD_CHARS} characters"),
        )
    })
}

/// The store's refusals of a change to user `id`, as the client sees them.
fn user_error(id: Uuid) -> impl Fn(StoreError) -> CoreError {
    move |e| match e {
        StoreError::NotFound => CoreError::NotFound(format!("no user {id} in this partition")),
        StoreError::LastAdmin => CoreError::LastAdmin(format!(
            "user {id} is the last enabled admin user of this partition: make another user \
             admin first, so that someone can still sign in to administer it"
        )),
        e => e.into(),
    }
}

fn valid_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=64).contains(&n) && !name.chars().any(char::is_control) && name.trim() == name
}

/// Longest organization or user name a sign-in may carry, in characters. Real names are far
/// shorter (users: 64); the cap refuses oversize attempts before any lookup, limiter entry or
/// password check is spent on them.
pub const MAX_SIGN_IN_NAME_CHARS: usize = 400;

/// The shape rule of a sign-in: organization and user name at most
/// [`MAX_SIGN_IN_NAME_CHARS`] characters each (400 above).
pub fn check_sign_in_names(org: &str, name: &str) -> Result<(), CoreError> {
    let errors: Vec<FieldError> = [("org", org), ("name", name)]
        .into_iter()
        // Counting stops past the cap: a 1 MiB name costs no more than a 401-character one.
        .filter(|(_, v)| v.chars().nth(MAX_SIGN_IN_NAME_CHARS).is_some())
        .map(|(f, _)| FieldError::new(f, format!("at most {MAX_SIGN_IN_NAME_CHARS} characters")))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CoreError::Validation(errors))
    }
}

impl Context {
    /// Records an audit entry for an action of `actor` and waits until it is durable; an
    /// error means the action must be reported as failed (fail-closed).
    pub(crate) async fn audit_action(
        &self,
        actor: Option<&Principal>,
        scope: Scope,
        action: &str,
        object: Option<(Option<Kind>, String)>,
        fields: Vec<String>,
        detail: String,
    ) -> Result<(), CoreError> {
        self.audit
            .record(vec![audit_entry(
                actor, scope, action, object, fields, detail,
            )])
            .await
    }

    /// Resolves a principal's partner grant (partners only).
    pub(crate) async fn with_grant(&self, mut p: Principal) -> Result<Principal, CoreError> {
        if p.role == Role::Partner {
            p.granted = self
                .store
                .has_active_grant(p.scope, p.id, Utc::now())
                .await?;
        }
        Ok(p)
    }

    /// Creates a user (admin).
    pub async fn create_user(
        &self,
        actor: &Principal,
        new: NewUser,
    ) -> Result<UserView, CoreError> {
        actor.require(&[Role::Admin])?;
        if !valid_name(&new.name) {
            return Err(CoreError::field(
                "name",
                "1–64 characters, no control characters or surrounding spaces",
            ));
        }
        if let Some(e) = person_role_error(new.role) {
            return Err(CoreError::Validation(vec![e]));
        }
        if let Some(e) = password_error(&new.password) {
            return Err(CoreError::Validation(vec![e]));
        }
        let password = new.password.clone();
        let password_hash = blocking(move || hash_password(&password)).await??;
        let user = UserRecord {
            id: Uuid::now_v7(),
            scope: actor.scope,
            name: new.name.clone(),
            role: new.role,
            password_hash,
            created: now_ms(),
            disabled: false,
        };
        self.store.insert_user(&user).await.map_err(|e| match e {
            StoreError::AlreadyExists => CoreError::AlreadyExists(format!(
                "a user named '{}' exists",
                truncate(&new.name, 64)
            )),
            e => e.into(),
        })?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "user.create",
            Some((None, user.id.to_string())),
            vec![],
            format!("role={}", user.role),
        )
        .await?;
        Ok((&user).into())
    }

    /// Lists the users of the caller's partition (admin).
    pub async fn list_users(&self, actor: &Principal) -> Result<Vec<UserView>, CoreError> {
        actor.require(&[Role::Admin])?;
        Ok(self
            .store
            .users(actor.scope)
            .await?
            .iter()
            .map(UserView::from)
            .collect())
    }

    /// Signs a user in; failures are audited and indistinguishable from each other. Oversize
    /// names are refused ([`check_sign_in_names`]) before any lookup or password check.
    pub async fn sign_in(
        &self,
        org: &str,
        partition: Partition,
        name: &str,
        password: &str,
    ) -> Result<NewSession, CoreError> {
        check_sign_in_names(org, name)?;
        let denied = || CoreError::Unauthorized("wrong organization, name or password".into());
        if [org, name].iter().any(|t| t.contains('\0')) {
            return Err(denied());
        }
        let org = self.store.org_by_name(org).await?;
        let scope = org.as_ref().map(|o| Scope {
            org: o.id,
            partition,
        });
        let user = match scope {
            Some(scope) => self.store.user_by_name(scope, name).await?,
            None => None,
        };
        let phc = user
            .as_ref()
            .map_or_else(|| decoy_hash().to_owned(), |u| u.password_hash.clone());
        let pw = password.to_owned();
        let ok = blocking(move || verify_password(&pw, &phc)).await?;
        let Some(user) = user.filter(|u| ok && !u.disabled) else {
            if let Some(scope) = scope {
                self.audit_action(
                    None,
                    scope,
                    "signin.failed",
                    None,
                    vec![],
                    format!("name={}", truncate(name, 64)),
                )
                .await?;
            }
            return Err(denied());
        };
        let secret = auth::random_secret();
        let csrf = auth::csrf_token(&secret);
        let now = now_ms();
        let session = SessionRecord {
            secret_hash: auth::hash_secret(&secret),
            user_id: user.id,
            scope: user.scope,
            role: user.role,
            csrf_hash: auth::hash_secret(&csrf),
            created: now,
            expires_at: now + chrono::Duration::hours(SESSION_HOURS),
            revoked_at: None,
        };
        self.store.insert_session(&session).await?;
        Ok(NewSession {
            secret,
            csrf,
            user: (&user).into(),
            expires_at: session.expires_at,
        })
    }

    /// Resolves a session cookie; unsafe requests must also carry the session's CSRF token.
    pub async fn authenticate_session(
        &self,
        secret: &str,
        csrf: Option<&str>,
        unsafe_method: bool,
    ) -> Result<Principal, CoreError> {
        let denied = || CoreError::Unauthorized("the session has expired or was signed out".into());
        let (s, role) = self
            .session_and_role(auth::hash_secret(secret))
            .await?
            .ok_or_else(denied)?;
        if s.revoked_at.is_some() || s.expires_at <= Utc::now() {
            return Err(denied());
        }
        if unsafe_method && !csrf.is_some_and(|c| auth::secret_matches(c, &s.csrf_hash)) {
            return Err(CoreError::Forbidden(
                "missing or wrong x-csrf-token header".into(),
            ));
        }
        self.with_grant(Principal {
            id: s.user_id,
            scope: s.scope,
            role,
            kind: PrincipalKind::User,
            granted: false,
        })
        .await
    }

    /// A session and its user's role now, from memory or the store; `None` when the session
    /// is unknown or its user is gone, disabled or moved. The user is read with the session
    /// (or the cache is emptied by any change to it), so that disabling, deleting or demoting
    /// someone holds at once on every instance; the role is the user's now, not at sign-in.
    async fn session_and_role(
        &self,
        secret_hash: [u8; 32],
    ) -> Result<Option<(SessionRecord, Role)>, CoreError> {
        if let Some(hit) = self.credentials.session(&secret_hash) {
            return Ok(Some(hit));
        }
        let at = self.credentials.stamp();
        let Some(s) = self.store.session(secret_hash).await? else {
            return Ok(None);
        };
        let role = match self.store.user(s.user_id).await? {
            Some(u) if !u.disabled && u.scope == s.scope => u.role,
            _ => return Ok(None),
        };
        self.credentials.keep_session(at, &s, role);
        Ok(Some((s, role)))
    }

    /// Runs a change to API keys, users or sessions, then empties the credential cache
    /// (see [`super::credential_cache::CredentialCache::changed`]).
    pub(crate) async fn changing_credentials<T>(
        &self,
        change: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let before = self.credentials.stamp();
        let result = change.await;
        self.credentials.changed(before, result.is_ok()).await;
        result
    }

    /// The CSRF token of a live session, for a page reloaded after sign-in; `None` for a
    /// session whose token was not derived from its secret (made before this rule).
    pub async fn session_csrf(&self, secret: &str) -> Result<Option<String>, CoreError> {
        let Some(s) = self.store.session(auth::hash_secret(secret)).await? else {
            return Ok(None);
        };
        let csrf = auth::csrf_token(secret);
        Ok(auth::secret_matches(&csrf, &s.csrf_hash).then_some(csrf))
    }

    /// The display name of a principal: the user's name, or the API key's.
    pub async fn principal_name(&self, principal: &Principal) -> Result<Option<String>, CoreError> {
        Ok(match principal.kind {
            PrincipalKind::User => self.store.user(principal.id).await?.map(|u| u.name),
            PrincipalKind::ApiKey => self.store.api_key(principal.id).await?.map(|k| k.name),
        })
    }

    /// Signs a session out at once.
    pub async fn sign_out(&self, secret: &str) -> Result<(), CoreError> {
        match self
            .changing_credentials(
                self.store
                    .revoke_session(auth::hash_secret(secret), now_ms()),
            )
            .await
        {
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Changes a user's role, password or disabled flag (admin). Disabling or enabling a user
    /// or resetting a password ends every session of theirs in the same transaction; a role
    /// change applies to existing sessions at once (they take the role from the user). The
    /// partition's last enabled admin user can't be disabled or demoted.
    pub async fn update_user(
        &self,
        actor: &Principal,
        id: Uuid,
        patch: UserPatch,
    ) -> Result<UserView, CoreError> {
        actor.require(&[Role::Admin])?;
        if patch.disabled.is_none() && patch.role.is_none() && patch.password.is_none() {
            return Err(CoreError::bad_request(
                "nothing to change: give disabled, role or password",
            ));
        }
        let errors: Vec<FieldError> = [
            patch.role.and_then(person_role_error),
            patch.password.as_deref().and_then(password_error),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !errors.is_empty() {
            return Err(CoreError::Validation(errors));
        }
        let password_hash = match patch.password {
            Some(p) => Some(blocking(move || hash_password(&p)).await??),
            None => None,
        };
        let mut detail = Vec::new();
        if let Some(d) = patch.disabled {
            detail.push(format!("disabled={d}"));
        }
        if let Some(r) = patch.role {
            detail.push(format!("role={r}"));
        }
        if password_hash.is_some() {
            detail.push("password reset".to_owned());
        }
        // Enabling ends sessions too: one signed in while the disable was being written
        // must not come back to life.
        let end_sessions = patch.disabled.is_some() || password_hash.is_some();
        let change = UserChange {
            role: patch.role,
            password_hash,
            disabled: patch.disabled,
            end_sessions_at: end_sessions.then(now_ms),
        };
        let user = self
            .changing_credentials(self.store.update_user(actor.scope, id, &change))
            .await
            .map_err(user_error(id))?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "user.update",
            Some((None, id.to_string())),
            vec![],
            detail.join(", "),
        )
        .await?;
        Ok((&user).into())
    }

    /// Deletes a user and every session of theirs (admin); not the partition's last enabled
    /// admin user.
    pub async fn delete_user(&self, actor: &Principal, id: Uuid) -> Result<(), CoreError> {
        actor.require(&[Role::Admin])?;
        let user = self.user_in_scope(actor, id).await?;
        self.changing_credentials(self.store.delete_user(actor.scope, id))
            .await
            .map_err(user_error(id))?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "user.delete",
            Some((None, id.to_string())),
            vec![],
            format!("name={}, role={}", user.name, user.role),
        )
        .await?;
        Ok(())
    }

    /// Ends every session of a user at once (admin); returns how many were live.
    pub async fn revoke_user_sessions(
        &self,
        actor: &Principal,
        id: Uuid,
    ) -> Result<u64, CoreError> {
        actor.require(&[Role::Admin])?;
        self.user_in_scope(actor, id).await?;
        let n = self
            .changing_credentials(self.store.revoke_user_sessions(actor.scope, id, now_ms()))
            .await?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "user.sessions.revoke",
            Some((None, id.to_string())),
            vec![],
            format!("sessions={n}"),
        )
        .await?;
        Ok(n)
    }

    /// User `id` of the actor's partition; users of other partitions and orgs are a 404.
    async fn user_in_scope(&self, actor: &Principal, id: Uuid) -> Result<UserRecord, CoreError> {
        match self.store.user(id).await? {
            Some(u) if u.scope == actor.scope => Ok(u),
            _ => Err(user_error(id)(StoreError::NotFound)),
        }
    }

    /// Creates an API key (admin); the token is in the answer only.
    pub async fn create_key(&self, actor: &Principal, new: NewKey) -> Result<KeyView, CoreError> {
        actor.require(&[Role::Admin])?;
        if !valid_name(&new.name) {
            return Err(CoreError::field(
                "name",
                "1–64 characters, no control characters or surrounding spaces",
            ));
        }
        if new.expires_at.is_some_and(|t| t <= Utc::now()) {
            return Err(CoreError::field("expiresAt", "must be in the future"));
        }
        let (id, token) = self
            .create_api_key(actor.scope, &new.name, new.role, new.expires_at)
            .await?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "key.create",
            Some((None, id.to_string())),
            vec![],
            format!("role={}", new.role),
        )
        .await?;
        Ok(KeyView {
            id,
            name: new.name,
            role: new.role,
            created: now_ms(),
            expires_at: new.expires_at,
            revoked: false,
            token: Some(token),
        })
    }

    /// Lists the partition's API keys (admin).
    pub async fn list_keys(&self, actor: &Principal) -> Result<Vec<KeyView>, CoreError> {
        actor.require(&[Role::Admin])?;
        Ok(self
            .store
            .api_keys(actor.scope)
            .await?
            .into_iter()
            .map(|k| KeyView {
                id: k.id,
                name: k.name,
                role: k.role,
                created: k.created,
                expires_at: k.expires_at,
                revoked: k.revoked_at.is_some(),
                token: None,
            })
            .collect())
    }

    /// Revokes an API key (admin); effective at once.
    pub async fn revoke_key(&self, actor: &Principal, id: Uuid) -> Result<(), CoreError> {
        actor.require(&[Role::Admin])?;
        self.changing_credentials(self.store.revoke_api_key(actor.scope, id, now_ms()))
            .await
            .map_err(|e| match e {
                StoreError::NotFound => CoreError::NotFound(format!("no active key {id}")),
                e => e.into(),
            })?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "key.revoke",
            Some((None, id.to_string())),
            vec![],
            String::new(),
        )
        .await?;
        Ok(())
    }

    /// Grants a partner principal access to sealed values until `expires_at` (admin).
    pub async fn create_grant(&self, actor: &Principal, new: NewGrant) -> Result<Uuid, CoreError> {
        actor.require(&[Role::Admin])?;
        if new.expires_at <= Utc::now() {
            return Err(CoreError::field("expiresAt", "must be in the future"));
        }
        let partner = match self.store.api_key(new.principal).await? {
            Some(k) => k.scope == actor.scope && k.role == Role::Partner,
            None => self
                .store
                .user(new.principal)
                .await?
                .is_some_and(|u| u.scope == actor.scope && u.role == Role::Partner),
        };
        if !partner {
            return Err(CoreError::field(
                "principal",
                "not a partner key or user of this partition",
            ));
        }
        let grant = GrantRecord {
            id: Uuid::now_v7(),
            scope: actor.scope,
            principal: new.principal,
            granted_by: actor.id,
            created: now_ms(),
            expires_at: new.expires_at,
            revoked_at: None,
        };
        self.store.insert_grant(&grant).await?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "grant.create",
            Some((None, grant.id.to_string())),
            vec![],
            format!("principal={}", new.principal),
        )
        .await?;
        Ok(grant.id)
    }

    /// Revokes a grant (admin); effective at once.
    pub async fn revoke_grant(&self, actor: &Principal, id: Uuid) -> Result<(), CoreError> {
        actor.require(&[Role::Admin])?;
        self.store
            .revoke_grant(actor.scope, id, now_ms())
            .await
            .map_err(|e| match e {
                StoreError::NotFound => CoreError::NotFound(format!("no active grant {id}")),
                e => e.into(),
            })?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "grant.revoke",
            Some((None, id.to_string())),
            vec![],
            String::new(),
        )
        .await?;
        Ok(())
    }

    /// Reads the audit log (admin).
    pub async fn read_audit(
        &self,
        actor: &Principal,
        mut query: AuditQuery,
        cursor: Option<&str>,
    ) -> Result<AuditPage, CoreError> {
        actor.require(&[Role::Admin])?;
        if [&query.action, &query.object_id]
            .into_iter()
            .flatten()
            .any(|t| t.contains('\0'))
        {
            return Err(CoreError::bad_request(
                "filters may not contain NUL characters",
            ));
        }
        if query.limit == 0 || query.limit > crate::search::MAX_LIMIT {
            return Err(CoreError::field(
                "limit",
                format!("must be between 1 and {}", crate::search::MAX_LIMIT),
            ));
        }
        if let Some(c) = cursor {
            query.before =
                Some(Uuid::try_parse(c).map_err(|_| CoreError::field("cursor", "invalid cursor"))?);
        }
        self.audit.flush().await;
        let entries = self.store.audit(actor.scope, &query).await?;
        let next_cursor = (entries.len() == query.limit)
            .then(|| entries.last().map(|e| e.id.to_string()))
            .flatten();
        Ok(AuditPage {
            items: entries
                .into_iter()
                .map(|e| AuditView {
                    id: e.id,
                    at: e.at,
                    actor: e.actor,
                    actor_role: e.actor_role,
                    action: e.action,
                    object_type: e.object_kind,
                    object_id: e.object_id,
                    fields: e.fields,
                    detail: e.detail,
                })
                .collect(),
            next_cursor,
        })
    }

    /// Erases a customer and everything linked to it, and destroys the customer's key so that
    /// copies in backups can't be decrypted (admin; allowed in production). Idempotent and
    /// crash-safe: the data goes and the erasure is recorded in one transaction, then the key is
    /// destroyed; a retry (or [`Self::finish_pending_erasures`]) of a half-done erase finishes it.
    pub async fn erase_customer(&self, actor: &Principal, id: ObjectId) -> Result<u64, CoreError> {
        actor.require(&[Role::Admin])?;
        let erasure = self
            .store
            .erase_customer(actor.scope, id, &actor.contributor())
            .await
            .map_err(|e| match e {
                StoreError::NotFound => CoreError::NotFound(format!("no customer with id {id}")),
                e => e.into(),
            })?;
        let detail = if erasure.completed {
            format!("objects={}; already erased", erasure.objects)
        } else {
            self.destroy_erased_key(actor.scope, id).await?;
            format!("objects={}", erasure.objects)
        };
        self.audit_action(
            Some(actor),
            actor.scope,
            "customer.erase",
            Some((Some(Kind::Customer), id.to_string())),
            vec![],
            detail,
        )
        .await?;
        Ok(erasure.objects)
    }

    /// Destroys the key of a customer whose data is erased, then marks the erasure complete.
    async fn destroy_erased_key(&self, scope: Scope, id: ObjectId) -> Result<(), CoreError> {
        self.keys.destroy_customer_key(scope, id).await?;
        Ok(self.store.complete_erasure(scope, id).await?)
    }

    /// Finishes erasures interrupted between deleting the data and destroying the key (run
    /// periodically by the server); returns how many it finished.
    pub async fn finish_pending_erasures(&self) -> Result<usize, CoreError> {
        let pending = self.store.pending_erasures(100).await?;
        for (scope, id) in &pending {
            self.destroy_erased_key(*scope, *id).await?;
            self.audit_action(
                None,
                *scope,
                "customer.erase",
                Some((Some(Kind::Customer), id.to_string())),
                vec![],
                "key destroyed after an interrupted erase".into(),
            )
            .await?;
        }
        Ok(pending.len())
    }

    /// Everything held about a customer (admin).
    pub async fn export_customer(
        &self,
        actor: &Principal,
        id: ObjectId,
    ) -> Result<CustomerExport, CoreError> {
        actor.require(&[Role::Admin])?;
        let mut revealed = crate::service::Revealed::default();
        let customer = self
            .get_into(actor, Kind::Customer, id, &mut revealed)
            .await?;
        let mut objects = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .timeline_into(
                    actor,
                    id,
                    None,
                    Some(crate::search::MAX_LIMIT),
                    cursor.as_deref(),
                    &mut revealed,
                )
                .await?;
            objects.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let exported = audit_entry(
            Some(actor),
            actor.scope,
            "customer.export",
            Some((Some(Kind::Customer), id.to_string())),
            vec![],
            format!("objects={}", objects.len()),
        );
        self.audit_revealed_with(actor, revealed, "export", Some(exported))
            .await?;
        Ok(CustomerExport {
            customer,
            objects,
            exported_at: now_ms(),
        })
    }
}
