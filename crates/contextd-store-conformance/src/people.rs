//! Users, sessions, grants, the audit log, erasure and re-encryption bookkeeping.

use std::collections::BTreeMap;

use contextd_core::auth::Role;
use contextd_core::object::Kind;
use contextd_core::store::{
    AuditEntry, AuditQuery, GrantRecord, KeyStore, SessionRecord, Store, StoreError, UserChange,
    UserRecord, WrappedKey,
};
use uuid::Uuid;

use crate::fixtures::{assert_err, at, insert, lab, now, object, other_partition, read, token};

fn user(scope: contextd_core::ids::Scope, name: &str) -> UserRecord {
    UserRecord {
        id: Uuid::now_v7(),
        scope,
        name: name.to_owned(),
        role: Role::Agent,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created: now(),
        disabled: false,
    }
}

/// Users: unique names per scope, found by name in their scope only, by id anywhere.
pub async fn check_users(store: &dyn Store) {
    let scope = lab();
    let ada = user(scope, "ada");
    store.insert_user(&ada).await.expect("insert user");
    assert_err(
        store.insert_user(&user(scope, "ada")).await,
        StoreError::AlreadyExists,
        "same name in the same scope",
    );
    store
        .insert_user(&user(other_partition(scope), "ada"))
        .await
        .expect("same name in the other partition is another user");
    store
        .insert_user(&user(scope, "bob"))
        .await
        .expect("insert second user");
    assert_eq!(
        store.user_by_name(scope, "ada").await.expect("by name"),
        Some(ada.clone()),
        "round trip"
    );
    assert_eq!(store.user(ada.id).await.expect("by id"), Some(ada.clone()));
    assert_eq!(
        store.user_by_name(lab(), "ada").await.expect("other org"),
        None,
        "names are per org"
    );
    let names: Vec<String> = store
        .users(scope)
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["ada", "bob"], "users of the scope, by name");
}

/// Sessions: found by secret hash, revoked once.
pub async fn check_sessions(store: &dyn Store) {
    let scope = lab();
    let s = SessionRecord {
        secret_hash: [7; 32],
        user_id: Uuid::now_v7(),
        scope,
        role: Role::Admin,
        csrf_hash: [9; 32],
        created: now(),
        expires_at: at(now(), 60_000),
        revoked_at: None,
    };
    let mut s = SessionRecord {
        secret_hash: *Uuid::new_v4()
            .as_bytes()
            .repeat(2)
            .first_chunk::<32>()
            .expect("32 bytes"),
        ..s
    };
    store.insert_session(&s).await.expect("insert session");
    assert_eq!(
        store.session(s.secret_hash).await.expect("read"),
        Some(s.clone())
    );
    let t = now();
    store
        .revoke_session(s.secret_hash, t)
        .await
        .expect("revoke");
    s.revoked_at = Some(t);
    assert_eq!(
        store.session(s.secret_hash).await.expect("read"),
        Some(s.clone()),
        "revocation time stored"
    );
    assert_err(
        store.revoke_session(s.secret_hash, t).await,
        StoreError::NotFound,
        "revoking twice",
    );
    assert_eq!(store.session([0xEE; 32]).await.expect("read"), None);
}

fn session_of(user: &UserRecord) -> SessionRecord {
    SessionRecord {
        secret_hash: *Uuid::new_v4()
            .as_bytes()
            .repeat(2)
            .first_chunk::<32>()
            .expect("32 bytes"),
        user_id: user.id,
        scope: user.scope,
        role: user.role,
        csrf_hash: [9; 32],
        created: now(),
        expires_at: at(now(), 60_000),
        revoked_at: None,
    }
}

async fn insert_users(store: &dyn Store, users: &[&UserRecord]) {
    for u in users {
        store.insert_user(u).await.expect("insert user");
    }
}

async fn revoked(store: &dyn Store, s: &SessionRecord) -> Option<chrono::DateTime<chrono::Utc>> {
    store
        .session(s.secret_hash)
        .await
        .expect("read session")
        .expect("session kept")
        .revoked_at
}

/// User changes: only the members given change, in the user's scope only; sessions end in
/// the same write when asked, the user's own only.
pub async fn check_user_changes(store: &dyn Store) {
    let scope = lab();
    let carl = user(scope, "carl");
    let dora = user(scope, "dora");
    insert_users(store, &[&carl, &dora]).await;
    let (s1, s2, other) = (session_of(&carl), session_of(&carl), session_of(&dora));
    for s in [&s1, &s2, &other] {
        store.insert_session(s).await.expect("insert session");
    }
    let promoted = store
        .update_user(
            scope,
            carl.id,
            &UserChange {
                role: Some(Role::Partner),
                ..UserChange::default()
            },
        )
        .await
        .expect("role change");
    assert_eq!(
        promoted,
        UserRecord {
            role: Role::Partner,
            ..carl.clone()
        },
        "only the role changed"
    );
    assert_eq!(
        store.user(carl.id).await.expect("read"),
        Some(promoted.clone())
    );
    assert_eq!(
        revoked(store, &s1).await,
        None,
        "no session end unless asked"
    );

    let t = now();
    let disabled = store
        .update_user(
            scope,
            carl.id,
            &UserChange {
                disabled: Some(true),
                password_hash: Some("$argon2id$v=19$new".into()),
                end_sessions_at: Some(t),
                ..UserChange::default()
            },
        )
        .await
        .expect("disable");
    assert!(disabled.disabled);
    assert_eq!(
        (disabled.role, disabled.password_hash.as_str()),
        (Role::Partner, "$argon2id$v=19$new")
    );
    assert_eq!(
        store.user(carl.id).await.expect("read"),
        Some(disabled),
        "stored"
    );
    assert_eq!(
        revoked(store, &s1).await,
        Some(t),
        "sessions ended in the same write"
    );
    assert_eq!(revoked(store, &s2).await, Some(t));
    assert_eq!(
        revoked(store, &other).await,
        None,
        "another user's session lives"
    );

    let enable = UserChange {
        disabled: Some(false),
        ..UserChange::default()
    };
    assert_err(
        store
            .update_user(other_partition(scope), carl.id, &enable)
            .await,
        StoreError::NotFound,
        "change from another partition",
    );
    assert_err(
        store.update_user(scope, Uuid::now_v7(), &enable).await,
        StoreError::NotFound,
        "change of an absent user",
    );
    assert!(
        store
            .user(carl.id)
            .await
            .expect("read")
            .is_some_and(|u| u.disabled),
        "a refused change changes nothing"
    );
    let enabled = store
        .update_user(scope, carl.id, &enable)
        .await
        .expect("enable");
    assert!(!enabled.disabled);
    assert_eq!(
        revoked(store, &s1).await,
        Some(t),
        "re-enabling doesn't revive sessions"
    );
}

/// Deleting a user removes the user and its sessions; revoking a user's sessions ends the
/// live ones of that user in that scope and counts them.
pub async fn check_user_deletion_and_sessions(store: &dyn Store) {
    let scope = lab();
    let erin = user(scope, "erin");
    let finn = user(scope, "finn");
    insert_users(store, &[&erin, &finn]).await;
    let (e1, e2, f1) = (session_of(&erin), session_of(&erin), session_of(&finn));
    for s in [&e1, &e2, &f1] {
        store.insert_session(s).await.expect("insert session");
    }
    let t = now();
    store
        .revoke_session(e2.secret_hash, t)
        .await
        .expect("sign out");
    assert_eq!(
        store
            .revoke_user_sessions(other_partition(scope), erin.id, t)
            .await
            .expect("other partition"),
        0,
        "another partition's revocation reaches nothing"
    );
    assert_eq!(revoked(store, &e1).await, None);
    let later = at(t, 5);
    assert_eq!(
        store
            .revoke_user_sessions(scope, erin.id, later)
            .await
            .expect("revoke"),
        1,
        "only the live session counts"
    );
    assert_eq!(revoked(store, &e1).await, Some(later));
    assert_eq!(
        revoked(store, &e2).await,
        Some(t),
        "an ended session keeps its time"
    );
    assert_eq!(
        revoked(store, &f1).await,
        None,
        "another user's session lives"
    );
    assert_eq!(
        store
            .revoke_user_sessions(scope, erin.id, later)
            .await
            .expect("again"),
        0
    );

    assert_err(
        store.delete_user(other_partition(scope), finn.id).await,
        StoreError::NotFound,
        "delete from another partition",
    );
    assert!(store.user(finn.id).await.expect("read").is_some());
    store.delete_user(scope, finn.id).await.expect("delete");
    assert_eq!(store.user(finn.id).await.expect("read"), None);
    assert_eq!(
        store.user_by_name(scope, "finn").await.expect("by name"),
        None
    );
    assert_eq!(
        store.session(f1.secret_hash).await.expect("read"),
        None,
        "the user's sessions go with it"
    );
    assert!(store.session(e1.secret_hash).await.expect("read").is_some());
    assert_err(
        store.delete_user(scope, finn.id).await,
        StoreError::NotFound,
        "delete twice",
    );
    store
        .insert_user(&user(scope, "finn"))
        .await
        .expect("the name is free again");
}

fn admin(scope: contextd_core::ids::Scope, name: &str) -> UserRecord {
    UserRecord {
        role: Role::Admin,
        ..user(scope, name)
    }
}

/// The last enabled admin user of a scope can't be disabled, demoted or deleted, even by
/// two changes at once; users of scopes without admins, and disabled admins, are free.
pub async fn check_last_admin(store: &dyn Store) {
    let scope = lab();
    let ada = admin(scope, "ada");
    let bob = admin(scope, "bob");
    insert_users(store, &[&ada, &bob]).await;
    let s = session_of(&ada);
    store.insert_session(&s).await.expect("insert session");
    let disable = UserChange {
        disabled: Some(true),
        end_sessions_at: Some(now()),
        ..UserChange::default()
    };
    let demote = UserChange {
        role: Some(Role::Agent),
        ..UserChange::default()
    };
    store
        .update_user(scope, bob.id, &disable)
        .await
        .expect("another admin is left");
    assert_err(
        store.update_user(scope, ada.id, &disable).await,
        StoreError::LastAdmin,
        "disable the last admin",
    );
    assert_err(
        store.update_user(scope, ada.id, &demote).await,
        StoreError::LastAdmin,
        "demote the last admin",
    );
    assert_err(
        store.delete_user(scope, ada.id).await,
        StoreError::LastAdmin,
        "delete the last admin",
    );
    assert_eq!(
        store.user(ada.id).await.expect("read"),
        Some(ada.clone()),
        "refusals change nothing"
    );
    assert_eq!(revoked(store, &s).await, None, "nor end sessions");
    store
        .update_user(
            scope,
            ada.id,
            &UserChange {
                password_hash: Some("$argon2id$v=19$other".into()),
                role: Some(Role::Admin),
                disabled: Some(false),
                ..UserChange::default()
            },
        )
        .await
        .expect("a change that keeps the admin");
    store
        .update_user(scope, bob.id, &demote)
        .await
        .expect("a disabled admin may be demoted");
    store.delete_user(scope, bob.id).await.expect("and deleted");

    // Scopes without an admin user (API keys only) are not held to the rule.
    let keys_only = other_partition(scope);
    let agent = user(keys_only, "agent");
    insert_users(store, &[&agent]).await;
    store
        .update_user(keys_only, agent.id, &disable)
        .await
        .expect("no admin user to keep");

    // Two admins disabling each other at once: one wins, the other is refused.
    for round in 0..5 {
        let scope = lab();
        let (x, y) = (admin(scope, "x"), admin(scope, "y"));
        insert_users(store, &[&x, &y]).await;
        let (a, b) = tokio::join!(
            store.update_user(scope, x.id, &disable),
            store.update_user(scope, y.id, &disable)
        );
        let refused = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::LastAdmin)))
            .count();
        assert!(
            refused == 1 && (a.is_ok() || b.is_ok()),
            "round {round}: exactly one of two concurrent disables wins, got {a:?} and {b:?}"
        );
        let enabled = store
            .users(scope)
            .await
            .expect("list")
            .iter()
            .filter(|u| !u.disabled)
            .count();
        assert_eq!(enabled, 1, "round {round}: an admin is left");
    }
}

/// Grants: active only while unexpired and unrevoked, per scope and principal.
pub async fn check_grants(store: &dyn Store) {
    let scope = lab();
    let partner = Uuid::now_v7();
    let grant = |expires_in: i64| GrantRecord {
        id: Uuid::now_v7(),
        scope,
        principal: partner,
        granted_by: Uuid::now_v7(),
        created: now(),
        expires_at: at(now(), expires_in),
        revoked_at: None,
    };
    let t = now();
    assert!(!store
        .has_active_grant(scope, partner, t)
        .await
        .expect("none yet"));
    store
        .insert_grant(&grant(-1_000))
        .await
        .expect("expired grant");
    assert!(
        !store
            .has_active_grant(scope, partner, t)
            .await
            .expect("expired"),
        "an expired grant is no grant"
    );
    let g = grant(60_000);
    store.insert_grant(&g).await.expect("grant");
    assert!(store
        .has_active_grant(scope, partner, t)
        .await
        .expect("active"));
    assert!(!store
        .has_active_grant(other_partition(scope), partner, t)
        .await
        .expect("other partition"));
    assert!(!store
        .has_active_grant(scope, Uuid::now_v7(), t)
        .await
        .expect("other principal"));
    assert_err(
        store.revoke_grant(other_partition(scope), g.id, t).await,
        StoreError::NotFound,
        "revoke from another scope",
    );
    store.revoke_grant(scope, g.id, t).await.expect("revoke");
    assert!(
        !store
            .has_active_grant(scope, partner, t)
            .await
            .expect("revoked"),
        "revocation is immediate"
    );
    assert_err(
        store.revoke_grant(scope, g.id, t).await,
        StoreError::NotFound,
        "revoke twice",
    );
}

/// Audit: appended entries read back newest first, filtered and paged, per scope.
pub async fn check_audit(store: &dyn Store) {
    let scope = lab();
    let actor = Uuid::now_v7();
    let entry = |action: &str, object: Option<&str>, ms: i64| AuditEntry {
        id: Uuid::now_v7(),
        scope,
        at: at(now(), ms),
        actor: Some(actor),
        actor_role: Some(Role::Agent),
        action: action.into(),
        object_kind: object.map(|_| Kind::Customer),
        object_id: object.map(str::to_owned),
        fields: vec!["Context_First_Name".into()],
        detail: "d".into(),
    };
    let entries = vec![
        entry("pii.read", Some("a"), 0),
        entry("pii.read", Some("b"), 1),
        entry("key.create", None, 2),
    ];
    store.append_audit(&entries).await.expect("append");
    let mut other = entry("pii.read", Some("a"), 3);
    other.scope = other_partition(scope);
    store
        .append_audit(&[other])
        .await
        .expect("append other scope");
    let all = store
        .audit(
            scope,
            &AuditQuery {
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .await
        .expect("read");
    let ids: Vec<Uuid> = all.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        entries.iter().rev().map(|e| e.id).collect::<Vec<_>>(),
        "newest first, this scope only"
    );
    assert_eq!(all[2], entries[0], "round trip");
    let reads = store
        .audit(
            scope,
            &AuditQuery {
                action: Some("pii.read".into()),
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .await
        .expect("by action");
    assert_eq!(reads.len(), 2);
    let on_a = store
        .audit(
            scope,
            &AuditQuery {
                object_id: Some("a".into()),
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .await
        .expect("by object");
    assert_eq!(on_a.len(), 1);
    let by_actor = store
        .audit(
            scope,
            &AuditQuery {
                actor: Some(Uuid::now_v7()),
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .await
        .expect("by actor");
    assert!(by_actor.is_empty());
    let page = store
        .audit(
            scope,
            &AuditQuery {
                limit: 1,
                before: Some(entries[2].id),
                ..AuditQuery::default()
            },
        )
        .await
        .expect("page");
    assert_eq!(
        page.iter().map(|e| e.id).collect::<Vec<_>>(),
        [entries[1].id],
        "older than the cursor"
    );
    let window = store
        .audit(
            scope,
            &AuditQuery {
                from: Some(entries[1].at),
                to: Some(entries[1].at),
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .await
        .expect("window");
    assert_eq!(window.len(), 1, "time bounds are inclusive");
}

/// Erasure removes the customer and every object linked to it, in that scope only.
pub async fn check_erase_customer(store: &dyn Store) {
    let scope = lab();
    let t = now();
    let customer = object(scope, Kind::Customer, t);
    let mut request = object(scope, Kind::Request, t);
    request.customer_id = Some(customer.id);
    let mut activity = object(scope, Kind::Activity, t);
    activity.customer_id = Some(customer.id);
    let bystander = object(scope, Kind::Customer, t);
    let tok = token();
    for o in [&customer, &request, &activity, &bystander] {
        insert(store, o, &[tok]).await;
    }
    assert_err(
        store
            .erase_customer(other_partition(scope), customer.id, &crate::fixtures::by())
            .await,
        StoreError::NotFound,
        "erase from another scope",
    );
    assert_err(
        store
            .erase_customer(scope, request.id, &crate::fixtures::by())
            .await,
        StoreError::NotFound,
        "erase of a non-customer",
    );
    let first = store
        .erase_customer(scope, customer.id, &crate::fixtures::by())
        .await
        .expect("erase");
    assert_eq!(
        first,
        contextd_core::store::Erasure {
            objects: 3,
            completed: false
        }
    );
    // Until the key is destroyed the erasure is pending; a retry changes nothing and says so.
    let pending = store.pending_erasures(1000).await.expect("pending");
    assert!(pending.contains(&(scope, customer.id)), "listed as pending");
    assert_eq!(
        store
            .erase_customer(scope, customer.id, &crate::fixtures::by())
            .await
            .expect("retry"),
        first,
        "a retry finds the record"
    );
    store
        .complete_erasure(scope, customer.id)
        .await
        .expect("complete");
    assert!(!store
        .pending_erasures(1000)
        .await
        .expect("pending")
        .contains(&(scope, customer.id)));
    assert_eq!(
        store
            .erase_customer(scope, customer.id, &crate::fixtures::by())
            .await
            .expect("repeat"),
        contextd_core::store::Erasure {
            objects: 3,
            completed: true
        }
    );
    assert_err(
        store.complete_erasure(scope, bystander.id).await,
        StoreError::NotFound,
        "no erasure to complete",
    );
    // No write links anything to the erased customer any more.
    let mut late = object(scope, Kind::Activity, t);
    late.customer_id = Some(customer.id);
    let write = contextd_core::store::ObjectWrite {
        customer_check: Some(customer.id),
        ..crate::fixtures::insert_write(&late, &[tok])
    };
    assert_err(
        store.write_object(&write).await,
        StoreError::CustomerNotFound,
        "a write linking to an erased customer",
    );
    for o in [&customer, &request, &activity] {
        assert_eq!(
            store.object(scope, o.id).await.expect("read"),
            None,
            "erased"
        );
    }
    read(store, scope, bystander.id).await;
    let plan = crate::fixtures::plan_with(
        Kind::Customer,
        true,
        vec![contextd_core::store::Condition::Tokens(vec![tok])],
    );
    let found = store.search_ids(scope, &plan).await.expect("search");
    assert_eq!(
        found.ids,
        vec![bystander.id],
        "the erased objects' tokens are gone"
    );
}

/// Re-sealing: objects under older key versions are listed, counted and re-sealed without a
/// version bump; a concurrent change wins.
pub async fn check_reseal(store: &dyn Store) {
    let scope = lab();
    let t = now();
    let mut old = object(scope, Kind::Activity, t);
    old.key_version = 1;
    old.sealed = BTreeMap::from([("f".to_owned(), vec![1, 2, 3])]);
    let mut current = object(scope, Kind::Activity, t);
    current.key_version = 2;
    let customer_keyed = object(scope, Kind::Activity, t);
    for o in [&old, &current, &customer_keyed] {
        insert(store, o, &[]).await;
    }
    assert_eq!(
        store
            .count_objects_to_reseal(scope, 2)
            .await
            .expect("count"),
        1
    );
    assert_eq!(
        store
            .count_objects_to_reseal(other_partition(scope), 2)
            .await
            .expect("count"),
        0
    );
    let todo = store.objects_to_reseal(scope, 2, 10).await.expect("list");
    assert_eq!(todo.iter().map(|o| o.id).collect::<Vec<_>>(), [old.id]);
    let resealed = BTreeMap::from([("f".to_owned(), vec![9, 9])]);
    match store.reseal_object(scope, old.id, 7, &resealed, 2).await {
        Err(StoreError::VersionConflict { .. }) => {}
        other => panic!("reseal with a stale version must conflict, got {other:?}"),
    }
    store
        .reseal_object(scope, old.id, 1, &resealed, 2)
        .await
        .expect("reseal");
    let after = read(store, scope, old.id).await;
    assert_eq!(
        (
            after.sealed,
            after.key_version,
            after.version,
            after.last_updated
        ),
        (resealed, 2, 1, old.last_updated),
        "reseal is not a client write"
    );
    assert_eq!(
        store
            .count_objects_to_reseal(scope, 2)
            .await
            .expect("count"),
        0
    );
}

/// Key store bookkeeping for rotation and bring-your-own-key.
pub async fn check_key_rewrap(keys: &dyn KeyStore) {
    let scope = lab();
    let wrapped = |version: u32, wrapped_by: u32, b: u8| WrappedKey {
        version,
        wrapped_by,
        bytes: vec![b; 60],
    };
    keys.insert_index_key(scope, &wrapped(1, 0, 1))
        .await
        .expect("index key");
    keys.insert_data_key(scope, &wrapped(1, 0, 2))
        .await
        .expect("data key");
    let c1 = contextd_core::ObjectId::new();
    let c2 = contextd_core::ObjectId::new();
    keys.insert_customer_key(scope, c1, &wrapped(0, 1, 3))
        .await
        .expect("customer key");
    keys.insert_customer_key(scope, c2, &wrapped(0, 2, 4))
        .await
        .expect("customer key");
    assert!(keys.scopes().await.expect("scopes").contains(&scope));
    assert_eq!(
        keys.count_customer_keys_wrapped_before(scope, 2)
            .await
            .expect("count"),
        1
    );
    let old = keys
        .customer_keys_wrapped_before(scope, 2, 10)
        .await
        .expect("list");
    assert_eq!(old, vec![(c1, wrapped(0, 1, 3))]);
    keys.replace_customer_key(scope, c1, &wrapped(0, 2, 5))
        .await
        .expect("rewrap");
    assert_eq!(
        keys.customer_key(scope, c1).await.expect("read"),
        Some(wrapped(0, 2, 5))
    );
    assert_eq!(
        keys.count_customer_keys_wrapped_before(scope, 2)
            .await
            .expect("count"),
        0
    );
    assert_err(
        keys.replace_customer_key(scope, contextd_core::ObjectId::new(), &wrapped(0, 2, 5))
            .await,
        StoreError::NotFound,
        "rewrap of an absent key",
    );
    keys.replace_partition_keys(
        scope,
        &[wrapped(1, 0, 2)],
        &[wrapped(1, 1, 6), wrapped(2, 1, 7)],
        &wrapped(1, 1, 8),
    )
    .await
    .expect("replace");
    assert_eq!(
        keys.data_keys(scope).await.expect("data keys"),
        vec![wrapped(1, 1, 6), wrapped(2, 1, 7)]
    );
    assert_eq!(
        keys.index_key(scope).await.expect("index key"),
        Some(wrapped(1, 1, 8))
    );
}

/// The credential feed, for stores that have one ([`Store::credential_changes`]): it comes
/// live, and every kind of change to what requests are authenticated with (revoking a key,
/// changing, signing out or deleting a user, ending a user's sessions) moves its epoch once
/// committed. Stores without a feed pass: the service then reads credentials every time.
pub async fn check_credential_changes(store: &dyn Store) {
    let Some(mut feed) = store.credential_changes() else {
        return;
    };
    let wait = std::time::Duration::from_secs(10);
    tokio::time::timeout(wait, feed.wait_for(|e| e.live))
        .await
        .expect("the credential feed comes live")
        .expect("the feed's sender is alive");

    let org = contextd_core::store::OrgRecord {
        id: contextd_core::ids::OrgId::new(),
        name: format!("feed-{}", Uuid::new_v4().simple()),
        created: now(),
    };
    store.create_org(&org).await.expect("create org");
    let scope = contextd_core::ids::Scope {
        org: org.id,
        partition: contextd_core::ids::Partition::Lab,
    };
    let key = contextd_core::store::ApiKeyRecord {
        id: Uuid::new_v4(),
        scope,
        name: "desk".into(),
        role: Role::Agent,
        secret_hash: [3; 32],
        created: now(),
        expires_at: None,
        revoked_at: None,
        connector: None,
    };
    store.insert_api_key(&key).await.expect("insert key");
    let ada = user(scope, "ada");
    insert_users(store, &[&ada]).await;
    let (first, second) = (session_of(&ada), session_of(&ada));
    for s in [&first, &second] {
        store.insert_session(s).await.expect("insert session");
    }

    let mut moved = |what: &'static str| {
        let before = *feed.borrow_and_update();
        let mut feed = feed.clone();
        async move {
            let seen = tokio::time::timeout(wait, feed.wait_for(|e| e.epoch != before.epoch))
                .await
                .unwrap_or_else(|_| panic!("{what}: the feed did not move"))
                .map(|e| *e)
                .expect("the feed's sender is alive");
            assert!(seen.live, "{what}: the feed stays live");
        }
    };
    let t = now();
    let check = moved("revoking an API key");
    store
        .revoke_api_key(scope, key.id, t)
        .await
        .expect("revoke");
    check.await;
    let check = moved("signing a session out");
    store
        .revoke_session(first.secret_hash, t)
        .await
        .expect("sign out");
    check.await;
    let check = moved("changing a user");
    let disable = UserChange {
        disabled: Some(true),
        ..UserChange::default()
    };
    store
        .update_user(scope, ada.id, &disable)
        .await
        .expect("disable");
    check.await;
    let check = moved("ending a user's sessions");
    store
        .revoke_user_sessions(scope, ada.id, t)
        .await
        .expect("end sessions");
    check.await;
    let check = moved("deleting a user");
    store.delete_user(scope, ada.id).await.expect("delete");
    check.await;
}
