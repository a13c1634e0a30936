//! Key management: data-key rotation with background re-encryption (surviving a restart),
//! and an organization's own key-encryption key.

use std::sync::Arc;

use contextd_client::Search;
use contextd_core::auth::Principal;
use contextd_core::crypto::{Keyring, MasterKey};
use contextd_core::service::{Context, ContextConfig};
use contextd_core::CoreError;
use contextd_proto::Kind;
use contextd_store_sqlite::{SqliteKeyStore, SqliteStore};
use serde_json::json;

use crate::support::{encryption, input, new_customer, TestServer};

fn context_on(
    dir: &std::path::Path,
    master: &MasterKey,
    org_keks: Vec<(contextd_core::OrgId, MasterKey)>,
) -> (Context, Arc<SqliteStore>) {
    let store = Arc::new(SqliteStore::open(&dir.join("contextd.db")).expect("open data"));
    let keys = SqliteKeyStore::open(&dir.join("keys.db")).expect("open keys");
    let keyring = Keyring::new(master.clone(), Arc::new(keys), 100).with_org_keks(org_keks);
    (
        Context::new(store.clone(), keyring, ContextConfig::default()),
        store,
    )
}

fn admin(s: &TestServer) -> Principal {
    s.lab_admin()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reencrypts_in_the_background_and_resumes_after_a_restart() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    let customer = new_customer(
        &c,
        json!({"Context_First_Name": "Rota", "Context_Mobile_Phone": "5550009999"}),
    )
    .await;
    let note = |text: String| {
        input(
            json!({"mediaType": "web", "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": text}}),
        )
    };
    let mut loose = Vec::new();
    for i in 0..5 {
        let a = c.create(Kind::Activity, &note(format!("note {i}"))).await;
        loose.push(a.expect("activity").id);
    }
    assert_eq!(encryption(&c).await.data_key_version, 1);

    s.client(s.prod())
        .rotate_data_key()
        .await
        .expect("production rotates too");
    let rotated = c.rotate_data_key().await.expect("rotate");
    assert_eq!(rotated.data_key_version, 2);

    // Reads keep working whatever the job has done so far; new writes use version 2.
    let read = c.get(Kind::Customer, customer).await.expect("customer");
    assert_eq!(read.data["Context_First_Name"], "Rota");
    let read = c.get(Kind::Activity, loose[0]).await.expect("activity");
    assert_eq!(read.data["Context_Notes"], "note 0");
    let fresh = c.create(Kind::Activity, &note("fresh".into())).await;
    let scope = admin(&s).scope;
    let stored = s
        .context
        .store()
        .object(scope, fresh.expect("fresh").id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        stored.key_version, 2,
        "new writes seal under the new version"
    );

    // The background job finishes; progress reaches zero in /v1/status.
    let mut pending = u64::MAX;
    for _ in 0..100 {
        let st = encryption(&c).await;
        pending = st.pending_objects + st.pending_customer_keys;
        if pending == 0 {
            assert_eq!(st.state, "idle");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(pending, 0, "re-encryption completes");
    for id in &loose {
        let o = s
            .context
            .store()
            .object(scope, *id)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(o.key_version, 2, "old values re-sealed under version 2");
        assert_eq!(o.version, 1, "re-encryption is not a client write");
    }
    let read = c.get(Kind::Customer, customer).await.expect("customer");
    assert_eq!(read.data["Context_Mobile_Phone"], "5550009999");
    let by_phone = c
        .search(
            Kind::Customer,
            &Search::all()
                .term("Context_Mobile_Phone", "555-000-9999")
                .build(),
        )
        .await
        .expect("search");
    assert_eq!(by_phone.total, 1, "blind indexes survive rotation");

    // Interrupted rotation: rotate again, re-encrypt a single item, "restart" on the same files.
    let (first, _) = context_on(s.dir.path(), &s.master, vec![]);
    let a = admin(&s);
    first.rotate_data_key(&a).await.expect("rotate to 3");
    first.reencrypt_batch(scope, 1).await.expect("one batch");
    drop(first);
    let (restarted, _) = context_on(s.dir.path(), &s.master, vec![]);
    let mid = restarted.encryption_status(scope).await.expect("status");
    assert_eq!(mid.data_key_version, 3);
    assert!(
        mid.pending_objects + mid.pending_customer_keys > 0,
        "work is left after the interruption"
    );
    for id in &loose {
        let o = restarted
            .get(&a, Kind::Activity, *id)
            .await
            .expect("readable mid-rotation");
        assert!(o.data["Context_Notes"]
            .as_str()
            .is_some_and(|n| n.starts_with("note")));
    }
    restarted.reencrypt_all(2).await.expect("resume");
    let done = restarted.encryption_status(scope).await.expect("status");
    assert_eq!(
        (done.pending_objects, done.pending_customer_keys, done.state),
        (0, 0, "idle".to_owned())
    );
    let c = restarted
        .get(&a, Kind::Customer, customer)
        .await
        .expect("customer");
    assert_eq!(c.data["Context_First_Name"], "Rota");
}

#[tokio::test]
async fn an_org_with_its_own_kek_is_unreadable_with_the_master_key_alone() {
    let s = TestServer::start().await;
    let id = new_customer(&s.client(s.lab()), json!({"Context_First_Name": "Byok"})).await;
    let a = admin(&s);
    let org_kek = MasterKey::generate();

    let (operator, _) = context_on(s.dir.path(), &s.master, vec![]);
    operator
        .keyring()
        .adopt_org_kek(s.org.org_id, &org_kek)
        .await
        .expect("adopt");
    drop(operator);

    let (master_only, _) = context_on(s.dir.path(), &s.master, vec![]);
    match master_only.get(&a, Kind::Customer, id).await {
        Err(CoreError::Keys(msg)) => assert!(msg.contains("own key-encryption key"), "{msg}"),
        other => panic!("the operator's key alone must not open the org's data: {other:?}"),
    }
    let (wrong, _) = context_on(
        s.dir.path(),
        &s.master,
        vec![(s.org.org_id, MasterKey::generate())],
    );
    assert!(
        matches!(
            wrong.get(&a, Kind::Customer, id).await,
            Err(CoreError::Keys(_))
        ),
        "a wrong org key opens nothing"
    );

    let (with_org_key, _) = context_on(
        s.dir.path(),
        &s.master,
        vec![(s.org.org_id, org_kek.clone())],
    );
    let c = with_org_key
        .get(&a, Kind::Customer, id)
        .await
        .expect("readable with the org's key");
    assert_eq!(c.data["Context_First_Name"], "Byok");
    // Rotation keeps using the org's key.
    with_org_key.rotate_data_key(&a).await.expect("rotate");
    let (master_only, _) = context_on(s.dir.path(), &s.master, vec![]);
    assert!(master_only.get(&a, Kind::Customer, id).await.is_err());
}
