//! Users, sessions, grants, the audit log, erasure and re-encryption bookkeeping.

use std::collections::BTreeMap;

use contextd_core::auth::Role;
use contextd_core::object::Kind;
use contextd_core::store::{
    AuditEntry, AuditQuery, GrantRecord, KeyStore, SessionRecord, Store, StoreError, UserRecord,
    WrappedKey,
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
            .erase_customer(other_partition(scope), customer.id)
            .await,
        StoreError::NotFound,
        "erase from another scope",
    );
    assert_err(
        store.erase_customer(scope, request.id).await,
        StoreError::NotFound,
        "erase of a non-customer",
    );
    assert_eq!(
        store
            .erase_customer(scope, customer.id)
            .await
            .expect("erase"),
        3
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
