//! Organizations and the credentials of their people and systems: [`CredentialStore`], the
//! records it speaks, and the last-admin rule.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::auth::Role;
use crate::ids::{OrgId, Scope};

/// An organization.
#[derive(Clone, Debug, PartialEq)]
pub struct OrgRecord {
    /// Id.
    pub id: OrgId,
    /// Unique name.
    pub name: String,
    /// Created.
    pub created: DateTime<Utc>,
}

/// An API key as stored: only the SHA-256 of its secret.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKeyRecord {
    /// Key id (the public part of the token).
    pub id: Uuid,
    /// Org and partition the key is bound to.
    pub scope: Scope,
    /// Display name.
    pub name: String,
    /// Role granted.
    pub role: Role,
    /// SHA-256 of the secret part of the token.
    pub secret_hash: [u8; 32],
    /// Created.
    pub created: DateTime<Utc>,
    /// Optional expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The connector this key is a short-lived token of (revoked with it; not listed with
    /// the partition's API keys).
    pub connector: Option<Uuid>,
}

/// A person who signs in with name and password (Argon2id hash).
#[derive(Clone, Debug, PartialEq)]
pub struct UserRecord {
    /// User id.
    pub id: Uuid,
    /// Org and partition the user belongs to.
    pub scope: Scope,
    /// Sign-in name, unique in its scope.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Created.
    pub created: DateTime<Utc>,
    /// Disabled users can't sign in.
    pub disabled: bool,
}

/// A sign-in session of the web pages; only the SHA-256 of the session secret is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRecord {
    /// SHA-256 of the session cookie's secret.
    pub secret_hash: [u8; 32],
    /// The user.
    pub user_id: Uuid,
    /// The user's scope.
    pub scope: Scope,
    /// The user's role at sign-in (kept for the record: requests take the role from the
    /// user, so a role change applies to existing sessions at once).
    pub role: Role,
    /// SHA-256 of the CSRF token that must accompany unsafe requests.
    pub csrf_hash: [u8; 32],
    /// Created.
    pub created: DateTime<Utc>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Revocation (sign-out) time.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A change to a user: each member set replaces the stored value, the others are kept.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserChange {
    /// New role.
    pub role: Option<Role>,
    /// New Argon2id PHC string.
    pub password_hash: Option<String>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// Also revoke, in the same transaction, every unrevoked session of the user at this time.
    pub end_sessions_at: Option<DateTime<Utc>>,
}

/// An admin's grant letting a partner principal see ENCRYPTED and PII values until it expires.
#[derive(Clone, Debug, PartialEq)]
pub struct GrantRecord {
    /// Grant id.
    pub id: Uuid,
    /// Scope of the grant (the partner's).
    pub scope: Scope,
    /// The partner's key or user id.
    pub principal: Uuid,
    /// Who granted it.
    pub granted_by: Uuid,
    /// Created.
    pub created: DateTime<Utc>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Revocation time.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl UserRecord {
    /// Whether the user is an admin who can sign in.
    pub fn is_enabled_admin(&self) -> bool {
        self.role == Role::Admin && !self.disabled
    }
}

impl UserChange {
    /// The user as this change leaves it (sessions are not the user's record).
    pub fn apply(&self, user: &UserRecord) -> UserRecord {
        let mut new = user.clone();
        new.role = self.role.unwrap_or(user.role);
        new.disabled = self.disabled.unwrap_or(user.disabled);
        if let Some(h) = &self.password_hash {
            new.password_hash.clone_from(h);
        }
        new
    }
}

/// The last-admin rule of [`CredentialStore::update_user`] and
/// [`CredentialStore::delete_user`]: `LastAdmin` if `old` is an enabled admin, `new` (`None`:
/// deleted) is not, and `other_admins` — the enabled admins of the scope besides `old`,
/// counted only when the answer depends on it, in the same transaction — finds none.
pub fn check_last_admin(
    old: &UserRecord,
    new: Option<&UserRecord>,
    other_admins: impl FnOnce() -> Result<u64, StoreError>,
) -> Result<(), StoreError> {
    let stays = new.is_some_and(UserRecord::is_enabled_admin);
    if !old.is_enabled_admin() || stays || other_admins()? > 0 {
        Ok(())
    } else {
        Err(StoreError::LastAdmin)
    }
}

/// Where a store's feed of credential changes stands (see
/// [`CredentialStore::credential_changes`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CredentialEpoch {
    /// Moves on every committed change to an API key, user or session, made through any
    /// instance (or by hand in the database), and on every reconnection of the feed.
    pub epoch: u64,
    /// Whether the feed hears every change now. While it does not (not yet connected, or
    /// reconnecting), nothing may be answered from a cache.
    pub live: bool,
}

/// Organizations and the credentials in them: API keys, users, sign-in sessions and partner
/// grants.
#[async_trait]
pub trait CredentialStore: Send + Sync + 'static {
    /// A feed of credential changes, for stores that can tell every instance about a change
    /// the moment it commits (PostgreSQL: a trigger's NOTIFY in the changing transaction).
    /// With one, the service may keep API keys and sessions in memory between requests;
    /// without one (the default) it reads them on every request.
    fn credential_changes(&self) -> Option<tokio::sync::watch::Receiver<CredentialEpoch>> {
        None
    }

    /// Creates an org; `AlreadyExists` if the name is taken.
    async fn create_org(&self, org: &OrgRecord) -> Result<(), StoreError>;
    /// Finds an org by name.
    async fn org_by_name(&self, name: &str) -> Result<Option<OrgRecord>, StoreError>;
    /// Number of orgs (zero on a new database).
    async fn count_orgs(&self) -> Result<u64, StoreError>;
    /// Every org, by name (byte order).
    async fn orgs(&self) -> Result<Vec<OrgRecord>, StoreError>;
    /// Stores a new API key.
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    /// Reads an API key by id (any org: the token names it).
    async fn api_key(&self, id: Uuid) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Lists the API keys of a scope, without the tokens issued to connectors (hashes
    /// included; callers must not show them).
    async fn api_keys(&self, scope: Scope) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Revokes an API key of the scope at `at`; `NotFound` if absent or already revoked.
    async fn revoke_api_key(
        &self,
        scope: Scope,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Creates a user; `AlreadyExists` if the name is taken in the scope.
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// A user by name within a scope.
    async fn user_by_name(
        &self,
        scope: Scope,
        name: &str,
    ) -> Result<Option<UserRecord>, StoreError>;
    /// A user by id (any scope).
    async fn user(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError>;
    /// The users of a scope, by name.
    async fn users(&self, scope: Scope) -> Result<Vec<UserRecord>, StoreError>;
    /// Stores a new session.
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// A session by the hash of its secret.
    async fn session(&self, secret_hash: [u8; 32]) -> Result<Option<SessionRecord>, StoreError>;
    /// Revokes a session; `NotFound` if absent.
    async fn revoke_session(
        &self,
        secret_hash: [u8; 32],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Applies `change` to a user of the scope in one transaction and returns the user as
    /// changed. `NotFound` if the scope has no such user; `LastAdmin` if the user is an enabled
    /// admin and the change would leave the scope without any (concurrent changes included).
    async fn update_user(
        &self,
        scope: Scope,
        id: Uuid,
        change: &UserChange,
    ) -> Result<UserRecord, StoreError>;
    /// Deletes a user of the scope and all of the user's sessions, in one transaction.
    /// `NotFound` and `LastAdmin` as [`CredentialStore::update_user`].
    async fn delete_user(&self, scope: Scope, id: Uuid) -> Result<(), StoreError>;
    /// Revokes every unrevoked session of a user of the scope at `at`; returns how many.
    async fn revoke_user_sessions(
        &self,
        scope: Scope,
        user_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Stores a grant.
    async fn insert_grant(&self, grant: &GrantRecord) -> Result<(), StoreError>;
    /// Whether the principal holds a grant in scope that is unrevoked and unexpired at `now`.
    async fn has_active_grant(
        &self,
        scope: Scope,
        principal: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Revokes a grant of the scope; `NotFound` if absent or already revoked.
    async fn revoke_grant(
        &self,
        scope: Scope,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Partition;

    fn user(role: Role, disabled: bool) -> UserRecord {
        UserRecord {
            id: Uuid::new_v4(),
            scope: Scope {
                org: OrgId::new(),
                partition: Partition::Lab,
            },
            name: "ada".into(),
            role,
            password_hash: "old".into(),
            created: crate::time::from_millis(0),
            disabled,
        }
    }

    #[test]
    fn a_change_replaces_only_what_it_sets() {
        let old = user(Role::Admin, false);
        assert_eq!(UserChange::default().apply(&old), old);
        let change = UserChange {
            disabled: Some(true),
            password_hash: Some("new".into()),
            ..UserChange::default()
        };
        let new = change.apply(&old);
        assert_eq!(
            (new.role, new.disabled, new.password_hash.as_str()),
            (Role::Admin, true, "new")
        );
        assert!(old.is_enabled_admin() && !new.is_enabled_admin());
    }

    #[test]
    fn the_last_enabled_admin_stays() {
        let admin = user(Role::Admin, false);
        let demoted = UserChange {
            role: Some(Role::Agent),
            ..UserChange::default()
        }
        .apply(&admin);
        let none = || Ok(0);
        assert!(matches!(
            check_last_admin(&admin, Some(&demoted), none),
            Err(StoreError::LastAdmin)
        ));
        assert!(matches!(
            check_last_admin(&admin, None, none),
            Err(StoreError::LastAdmin)
        ));
        assert!(check_last_admin(&admin, None, || Ok(1)).is_ok());
        assert!(check_last_admin(&admin, Some(&admin), none).is_ok());
        let never = || -> Result<u64, StoreError> { panic!("counted needlessly") };
        assert!(check_last_admin(&admin, Some(&admin), never).is_ok());
        assert!(check_last_admin(&user(Role::Admin, true), None, never).is_ok());
        assert!(check_last_admin(&demoted, None, never).is_ok());
    }
}
