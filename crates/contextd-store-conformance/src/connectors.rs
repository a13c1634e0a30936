//! Connectors: their records and credentials, rotation, revocation, and the tokens issued to
//! them.

use chrono::{DateTime, Utc};
use contextd_core::auth::{hash_secret, Role};
use contextd_core::ids::{OrgId, Partition, Scope};
use contextd_core::store::{ApiKeyRecord, ConnectorCredential, ConnectorRecord, Store, StoreError};
use contextd_proto::connectors::AppType;
use uuid::Uuid;

use crate::fixtures::{assert_err, at, join_all, now};

/// A live connector of `org`, never seen nor rotated.
fn connector(org: OrgId, t: DateTime<Utc>) -> ConnectorRecord {
    ConnectorRecord {
        id: Uuid::now_v7(),
        org,
        name: "IVR — Zoë's".into(),
        app_type: AppType::Voice,
        version: Some("3.1.4".into()),
        created: t,
        last_seen: None,
        rotated: None,
        revoked_at: None,
    }
}

/// A credential per partition of `c`, whose secrets are `<prefix>-production` and
/// `<prefix>-lab`; sorted by client id, as the checks compare them.
fn credentials(c: &ConnectorRecord, prefix: &str) -> Vec<ConnectorCredential> {
    let mut out: Vec<ConnectorCredential> = [Partition::Production, Partition::Lab]
        .into_iter()
        .map(|partition| ConnectorCredential {
            client_id: Uuid::now_v7(),
            connector: c.id,
            scope: Scope {
                org: c.org,
                partition,
            },
            secret_hash: hash_secret(&format!("{prefix}-{}", partition.as_str())),
            previous_hash: None,
            previous_until: None,
        })
        .collect();
    out.sort_by_key(|k| k.client_id);
    out
}

/// The connector's credentials as stored, sorted by client id.
async fn stored_credentials(store: &dyn Store, org: OrgId, id: Uuid) -> Vec<ConnectorCredential> {
    let mut out = store
        .connector_credentials(org, id)
        .await
        .expect("connector_credentials");
    out.sort_by_key(|k| k.client_id);
    out
}

/// A connector that must exist.
async fn stored(store: &dyn Store, org: OrgId, id: Uuid) -> ConnectorRecord {
    match store.connector(org, id).await {
        Ok(Some(c)) => c,
        other => panic!("connector {id} should exist in {org:?}, got {other:?}"),
    }
}

/// An API key of `scope`, a token of `connector` if given.
fn key(scope: Scope, connector: Option<Uuid>, t: DateTime<Utc>) -> ApiKeyRecord {
    ApiKeyRecord {
        id: Uuid::now_v7(),
        scope,
        name: "token".into(),
        role: Role::Machine,
        secret_hash: hash_secret(&Uuid::new_v4().to_string()),
        created: t,
        expires_at: Some(at(t, 900_000)),
        revoked_at: None,
        connector,
    }
}

/// Connectors: stored and read back whole, oldest first, within their org only; ids and
/// client ids unique (a refused insert writes nothing); rotation keeps the replaced secret
/// for its grace; a revoked connector can be neither rotated nor revoked again.
pub async fn check_connectors(store: &dyn Store) {
    let org = OrgId::new();
    let t = now();
    let a = connector(org, t);
    let a_keys = credentials(&a, "a");
    // Every optional field set, to prove each round-trips.
    let b = ConnectorRecord {
        id: Uuid::now_v7(),
        name: "desk".into(),
        app_type: AppType::Desktop,
        version: None,
        created: at(t, 1),
        last_seen: Some(at(t, 2)),
        rotated: Some(at(t, 3)),
        ..connector(org, t)
    };
    let mut b_keys = credentials(&b, "b");
    for k in &mut b_keys {
        k.previous_hash = Some(hash_secret("b-before"));
        k.previous_until = Some(at(t, 60_000));
    }
    assert!(
        store.connectors(org).await.expect("connectors").is_empty(),
        "a new org has no connectors"
    );
    for (c, keys) in [(&a, &a_keys), (&b, &b_keys)] {
        store
            .insert_connector(c, keys)
            .await
            .expect("insert_connector");
        assert_eq!(
            &stored(store, org, c.id).await,
            c,
            "a connector reads back unchanged"
        );
        assert_eq!(
            &stored_credentials(store, org, c.id).await,
            keys,
            "its credentials read back unchanged"
        );
        for k in keys.iter() {
            assert_eq!(
                store.credential(k.client_id).await.expect("credential"),
                Some((k.clone(), c.clone())),
                "a credential reads back with its connector, by client id alone"
            );
        }
    }
    let mut oldest_first = vec![a.clone(), b.clone()];
    oldest_first.sort_by_key(|c| c.id);
    assert_eq!(
        store.connectors(org).await.expect("connectors"),
        oldest_first,
        "an org's connectors, oldest (lowest UUIDv7) first"
    );
    assert_eq!(
        store.credential(Uuid::now_v7()).await.expect("credential"),
        None
    );
    assert_eq!(
        store
            .connector(org, Uuid::now_v7())
            .await
            .expect("connector"),
        None
    );

    check_connector_isolation(store, &a, &a_keys).await;
    check_connector_duplicates(store, &a, &a_keys).await;
    check_rotation(store, &a, &a_keys, &b_keys).await;
    check_revoked_connector(store, &a).await;
    assert_eq!(
        stored(store, org, b.id).await,
        b,
        "the other connector is untouched"
    );
    assert_eq!(stored_credentials(store, org, b.id).await, b_keys);
}

/// Another org neither sees nor changes `c`.
async fn check_connector_isolation(
    store: &dyn Store,
    c: &ConnectorRecord,
    keys: &[ConnectorCredential],
) {
    let other = OrgId::new();
    let t = now();
    assert!(store
        .connectors(other)
        .await
        .expect("connectors")
        .is_empty());
    assert_eq!(
        store.connector(other, c.id).await.expect("connector"),
        None,
        "another org does not see a connector"
    );
    assert!(
        store
            .connector_credentials(other, c.id)
            .await
            .expect("connector_credentials")
            .is_empty(),
        "another org does not see a connector's credentials"
    );
    let hashes: Vec<(Uuid, [u8; 32])> = keys
        .iter()
        .map(|k| (k.client_id, hash_secret("intruder")))
        .collect();
    assert_err(
        store
            .rotate_connector(other, c.id, &hashes, t, at(t, 1))
            .await,
        StoreError::NotFound,
        "rotating another org's connector",
    );
    assert_err(
        store.revoke_connector(other, c.id, t).await,
        StoreError::NotFound,
        "revoking another org's connector",
    );
    assert_eq!(
        &stored(store, c.org, c.id).await,
        c,
        "the connector is untouched"
    );
    assert_eq!(
        stored_credentials(store, c.org, c.id).await,
        keys,
        "its credentials are untouched"
    );
}

/// A taken connector id or client id refuses the whole insert.
async fn check_connector_duplicates(
    store: &dyn Store,
    c: &ConnectorRecord,
    keys: &[ConnectorCredential],
) {
    let same_id = ConnectorRecord {
        name: "impostor".into(),
        ..c.clone()
    };
    let fresh_keys = credentials(&same_id, "impostor");
    assert_err(
        store.insert_connector(&same_id, &fresh_keys).await,
        StoreError::AlreadyExists,
        "a connector id already used",
    );
    let same_client = connector(c.org, now());
    let mut clashing = credentials(&same_client, "clash");
    clashing[0].client_id = keys[0].client_id;
    assert_err(
        store.insert_connector(&same_client, &clashing).await,
        StoreError::AlreadyExists,
        "a client id already used",
    );
    assert_eq!(
        &stored(store, c.org, c.id).await,
        c,
        "the first connector stands"
    );
    assert_eq!(stored_credentials(store, c.org, c.id).await, keys);
    for k in fresh_keys.iter().chain(&clashing[1..]) {
        assert_eq!(
            store.credential(k.client_id).await.expect("credential"),
            None,
            "a refused insert writes no credential"
        );
    }
    assert_eq!(
        store
            .connector(c.org, same_client.id)
            .await
            .expect("connector"),
        None,
        "a refused insert writes no connector"
    );
}

/// Rotation moves each current hash to previous with its grace; the old secret works until
/// then, the new one from now on. A client id that is not the connector's refuses it all.
async fn check_rotation(
    store: &dyn Store,
    c: &ConnectorRecord,
    keys: &[ConnectorCredential],
    others: &[ConnectorCredential],
) {
    let t = now();
    let (rotated, grace_until) = (at(t, 10_000), at(t, 3_610_000));
    let foreign = vec![
        (keys[0].client_id, hash_secret("x")),
        (others[0].client_id, hash_secret("y")),
    ];
    assert_err(
        store
            .rotate_connector(c.org, c.id, &foreign, rotated, grace_until)
            .await,
        StoreError::NotFound,
        "rotating with a client id of another connector",
    );
    assert_eq!(
        &stored(store, c.org, c.id).await,
        c,
        "a refused rotation writes nothing"
    );
    assert_eq!(stored_credentials(store, c.org, c.id).await, keys);

    let secret =
        |k: &ConnectorCredential, prefix: &str| format!("{prefix}-{}", k.scope.partition.as_str());
    let hashes: Vec<(Uuid, [u8; 32])> = keys
        .iter()
        .map(|k| (k.client_id, hash_secret(&secret(k, "new"))))
        .collect();
    store
        .rotate_connector(c.org, c.id, &hashes, rotated, grace_until)
        .await
        .expect("rotate_connector");
    assert_eq!(stored(store, c.org, c.id).await.rotated, Some(rotated));
    let now_stored = stored_credentials(store, c.org, c.id).await;
    assert_eq!(
        now_stored.len(),
        keys.len(),
        "rotation keeps the credentials"
    );
    for (new, old) in now_stored.iter().zip(keys) {
        assert_eq!(
            (new.client_id, new.scope, new.connector),
            (old.client_id, old.scope, old.connector)
        );
        assert_eq!(new.secret_hash, hash_secret(&secret(old, "new")));
        assert_eq!(
            new.previous_hash,
            Some(old.secret_hash),
            "the old hash is kept"
        );
        assert_eq!(
            new.previous_until,
            Some(grace_until),
            "until the grace ends"
        );
        assert!(
            new.accepts(&secret(old, "new"), rotated),
            "the new secret works"
        );
        assert!(
            new.accepts(&secret(old, "a"), at(grace_until, -1)),
            "the old one in grace"
        );
        assert!(!new.accepts(&secret(old, "a"), grace_until), "not after it");
        assert!(!new.accepts("a-guess", rotated), "nor any other");
    }
}

/// A revoked connector stays readable, and can't be rotated or revoked again.
async fn check_revoked_connector(store: &dyn Store, c: &ConnectorRecord) {
    let t = at(now(), 20_000);
    store
        .revoke_connector(c.org, c.id, t)
        .await
        .expect("revoke_connector");
    let revoked = stored(store, c.org, c.id).await;
    assert_eq!(revoked.revoked_at, Some(t), "the revocation time is stored");
    let keys = stored_credentials(store, c.org, c.id).await;
    let hashes: Vec<(Uuid, [u8; 32])> = keys
        .iter()
        .map(|k| (k.client_id, hash_secret("later")))
        .collect();
    assert_err(
        store
            .rotate_connector(c.org, c.id, &hashes, at(t, 1), at(t, 2))
            .await,
        StoreError::NotFound,
        "rotating a revoked connector",
    );
    assert_err(
        store.revoke_connector(c.org, c.id, at(t, 1)).await,
        StoreError::NotFound,
        "revoking a connector twice",
    );
    assert_eq!(stored(store, c.org, c.id).await, revoked, "nothing changed");
    assert_eq!(stored_credentials(store, c.org, c.id).await, keys);
    assert_eq!(
        store
            .credential(keys[0].client_id)
            .await
            .expect("credential"),
        Some((keys[0].clone(), revoked)),
        "a revoked connector's credential still reads, with its revocation"
    );
}

/// Tokens of connectors: API keys linked to their connector, not listed with the partition's
/// keys, revoked with the connector, never issued for a revoked or foreign connector.
pub async fn check_connector_tokens(store: &dyn Store) {
    let t = now();
    let c = connector(OrgId::new(), t);
    let d = connector(c.org, t);
    for x in [&c, &d] {
        store
            .insert_connector(x, &credentials(x, "s"))
            .await
            .expect("insert_connector");
    }
    let lab = Scope {
        org: c.org,
        partition: Partition::Lab,
    };
    let production = Scope {
        partition: Partition::Production,
        ..lab
    };
    let plain = key(lab, None, t);
    store.insert_api_key(&plain).await.expect("insert_api_key");
    let seen = at(t, 5);
    let tokens = [
        key(lab, Some(c.id), seen),
        key(production, Some(c.id), seen),
    ];
    for token in &tokens {
        store
            .issue_connector_token(token, c.id, seen)
            .await
            .expect("issue_connector_token");
        assert_eq!(
            store.api_key(token.id).await.expect("api_key").as_ref(),
            Some(token),
            "a token reads back as an API key linked to its connector"
        );
    }
    let d_token = key(lab, Some(d.id), seen);
    store
        .issue_connector_token(&d_token, d.id, seen)
        .await
        .expect("issue_connector_token");
    assert_eq!(
        stored(store, c.org, c.id).await.last_seen,
        Some(seen),
        "last_seen is set"
    );
    for (scope, listed) in [(lab, vec![plain.clone()]), (production, vec![])] {
        assert_eq!(
            store.api_keys(scope).await.expect("api_keys"),
            listed,
            "tokens are not listed with the partition's API keys"
        );
    }
    check_token_refusals(store, &c, lab, seen).await;
    check_revocation_of_tokens(store, &c, &tokens, &[&plain, &d_token]).await;
    check_token_race(store, &d).await;
    check_token_pruning(store, lab, &plain).await;
}

/// Pruning deletes the connector tokens that expired before the cutoff, and nothing else.
async fn check_token_pruning(store: &dyn Store, lab: Scope, plain: &ApiKeyRecord) {
    let t = now();
    let c = connector(lab.org, t);
    store
        .insert_connector(&c, &credentials(&c, "p"))
        .await
        .expect("insert_connector");
    let expired = ApiKeyRecord {
        expires_at: Some(at(t, -2_000)),
        ..key(lab, Some(c.id), at(t, -3_000))
    };
    let live = key(lab, Some(c.id), t);
    for token in [&expired, &live] {
        store
            .issue_connector_token(token, c.id, t)
            .await
            .expect("issue_connector_token");
    }
    let pruned = store
        .prune_connector_tokens(at(t, -1_000))
        .await
        .expect("prune_connector_tokens");
    assert!(pruned >= 1, "the expired token is pruned");
    assert_eq!(store.api_key(expired.id).await.expect("api_key"), None);
    assert!(
        store.api_key(live.id).await.expect("api_key").is_some(),
        "a live token stays"
    );
    assert!(
        store.api_key(plain.id).await.expect("api_key").is_some(),
        "ordinary keys are never pruned"
    );
}

/// Revoking `c` revokes its live `tokens` — the first, revoked on its own before, keeps its
/// time — and none of the `others`; no token is issued to it after.
async fn check_revocation_of_tokens(
    store: &dyn Store,
    c: &ConnectorRecord,
    tokens: &[ApiKeyRecord],
    others: &[&ApiKeyRecord],
) {
    let t = now();
    let seen = stored(store, c.org, c.id).await.last_seen;
    let early = at(t, 7);
    store
        .revoke_api_key(tokens[0].scope, tokens[0].id, early)
        .await
        .expect("revoke_api_key");
    let revoked = at(t, 10);
    store
        .revoke_connector(c.org, c.id, revoked)
        .await
        .expect("revoke_connector");
    let expected = tokens
        .iter()
        .enumerate()
        .map(|(i, k)| (k.id, Some(if i == 0 { early } else { revoked })))
        .chain(others.iter().map(|k| (k.id, k.revoked_at)));
    for (id, expected) in expected {
        let stored_key = store.api_key(id).await.expect("api_key");
        assert_eq!(
            stored_key.and_then(|k| k.revoked_at),
            expected,
            "a connector's revocation revokes its live tokens, and no other key"
        );
    }
    let late = key(tokens[0].scope, Some(c.id), at(t, 20));
    assert_err(
        store.issue_connector_token(&late, c.id, at(t, 20)).await,
        StoreError::NotFound,
        "a token for a revoked connector",
    );
    assert_eq!(
        store.api_key(late.id).await.expect("api_key"),
        None,
        "no key written"
    );
    assert_eq!(
        stored(store, c.org, c.id).await.last_seen,
        seen,
        "nor last_seen"
    );
}

/// No token for a missing connector, nor for another org's.
async fn check_token_refusals(
    store: &dyn Store,
    c: &ConnectorRecord,
    scope: Scope,
    t: DateTime<Utc>,
) {
    let before = stored(store, c.org, c.id).await;
    let foreign = key(
        Scope {
            org: OrgId::new(),
            ..scope
        },
        Some(c.id),
        t,
    );
    let nobody = Uuid::now_v7();
    let missing = key(scope, Some(nobody), t);
    for (token, connector, what) in [
        (&foreign, c.id, "a token of another org for a connector"),
        (&missing, nobody, "a token for a missing connector"),
    ] {
        assert_err(
            store
                .issue_connector_token(token, connector, at(t, 1))
                .await,
            StoreError::NotFound,
            what,
        );
        assert_eq!(
            store.api_key(token.id).await.expect("api_key"),
            None,
            "{what}: no key"
        );
    }
    assert_eq!(
        stored(store, c.org, c.id).await,
        before,
        "the connector is untouched"
    );
}

/// Tokens issued while the connector is revoked: each is either refused or revoked.
async fn check_token_race(store: &dyn Store, c: &ConnectorRecord) {
    let scope = Scope {
        org: c.org,
        partition: Partition::Production,
    };
    let t = at(now(), 100);
    let tokens: Vec<ApiKeyRecord> = (0..16).map(|_| key(scope, Some(c.id), t)).collect();
    let issues = join_all(
        tokens
            .iter()
            .map(|k| store.issue_connector_token(k, c.id, t))
            .collect(),
    );
    let (issued, revoked) = tokio::join!(issues, async {
        tokio::task::yield_now().await;
        store.revoke_connector(c.org, c.id, t).await
    });
    revoked.expect("revoke_connector");
    for (token, result) in tokens.iter().zip(issued) {
        let stored_key = store.api_key(token.id).await.expect("api_key");
        match result {
            Ok(()) => assert_eq!(
                stored_key.and_then(|k| k.revoked_at),
                Some(t),
                "a token issued before the revocation is revoked with the connector"
            ),
            Err(StoreError::NotFound) => assert_eq!(stored_key, None, "a refused token"),
            Err(e) => panic!("issue_connector_token during a revocation: {e}"),
        }
    }
}
