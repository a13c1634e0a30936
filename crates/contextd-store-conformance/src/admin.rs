//! Orgs, API keys, the dictionary, flush jobs, token usage.

use std::collections::BTreeMap;

use contextd_core::auth::Role;
use contextd_core::dictionary::{Classification, DataType, EnumValue, Field, FieldSet};
use contextd_core::ids::{OrgId, Partition, Scope};
use contextd_core::object::Kind;
use contextd_core::store::{ApiKeyRecord, FlushJob, OrgRecord, Store, StoreError};
use uuid::Uuid;

use crate::fixtures::*;

/// Orgs: unique names, lookup by name, count.
pub async fn check_orgs(store: &dyn Store) {
    let before = store.count_orgs().await.expect("count_orgs");
    let org = OrgRecord {
        id: OrgId::new(),
        name: format!("Acme Motorcycles {}", Uuid::new_v4()),
        created: now(),
    };
    store.create_org(&org).await.expect("create_org");
    assert_eq!(
        store.org_by_name(&org.name).await.expect("org_by_name"),
        Some(org.clone()),
        "an org reads back by name"
    );
    let taken = OrgRecord {
        id: OrgId::new(),
        ..org.clone()
    };
    assert_err(
        store.create_org(&taken).await,
        StoreError::AlreadyExists,
        "an org name already taken",
    );
    assert_eq!(
        store.org_by_name(&org.name).await.expect("org_by_name"),
        Some(org.clone()),
        "the first org keeps its name"
    );
    assert_eq!(
        store
            .org_by_name(&format!("{} ", org.name))
            .await
            .expect("org_by_name"),
        None,
        "names match exactly"
    );
    assert_eq!(
        store
            .org_by_name(&Uuid::new_v4().to_string())
            .await
            .expect("org_by_name"),
        None
    );
    let second = OrgRecord {
        id: OrgId::new(),
        name: format!("Other {}", Uuid::new_v4()),
        created: at(now(), 1),
    };
    store.create_org(&second).await.expect("create_org");
    // Other checks may create orgs concurrently in a shared database, hence `>=`.
    let after = store.count_orgs().await.expect("count_orgs");
    assert!(
        after >= before + 2,
        "count_orgs counts new orgs ({before} then {after})"
    );
    let listed = store.orgs().await.expect("orgs");
    assert!(
        listed.len() as u64 >= after,
        "orgs lists every org ({} listed, {after} counted)",
        listed.len()
    );
    let ours: Vec<&OrgRecord> = listed
        .iter()
        .filter(|o| o.id == org.id || o.id == second.id)
        .collect();
    assert_eq!(
        ours,
        [&org, &second],
        "orgs lists each org once, as stored, by name"
    );
    assert!(
        listed.windows(2).all(|w| w[0].name <= w[1].name),
        "orgs are listed by name"
    );
}

/// API keys: stored as given, read back by id from any org, ids unique.
pub async fn check_api_keys(store: &dyn Store) {
    let org = OrgRecord {
        id: OrgId::new(),
        name: format!("keys {}", Uuid::new_v4()),
        created: now(),
    };
    store.create_org(&org).await.expect("create_org");
    let t = now();
    let plain = ApiKeyRecord {
        id: Uuid::new_v4(),
        scope: Scope {
            org: org.id,
            partition: Partition::Lab,
        },
        name: "IVR connector".into(),
        role: Role::Machine,
        secret_hash: [7; 32],
        created: t,
        expires_at: None,
        revoked_at: None,
        connector: None,
    };
    let full = ApiKeyRecord {
        id: Uuid::new_v4(),
        scope: Scope {
            org: org.id,
            partition: Partition::Production,
        },
        name: "Ägent déšk".into(),
        role: Role::Partner,
        secret_hash: std::array::from_fn(|i| i as u8),
        created: at(t, 1),
        expires_at: Some(at(t, 86_400_000)),
        revoked_at: Some(at(t, 3_600_000)),
        connector: None,
    };
    for key in [&plain, &full] {
        store.insert_api_key(key).await.expect("insert_api_key");
        assert_eq!(
            store.api_key(key.id).await.expect("api_key").as_ref(),
            Some(key),
            "an API key reads back unchanged"
        );
    }
    let clash = ApiKeyRecord {
        role: Role::Admin,
        secret_hash: [9; 32],
        ..plain.clone()
    };
    assert_err(
        store.insert_api_key(&clash).await,
        StoreError::AlreadyExists,
        "an API key id already used",
    );
    assert_eq!(
        store.api_key(plain.id).await.expect("api_key"),
        Some(plain),
        "the first key stands"
    );
    assert_eq!(
        store.api_key(Uuid::new_v4()).await.expect("api_key"),
        None,
        "an unknown key id"
    );
}

fn field(id: &str, description: &str) -> Field {
    Field {
        id: id.to_owned(),
        description: description.to_owned(),
        data_type: DataType::String,
        classification: Classification::Pii,
        searchable: true,
        max_length: Some(40),
        enum_values: None,
        translations: BTreeMap::from([("en_US".to_owned(), "Label".to_owned())]),
        base: false,
        last_updated: None,
    }
}

fn fieldset(id: &str, fields: &[&str]) -> FieldSet {
    FieldSet {
        id: id.to_owned(),
        description: "A set".into(),
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        inactive_fields: Vec::new(),
        base: false,
        last_updated: None,
    }
}

/// Fields and field sets: per org, create vs replace, sorted by id, delete.
pub async fn check_dictionary(store: &dyn Store) {
    let org = OrgId::new();
    let other = OrgId::new();
    assert!(
        store.fields(org).await.expect("fields").is_empty(),
        "a new org has no custom fields"
    );
    assert!(
        store.fieldsets(org).await.expect("fieldsets").is_empty(),
        "a new org has no custom field sets"
    );

    // Sorted by id as bytes ("B" < "a"), the order of Rust's String.
    let (b, upper, a) = (
        field("b_field", "b"),
        field("B_upper", "B"),
        field("a_field", "a"),
    );
    for f in [&b, &upper, &a] {
        store
            .put_field(org, f, true, &[])
            .await
            .expect("put_field create");
    }
    assert_eq!(
        store.fields(org).await.expect("fields"),
        vec![upper.clone(), a.clone(), b.clone()],
        "fields sorted by id"
    );
    assert_err(
        store
            .put_field(org, &field("a_field", "clash"), true, &[])
            .await,
        StoreError::AlreadyExists,
        "creating an existing field",
    );
    assert_err(
        store
            .put_field(org, &field("missing", "x"), false, &[])
            .await,
        StoreError::NotFound,
        "replacing an absent field",
    );
    let mut replaced = a.clone();
    replaced.description = "replaced".into();
    replaced.data_type = DataType::String;
    replaced.classification = Classification::Unencrypted;
    replaced.max_length = None;
    replaced.enum_values = Some(vec![
        EnumValue {
            value: "gold".into(),
            active: true,
        },
        EnumValue {
            value: "tin".into(),
            active: false,
        },
    ]);
    replaced
        .translations
        .insert("fr_FR".into(), "Étiquette".into());
    store
        .put_field(org, &replaced, false, &[])
        .await
        .expect("put_field replace");
    assert_eq!(
        store.fields(org).await.expect("fields"),
        vec![upper.clone(), replaced.clone(), b.clone()],
        "a replaced field reads back"
    );
    assert!(
        store.fields(other).await.expect("fields").is_empty(),
        "fields belong to one org"
    );
    store
        .put_field(other, &field("a_field", "theirs"), true, &[])
        .await
        .expect("the same id in another org");
    assert_eq!(
        store.fields(org).await.expect("fields")[1],
        replaced,
        "another org's field of the same id is separate"
    );

    let (s2, s1) = (
        fieldset("set.two", &["b_field"]),
        fieldset("Set.one", &["a_field", "B_upper"]),
    );
    store
        .put_fieldset(org, &s2, true, &[])
        .await
        .expect("put_fieldset");
    store
        .put_fieldset(org, &s1, true, &[])
        .await
        .expect("put_fieldset");
    // A field set may share an id with a field: separate namespaces.
    let same_id = fieldset("a_field", &["a_field"]);
    store
        .put_fieldset(org, &same_id, true, &[])
        .await
        .expect("put_fieldset");
    assert_eq!(
        store.fieldsets(org).await.expect("fieldsets"),
        vec![s1.clone(), same_id.clone(), s2.clone()]
    );
    assert_err(
        store.put_fieldset(org, &s1, true, &[]).await,
        StoreError::AlreadyExists,
        "creating an existing field set",
    );
    assert_err(
        store
            .put_fieldset(org, &fieldset("nope", &[]), false, &[])
            .await,
        StoreError::NotFound,
        "replacing an absent field set",
    );
    let mut s1b = s1.clone();
    s1b.inactive_fields = vec!["B_upper".into()];
    s1b.description = "changed".into();
    store
        .put_fieldset(org, &s1b, false, &[])
        .await
        .expect("put_fieldset replace");
    assert!(
        store.fieldsets(other).await.expect("fieldsets").is_empty(),
        "field sets belong to one org"
    );

    store
        .delete_field(org, "a_field", &[])
        .await
        .expect("delete_field");
    assert_eq!(store.fields(org).await.expect("fields"), vec![upper, b]);
    assert_err(
        store.delete_field(org, "a_field", &[]).await,
        StoreError::NotFound,
        "deleting an absent field",
    );
    assert_eq!(
        store.fields(other).await.expect("fields").len(),
        1,
        "deleting leaves other orgs alone"
    );
    assert_eq!(
        store.fieldsets(org).await.expect("fieldsets"),
        vec![s1b, same_id, s2.clone()],
        "deleting a field leaves field sets alone"
    );
    store
        .delete_fieldset(org, "Set.one", &[])
        .await
        .expect("delete_fieldset");
    store
        .delete_fieldset(org, "a_field", &[])
        .await
        .expect("delete_fieldset");
    assert_eq!(store.fieldsets(org).await.expect("fieldsets"), vec![s2]);
    assert_err(
        store.delete_fieldset(org, "Set.one", &[]).await,
        StoreError::NotFound,
        "deleting an absent field set",
    );
}

/// Flush jobs: upsert, read in scope.
pub async fn check_flush_jobs(store: &dyn Store) {
    let s = lab();
    let mut job = FlushJob {
        id: Uuid::new_v4(),
        scope: s,
        kind: Kind::Activity,
        completed: false,
        flushed: 0,
        message: "flushing".into(),
        created: now(),
    };
    store.put_flush_job(&job).await.expect("put_flush_job");
    assert_eq!(
        store.flush_job(s, job.id).await.expect("flush_job"),
        Some(job.clone()),
        "a flush job reads back"
    );
    job.completed = true;
    job.flushed = 4_000_000_000;
    job.message = "flushed 4000000000 activities".into();
    store
        .put_flush_job(&job)
        .await
        .expect("put_flush_job replace");
    assert_eq!(
        store.flush_job(s, job.id).await.expect("flush_job"),
        Some(job.clone()),
        "put_flush_job replaces"
    );
    assert_eq!(
        store.flush_job(s, Uuid::new_v4()).await.expect("flush_job"),
        None,
        "an unknown job"
    );
    assert_eq!(
        store
            .flush_job(other_partition(s), job.id)
            .await
            .expect("flush_job"),
        None,
        "jobs belong to one partition"
    );
    assert_eq!(
        store.flush_job(lab(), job.id).await.expect("flush_job"),
        None,
        "jobs belong to one org"
    );
}

/// `any_token_in_use`: either partition of the org, no other org.
pub async fn check_any_token_in_use(store: &dyn Store) {
    let s = lab();
    let (in_lab, in_prod, elsewhere) = (token(), token(), token());
    insert(store, &object(s, Kind::Customer, now()), &[in_lab]).await;
    insert(
        store,
        &object(other_partition(s), Kind::Activity, now()),
        &[in_prod],
    )
    .await;
    insert(store, &object(lab(), Kind::Customer, now()), &[elsewhere]).await;
    let used = |tokens: Vec<_>| async move {
        store
            .any_token_in_use(s.org, &tokens)
            .await
            .expect("any_token_in_use")
    };
    assert!(used(vec![in_lab]).await, "a token of the lab partition");
    assert!(
        used(vec![in_prod]).await,
        "a token of the production partition"
    );
    assert!(used(vec![token(), in_prod]).await, "any of several tokens");
    assert!(
        !used(vec![elsewhere]).await,
        "another org's token is not in use here"
    );
    assert!(!used(vec![token(), token()]).await, "unknown tokens");
    assert!(!used(vec![]).await, "no tokens");
}

/// Every dictionary change bumps the org's dictionary version; an object write validated
/// against an older version is refused; a change that needs an entry unused is refused, and
/// changes nothing, while any object carries one of its tokens.
pub async fn check_dictionary_versions(store: &dyn Store) {
    let s = lab();
    let org = s.org;
    let version = || async { store.dictionary_version(org).await.expect("version") };
    assert_eq!(version().await, 0, "a new org's dictionary is at version 0");
    store
        .put_field(org, &field("v_field", "one"), true, &[])
        .await
        .expect("create");
    let v1 = version().await;
    assert!(v1 > 0, "a change bumps the version");
    assert_eq!(
        store.dictionary_version(OrgId::new()).await.expect("other"),
        0,
        "per org"
    );

    let tok = token();
    let mut o = object(s, Kind::Customer, now());
    let stale = contextd_core::store::ObjectWrite {
        dictionary_version: Some(v1 - 1),
        ..insert_write(&o, &[tok])
    };
    assert_err(
        store.write_object(&stale).await,
        StoreError::DictionaryChanged,
        "a write validated against an older dictionary",
    );
    assert_eq!(
        store.object(s, o.id).await.expect("read"),
        None,
        "nothing written"
    );
    let current = contextd_core::store::ObjectWrite {
        dictionary_version: Some(v1),
        ..insert_write(&o, &[tok])
    };
    store
        .write_object(&current)
        .await
        .expect("a write at the current version");
    o.version = 2;
    let stale_update = contextd_core::store::ObjectWrite {
        dictionary_version: Some(v1 + 1),
        ..update_write(&o, &[tok], 1)
    };
    assert_err(
        store.write_object(&stale_update).await,
        StoreError::DictionaryChanged,
        "an update validated against another dictionary version",
    );

    // A change that needs the field unused, while an object carries its token.
    let sealed = Field {
        classification: Classification::Pii,
        ..field("v_field", "sealed")
    };
    assert_err(
        store.put_field(org, &sealed, false, &[tok]).await,
        StoreError::InUse,
        "reclassifying a field in use",
    );
    assert_err(
        store.delete_field(org, "v_field", &[tok]).await,
        StoreError::InUse,
        "deleting a field in use",
    );
    assert_eq!(version().await, v1, "a refused change bumps nothing");
    assert_eq!(
        store.fields(org).await.expect("fields"),
        vec![field("v_field", "one")]
    );
    store
        .put_field(org, &sealed, false, &[token()])
        .await
        .expect("unused elsewhere: allowed");
    assert!(version().await > v1);
    store
        .put_fieldset(org, &fieldset("v_set", &["v_field"]), true, &[])
        .await
        .expect("set");
    let before = version().await;
    store
        .delete_fieldset(org, "v_set", &[token()])
        .await
        .expect("delete set");
    assert!(version().await > before, "field set changes bump it too");
}

/// An organization's settings read back as written, replaced in place, apart per
/// organization and per name, and listed by name across organizations.
pub async fn check_org_settings(store: &dyn Store) {
    let (a, b) = (OrgId::new(), OrgId::new());
    // A name of this run only: the databases are shared by every check.
    let name = format!("check-{}", Uuid::new_v4());
    let other = format!("{name}-other");
    assert_eq!(
        store.org_setting(a, &name).await.expect("org_setting"),
        None,
        "a setting never written is absent"
    );
    store
        .put_org_setting(a, &name, r#"{"v":1}"#, now())
        .await
        .expect("put_org_setting");
    store
        .put_org_setting(a, &name, r#"{"v":2}"#, now())
        .await
        .expect("put_org_setting replaces");
    store
        .put_org_setting(b, &name, r#"{"v":"b"}"#, now())
        .await
        .expect("put_org_setting");
    store
        .put_org_setting(a, &other, "[]", now())
        .await
        .expect("put_org_setting");
    assert_eq!(
        store
            .org_setting(a, &name)
            .await
            .expect("org_setting")
            .as_deref(),
        Some(r#"{"v":2}"#),
        "the last value written is read back"
    );
    assert_eq!(
        store
            .org_setting(b, &name)
            .await
            .expect("org_setting")
            .as_deref(),
        Some(r#"{"v":"b"}"#),
        "each organization keeps its own value"
    );
    let mut all = store
        .org_settings_named(&name)
        .await
        .expect("org_settings_named");
    all.sort();
    let mut expected = vec![(a, r#"{"v":2}"#.to_owned()), (b, r#"{"v":"b"}"#.to_owned())];
    expected.sort();
    assert_eq!(
        all, expected,
        "one value per organization, of that name only"
    );
}
