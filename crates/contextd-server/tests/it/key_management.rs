//! Key management hardening (issue 9, items 9 and 10): keys are made only with their org and
//! checked at start; key operations of one partition are serialized; re-encryption goes on
//! past a partition that fails and says so in `/v1/status`; the status names the key store's
//! own backend.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use contextd_client::{Client, Settings};
use contextd_core::auth::{Principal, PrincipalKind, Role};
use contextd_core::crypto::{Keyring, MasterKey};
use contextd_core::memory_keys::MemoryKeyStore;
use contextd_core::search::SearchRequest;
use contextd_core::service::{Context, ContextConfig, ObjectInput};
use contextd_core::store::KeyStore;
use contextd_core::{CoreError, OrgId, Partition, Scope};
use contextd_proto::{Kind, ObjectId};
use contextd_server::ServerConfig;
use contextd_store_sqlite::{SqliteKeyStore, SqliteStore};
use serde_json::json;

use crate::support::{encryption, input, TestServer};

/// A context on the data of `data_dir` and the key store of `keys_dir` (another process).
fn context_on(
    data_dir: &Path,
    keys_dir: &Path,
    master: &MasterKey,
    org_keks: Vec<(OrgId, MasterKey)>,
) -> (Context, Arc<SqliteKeyStore>) {
    let store = SqliteStore::open(&data_dir.join("contextd.db")).expect("open data");
    let keys = Arc::new(SqliteKeyStore::open(&keys_dir.join("keys.db")).expect("open keys"));
    let keyring = Keyring::new(master.clone(), keys.clone(), 100).with_org_keks(org_keks);
    (
        Context::new(Arc::new(store), keyring, ContextConfig::default()),
        keys,
    )
}

fn lab_admin(org: OrgId) -> Principal {
    Principal {
        id: uuid::Uuid::now_v7(),
        scope: Scope {
            org,
            partition: Partition::Lab,
        },
        role: Role::Admin,
        kind: PrincipalKind::ApiKey,
        granted: false,
    }
}

#[track_caller]
fn expect_key_error<T: std::fmt::Debug>(result: Result<T, CoreError>, needles: &[&str]) {
    match result {
        Err(CoreError::Keys(msg)) => {
            for needle in needles {
                assert!(msg.contains(needle), "'{needle}' missing from: {msg}");
            }
        }
        other => panic!("expected a key error, got {other:?}"),
    }
}

#[tokio::test]
async fn without_its_keys_an_org_fails_the_start_up_check_and_no_keys_are_made() {
    let s = TestServer::start().await;
    let id = s
        .client(s.lab())
        .create(
            Kind::Customer,
            &input(json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Kept"}})),
        )
        .await
        .expect("customer")
        .id;
    let second = s
        .context
        .create_org("second", &s.url)
        .await
        .expect("second org");
    let (ok, _) = context_on(s.dir.path(), s.dir.path(), &s.master, vec![]);
    let check = ok.verify_keys().await.expect("the right key store passes");
    assert_eq!(check.organizations, 2);
    assert!(check.without_org_kek.is_empty());

    // The same data with the key store of another data directory.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let (wrong, keys) = context_on(s.dir.path(), elsewhere.path(), &s.master, vec![]);
    let default = s.org.org_id.to_string();
    expect_key_error(
        wrong.verify_keys().await,
        &[
            &format!("the key store has no keys for organization 'default' ({default})"),
            &format!("organization 'second' ({})", second.org_id),
            "wrong --data-dir, or a key store of another deployment?",
        ],
    );

    // Reads and writes fail clearly, and make no keys.
    let admin = lab_admin(s.org.org_id);
    let missing = [default.as_str(), "lab", "wrong --data-dir"];
    expect_key_error(wrong.get(&admin, Kind::Customer, id).await, &missing);
    let input: ObjectInput = serde_json::from_value(
        json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "New"}}),
    )
    .expect("input");
    expect_key_error(wrong.create(&admin, Kind::Customer, input).await, &missing);
    let request: SearchRequest =
        serde_json::from_value(json!({"terms": {"Context_First_Name": ["kept"]}})).expect("q");
    expect_key_error(
        wrong.search(&admin, Kind::Customer, &request).await,
        &missing,
    );
    expect_key_error(wrong.rotate_data_key(&admin).await, &missing);
    assert_eq!(
        keys.scopes().await.expect("scopes"),
        vec![],
        "the key store is unchanged: no keys were made for the org"
    );
    // The right key store still opens everything.
    let c = ok
        .get(&admin, Kind::Customer, id)
        .await
        .expect("readable with its own keys");
    assert_eq!(c.data["Context_First_Name"], "Kept");
}

#[tokio::test]
async fn a_wrong_master_key_or_org_key_fails_the_start_up_check_an_unloaded_org_key_does_not() {
    let s = TestServer::start().await;
    let dir = s.dir.path();
    let (wrong, _) = context_on(dir, dir, &MasterKey::generate(), vec![]);
    expect_key_error(
        wrong.verify_keys().await,
        &[
            &format!("organization 'default' ({})", s.org.org_id),
            "wrong master key (CONTEXTD_MASTER_KEY / master.key)?",
        ],
    );

    let org_kek = MasterKey::generate();
    let (cli, _) = context_on(dir, dir, &s.master, vec![]);
    cli.keyring()
        .adopt_org_kek(s.org.org_id, &org_kek)
        .await
        .expect("adopt");
    let (unloaded, _) = context_on(dir, dir, &s.master, vec![]);
    let check = unloaded
        .verify_keys()
        .await
        .expect("an org whose own key is not loaded does not stop the start");
    assert_eq!(
        check
            .without_org_kek
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["default"]
    );
    let (wrong_org_key, _) = context_on(
        dir,
        dir,
        &s.master,
        vec![(s.org.org_id, MasterKey::generate())],
    );
    expect_key_error(
        wrong_org_key.verify_keys().await,
        &["organization 'default'", "--org-kek", "wrong key file?"],
    );
    let (loaded, _) = context_on(dir, dir, &s.master, vec![(s.org.org_id, org_kek)]);
    let check = loaded.verify_keys().await.expect("the org's key opens it");
    assert!(check.without_org_kek.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reencryption_goes_on_past_an_org_whose_own_kek_is_not_loaded() {
    let s = TestServer::start().await;
    let other = s
        .context
        .create_org("other", &s.url)
        .await
        .expect("other org");
    let t = s.client(&other.lab_admin_token);
    let mut loose: Vec<ObjectId> = Vec::new();
    for i in 0..5 {
        let note = json!({"mediaType": "web", "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": format!("note {i}")}});
        let a = t.create(Kind::Activity, &input(note)).await;
        loose.push(a.expect("activity").id);
    }
    // The default org (first in the key store's order) brings its own key, which this
    // server does not have.
    let (cli, _) = context_on(s.dir.path(), s.dir.path(), &s.master, vec![]);
    cli.keyring()
        .adopt_org_kek(s.org.org_id, &MasterKey::generate())
        .await
        .expect("adopt");
    drop(cli);

    t.rotate_data_key().await.expect("rotate");
    let mut done = None;
    for _ in 0..200 {
        let st = encryption(&t).await;
        if st.state == "idle" {
            done = Some(st);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let done = done.expect("the other org's rotation is fully re-encrypted");
    assert_eq!(done.data_key_version, 2);
    assert_eq!(done.pending_objects, 0);
    let scope = lab_admin(other.org_id).scope;
    for id in &loose {
        let o = s
            .context
            .store()
            .object(scope, *id)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(o.key_version, 2, "re-sealed under version 2");
    }

    let byok = encryption(&s.client(s.lab())).await;
    assert_eq!(byok.state, "failing", "{byok:?}");
    assert!(
        byok.error
            .as_deref()
            .is_some_and(|e| e.contains("own key-encryption key, which is not loaded")),
        "{byok:?}"
    );
    assert_eq!(byok.data_key_version, 1);
    assert!(
        done.error.is_none(),
        "a partition that works reports no error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_of_one_partition_all_succeed_with_distinct_versions() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    let rotations = (0..8).map(|_| c.rotate_data_key());
    for r in futures::future::join_all(rotations).await {
        r.expect("rotate");
    }
    let scope = lab_admin(s.org.org_id).scope;
    let versions: BTreeSet<u32> = s
        .context
        .keyring()
        .store()
        .data_keys(scope)
        .await
        .expect("data keys")
        .iter()
        .map(|k| k.version)
        .collect();
    assert_eq!(
        versions,
        (1..=9).collect(),
        "eight rotations, eight versions"
    );
    assert_eq!(encryption(&c).await.data_key_version, 9);
}

#[tokio::test]
async fn status_names_the_key_stores_own_backend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("contextd.db")).expect("open data");
    let keys: Arc<dyn KeyStore> = Arc::new(MemoryKeyStore::default());
    let keyring = Keyring::new(MasterKey::generate(), keys, 100);
    let context = Arc::new(Context::new(
        Arc::new(store),
        keyring,
        ContextConfig::default(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let org = context.create_org("default", &url).await.expect("org");
    let server = tokio::spawn(contextd_server::serve(
        listener,
        context,
        ServerConfig::default(),
        std::future::pending(),
    ));
    let client = Client::new(&url, &org.lab_admin_token, Settings::standard()).expect("client");
    let status = client.status().await;
    server.abort();
    let status = status.expect("status");
    let backend = |name: &str| {
        status
            .dependencies
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.backend.as_str())
    };
    assert_eq!(backend("storage"), Some("sqlite"));
    assert_eq!(backend("keyStore"), Some("memory"), "{status:?}");
}
