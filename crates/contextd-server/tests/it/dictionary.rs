//! The dictionary over HTTP (README, "API overview"): fields and field sets, the read-only base sets,
//! the in-use rules, and admin-only writes, driven through the SDK.

use std::fmt::Debug;

use contextd_client::{Client, Error};
use contextd_core::auth::Role;
use contextd_core::{Partition, Scope};
use contextd_proto::dictionary::{Classification, DataType, EnumValue, Field, FieldSet};
use contextd_proto::{ErrorCode, Kind};
use serde_json::json;

use crate::support::{forbidden, input, invalid, not_found, TestServer};

/// A custom field with nothing but its id, type and class.
fn field(id: &str, data_type: DataType, classification: Classification) -> Field {
    Field::new(id, data_type, classification)
}

fn string_field(id: &str) -> Field {
    Field {
        description: "a custom field".into(),
        searchable: true,
        ..field(id, DataType::String, Classification::Unencrypted)
    }
}

fn set(id: &str, fields: &[&str]) -> FieldSet {
    FieldSet {
        id: id.to_owned(),
        description: String::new(),
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        inactive_fields: Vec::new(),
        base: false,
        last_updated: None,
    }
}

fn has<T>(items: &[T], id: &str, key: impl Fn(&T) -> &str) -> bool {
    items.iter().any(|i| key(i) == id)
}

#[track_caller]
fn conflict<T: Debug>(r: Result<T, Error>, want: ErrorCode) {
    assert!(
        matches!(&r, Err(Error::Conflict { code, .. }) if *code == want),
        "{want:?}: {r:?}"
    );
}

async fn customer(c: &Client, body: serde_json::Value) -> contextd_proto::ObjectId {
    c.create(Kind::Customer, &input(body))
        .await
        .expect("customer")
        .id
}

async fn agent_token(s: &TestServer) -> String {
    let scope = Scope {
        org: s.org.org_id,
        partition: Partition::Lab,
    };
    let (_, token) = s
        .context
        .create_api_key(scope, "agent", Role::Agent, None)
        .await
        .expect("agent key");
    token
}

#[tokio::test]
async fn lists_include_base_sets_with_original_names() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    let sets = c.fieldsets().await.expect("field sets");
    for base in [
        "cisco.base.customer",
        "cisco.base.request",
        "cisco.base.pod",
        "cisco.base.comment",
        "cisco.base.rating",
    ] {
        assert!(has(&sets, base, |s| &s.id), "{base} is listed: {sets:?}");
    }
    let customer = sets.iter().find(|s| s.id == "cisco.base.customer").unwrap();
    for f in [
        "Context_First_Name",
        "Context_Last_Name",
        "Context_Work_Email",
        "Context_Home_Email",
        "Context_Work_Phone",
        "Context_Mobile_Phone",
        "Context_Home_Phone",
        "Context_Street_Address_1",
        "Context_City",
        "Context_State",
        "Context_Country",
        "Context_ZIP",
        "Context_Customer_External_ID",
        "Context_Preferred_Language",
    ] {
        assert!(
            customer.fields.iter().any(|x| x == f),
            "cisco.base.customer has {f}: {:?}",
            customer.fields
        );
    }

    let all = c.fields().await.expect("fields");
    let field = |id: &str| {
        all.iter()
            .find(|f| f.id == id)
            .unwrap_or_else(|| panic!("field {id} is listed"))
            .clone()
    };
    use Classification::{Encrypted, Pii, Unencrypted};
    assert_eq!(field("Context_ZIP").classification, Pii);
    assert_eq!(field("Context_Last_Name").classification, Pii);
    assert_eq!(field("Context_Work_Email").classification, Pii);
    assert_eq!(
        field("Context_Customer_External_ID").classification,
        Encrypted
    );
    assert_eq!(
        field("Context_Preferred_Language").classification,
        Unencrypted
    );
    assert!(field("Context_Preferred_Language")
        .enum_values
        .is_some_and(|v| !v.is_empty()));
    assert_eq!(field("Context_Description").classification, Encrypted);
    assert_eq!(field("Context_Notes").classification, Encrypted);
    assert_eq!(
        field("Context_POD_Activity_Link").classification,
        Unencrypted
    );
    assert_eq!(field("Context_Visible").data_type, DataType::Boolean);
    assert_eq!(field("cccRatingPoints").data_type, DataType::Integer);
    assert_eq!(field("cccRatingComments").classification, Encrypted);
    for f in all.iter().filter(|f| f.base) {
        assert!(f.searchable, "every base field is searchable: {f:?}");
    }

    // One set and one field by id.
    let rating = c.fieldset("cisco.base.rating").await.expect("rating set");
    assert_eq!(rating.fields, ["cccRatingComments", "cccRatingPoints"]);
    c.field("Context_First_Name").await.expect("a base field");
    not_found(c.field("No_Such_Field").await);
    not_found(c.fieldset("no.such.set").await);
}

#[tokio::test]
async fn base_dictionary_is_read_only() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    let before = c.field("Context_First_Name").await.expect("field");
    let mut edited = before.clone();
    edited.description = "changed".into();
    edited.base = false;
    forbidden(c.update_field(&edited).await);
    forbidden(c.delete_field("Context_First_Name").await);
    forbidden(c.create_field(&edited).await);
    assert_eq!(c.field("Context_First_Name").await.expect("field"), before);

    let set_before = c.fieldset("cisco.base.customer").await.expect("set");
    let mine = FieldSet {
        description: "mine now".into(),
        ..set("cisco.base.customer", &["Context_First_Name"])
    };
    forbidden(c.update_fieldset(&mine).await);
    forbidden(c.delete_fieldset("cisco.base.customer").await);
    forbidden(c.create_fieldset(&mine).await);
    assert_eq!(
        c.fieldset("cisco.base.customer").await.expect("set"),
        set_before
    );

    // Production admins can't change it either (the dictionary is the org's).
    let prod = s.client(s.prod());
    forbidden(prod.delete_field("Context_ZIP").await);
    forbidden(prod.delete_fieldset("cisco.base.pod").await);
}

#[tokio::test]
async fn custom_field_crud() {
    let s = TestServer::start().await;
    let (c, prod) = (s.client(s.lab()), s.client(s.prod()));
    // Raw HTTP: the Location header of a create is wire, not in the SDK's answer.
    let r = s
        .post(
            s.lab(),
            "/v1/fields",
            serde_json::to_value(string_field("Loyalty_Tier")).unwrap(),
        )
        .await;
    r.expect(201);
    assert_eq!(
        r.headers.get("location").and_then(|v| v.to_str().ok()),
        Some("/v1/fields/Loyalty_Tier")
    );
    let created: Field = serde_json::from_value(r.body.clone()).expect("a Field");
    assert_eq!(created.id, "Loyalty_Tier");
    assert!(!created.base);

    let got = c.field("Loyalty_Tier").await.expect("field");
    assert_eq!(got.data_type, DataType::String);
    assert_eq!(got.classification, Classification::Unencrypted);
    assert!(got.searchable);
    let all = c.fields().await.expect("fields");
    assert!(has(&all, "Loyalty_Tier", |f| &f.id));
    // Shared by both partitions.
    prod.field("Loyalty_Tier")
        .await
        .expect("seen in production");

    // Duplicate: 409, and the original is untouched.
    let mut dup = string_field("Loyalty_Tier");
    dup.data_type = DataType::Integer;
    conflict(c.create_field(&dup).await, ErrorCode::AlreadyExists);
    conflict(prod.create_field(&dup).await, ErrorCode::AlreadyExists);
    let got = c.field("Loyalty_Tier").await.expect("field");
    assert_eq!(got.data_type, DataType::String);

    // Replace an unused field: anything may change.
    let mut changed = string_field("Loyalty_Tier");
    changed.data_type = DataType::Integer;
    changed.classification = Classification::Pii;
    changed.translations = [("de_DE".to_owned(), "Treuestufe".to_owned())].into();
    c.update_field(&changed).await.expect("replaced");
    let got = c.field("Loyalty_Tier").await.expect("field");
    assert_eq!(got.data_type, DataType::Integer);
    assert_eq!(got.classification, Classification::Pii);
    assert_eq!(got.translations["de_DE"], "Treuestufe");
    // Path and body ids must agree: raw HTTP, as the SDK takes the path from the body.
    s.put(
        s.lab(),
        "/v1/fields/Loyalty_Tier",
        serde_json::to_value(string_field("Other_Field")).unwrap(),
    )
    .await
    .expect(400);
    // A PUT doesn't create.
    not_found(c.update_field(&string_field("Not_There")).await);
    not_found(c.field("Not_There").await);

    // Delete an unused field.
    c.delete_field("Loyalty_Tier").await.expect("deleted");
    not_found(c.field("Loyalty_Tier").await);
    not_found(c.delete_field("Loyalty_Tier").await);
}

#[tokio::test]
async fn invalid_definitions_are_400() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    for bad in [
        "1bad",
        "has space",
        "a-b",
        "",
        "_x",
        "ünïcode",
        &format!("a{}", "b".repeat(100)),
    ] {
        invalid(c.create_field(&string_field(bad)).await, "id");
        invalid(c.create_fieldset(&set(bad, &[])).await, "id");
    }
    // Longest valid id: 100 characters.
    c.create_field(&string_field(&format!("a{}", "b".repeat(99))))
        .await
        .expect("100 characters");
    // Bad types and classifications: raw HTTP, as the SDK's typed Field can't hold them.
    let mut f = serde_json::to_value(string_field("Bad_Type")).unwrap();
    f["dataType"] = json!("blob");
    s.post(s.lab(), "/v1/fields", f).await.expect(400);
    let mut f = serde_json::to_value(string_field("Bad_Class")).unwrap();
    f["classification"] = json!("SECRET");
    s.post(s.lab(), "/v1/fields", f).await.expect(400);
    // Limits.
    let mut f = string_field("Int_With_Max");
    f.data_type = DataType::Integer;
    f.max_length = Some(5);
    invalid(c.create_field(&f).await, "maxLength");
    for name in ["Bad_Type", "Bad_Class", "Int_With_Max"] {
        not_found(c.field(name).await);
    }

    // A field set naming an unknown field.
    c.create_field(&string_field("Known")).await.expect("Known");
    invalid(
        c.create_fieldset(&set("custom.bad", &["Known", "Unknown_Field"]))
            .await,
        "fields",
    );
    not_found(c.fieldset("custom.bad").await);
    // And an inactive field that is not among the set's fields.
    let inactive = FieldSet {
        inactive_fields: vec!["Context_ZIP".into()],
        ..set("custom.bad", &["Known"])
    };
    invalid(c.create_fieldset(&inactive).await, "inactiveFields");
    not_found(c.fieldset("custom.bad").await);
}

#[tokio::test]
async fn fieldset_crud() {
    let s = TestServer::start().await;
    let (c, prod) = (s.client(s.lab()), s.client(s.prod()));
    c.create_field(&string_field("Vehicle_VIN"))
        .await
        .expect("field");
    // Raw HTTP: the Location header of a create is wire, not in the SDK's answer.
    let r = s
        .post(s.lab(), "/v1/fieldsets", json!({"id": "custom.vehicle", "description": "bike", "fields": ["Vehicle_VIN", "Context_First_Name"]}))
        .await;
    r.expect(201);
    assert_eq!(
        r.headers.get("location").and_then(|v| v.to_str().ok()),
        Some("/v1/fieldsets/custom.vehicle")
    );
    conflict(
        c.create_fieldset(&set("custom.vehicle", &[])).await,
        ErrorCode::AlreadyExists,
    );
    let got = c.fieldset("custom.vehicle").await.expect("set");
    assert_eq!(got.fields, ["Vehicle_VIN", "Context_First_Name"]);
    let listed = prod.fieldsets().await.expect("sets");
    assert!(has(&listed, "custom.vehicle", |s| &s.id));

    // Usable right away, in both partitions.
    for client in [&c, &prod] {
        customer(client, json!({"fieldsets": ["custom.vehicle"], "data": {"Vehicle_VIN": "VIN1", "Context_First_Name": "Ann"}})).await;
    }

    // Production data uses the set: its membership is the production admin's to change.
    let v2 = FieldSet {
        description: "v2".into(),
        ..set("custom.vehicle", &["Vehicle_VIN"])
    };
    forbidden(c.update_fieldset(&v2).await);
    prod.update_fieldset(&v2).await.expect("production admin");
    let got = c.fieldset("custom.vehicle").await.expect("set");
    assert_eq!(got.description, "v2");
    // Unused set: deletable.
    c.create_fieldset(&set("custom.unused", &["Vehicle_VIN"]))
        .await
        .expect("unused set");
    c.delete_fieldset("custom.unused").await.expect("deleted");
    not_found(c.fieldset("custom.unused").await);
}

#[tokio::test]
async fn fields_in_use_keep_type_and_classification() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    for id in ["Loyalty_Tier", "Other_Field"] {
        c.create_field(&string_field(id)).await.expect("field");
    }
    c.create_fieldset(&set("custom.loyalty", &["Loyalty_Tier", "Other_Field"]))
        .await
        .expect("set");
    let id = customer(
        &c,
        json!({"fieldsets": ["custom.loyalty"], "data": {"Loyalty_Tier": "gold"}}),
    )
    .await;

    let mut f = string_field("Loyalty_Tier");
    f.data_type = DataType::Integer;
    conflict(c.update_field(&f).await, ErrorCode::InUse);
    let mut f = string_field("Loyalty_Tier");
    f.classification = Classification::Encrypted;
    conflict(c.update_field(&f).await, ErrorCode::InUse);
    let got = c.field("Loyalty_Tier").await.expect("field");
    assert_eq!(got.data_type, DataType::String);
    assert_eq!(got.classification, Classification::Unencrypted);

    // The description (and other metadata) can change.
    let mut f = string_field("Loyalty_Tier");
    f.description = "Tier of the loyalty program".into();
    f.translations = [("fr_FR".to_owned(), "Niveau".to_owned())].into();
    c.update_field(&f).await.expect("metadata");
    let got = c.field("Loyalty_Tier").await.expect("field");
    assert_eq!(got.description, "Tier of the loyalty program");
    assert_eq!(got.translations["fr_FR"], "Niveau");

    // Still listed in a field set: 409.
    conflict(c.delete_field("Loyalty_Tier").await, ErrorCode::InUse);
    // Out of every set but still in stored data: 409 too.
    c.update_fieldset(&set("custom.loyalty", &["Other_Field"]))
        .await
        .expect("set");
    conflict(c.delete_field("Loyalty_Tier").await, ErrorCode::InUse);
    c.field("Loyalty_Tier").await.expect("still there");
    // The stored value is still readable.
    let o = c.get(Kind::Customer, id).await.expect("customer");
    assert_eq!(o.data["Loyalty_Tier"], "gold");

    // A field in no set and with no data: deletable.
    c.update_fieldset(&set("custom.loyalty", &["Loyalty_Tier"]))
        .await
        .expect("set");
    c.delete_field("Other_Field").await.expect("deleted");
    not_found(c.field("Other_Field").await);
}

#[tokio::test]
async fn data_in_production_counts_as_use() {
    let s = TestServer::start().await;
    let (c, prod) = (s.client(s.lab()), s.client(s.prod()));
    c.create_field(&string_field("Prod_Only"))
        .await
        .expect("field");
    c.create_fieldset(&set("custom.prod", &["Prod_Only"]))
        .await
        .expect("set");
    customer(
        &prod,
        json!({"fieldsets": ["custom.prod"], "data": {"Prod_Only": "x"}}),
    )
    .await;

    let mut f = string_field("Prod_Only");
    f.data_type = DataType::Boolean;
    // A lab admin may not touch it at all; for a production admin the in-use rule answers.
    forbidden(c.update_field(&f).await);
    conflict(prod.update_field(&f).await, ErrorCode::InUse);
    forbidden(c.delete_fieldset("custom.prod").await);
    conflict(prod.delete_fieldset("custom.prod").await, ErrorCode::InUse);
    let got = c.field("Prod_Only").await.expect("field");
    assert_eq!(got.data_type, DataType::String);
}

#[tokio::test]
async fn fieldset_used_by_an_object_cant_be_deleted() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    c.create_field(&string_field("Bike_Model"))
        .await
        .expect("field");
    c.create_fieldset(&set("custom.bike", &["Bike_Model"]))
        .await
        .expect("set");
    // Declaring the set is use, even with no value stored under it.
    let id = customer(&c, json!({"fieldsets": ["custom.bike", "cisco.base.customer"], "data": {"Context_First_Name": "Ann"}})).await;

    conflict(c.delete_fieldset("custom.bike").await, ErrorCode::InUse);
    c.fieldset("custom.bike").await.expect("still there");
    let o = c.get(Kind::Customer, id).await.expect("customer");
    assert!(o.fieldsets.iter().any(|f| f == "custom.bike"));

    // Once no object declares it, it can go.
    c.delete(Kind::Customer, id)
        .await
        .expect("customer deleted");
    c.delete_fieldset("custom.bike").await.expect("set deleted");
    not_found(c.fieldset("custom.bike").await);
}

#[tokio::test]
async fn non_admins_read_but_cant_write_the_dictionary() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    let agent = s.client(&agent_token(&s).await);
    c.create_field(&string_field("Admin_Field"))
        .await
        .expect("field");
    c.create_fieldset(&set("custom.admin", &["Admin_Field"]))
        .await
        .expect("set");

    // Reads work.
    let fields = agent.fields().await.expect("fields");
    assert!(has(&fields, "Admin_Field", |f| &f.id));
    assert!(has(&fields, "Context_First_Name", |f| &f.id));
    let sets = agent.fieldsets().await.expect("sets");
    assert!(has(&sets, "cisco.base.customer", |s| &s.id));
    agent.field("Admin_Field").await.expect("field");
    agent.fieldset("custom.admin").await.expect("set");

    // Writes don't.
    forbidden(agent.create_field(&string_field("Agent_Field")).await);
    let mut f = string_field("Admin_Field");
    f.description = "agent was here".into();
    forbidden(agent.update_field(&f).await);
    forbidden(agent.delete_field("Admin_Field").await);
    forbidden(
        agent
            .create_fieldset(&set("custom.agent", &["Admin_Field"]))
            .await,
    );
    forbidden(agent.update_fieldset(&set("custom.admin", &[])).await);
    forbidden(agent.delete_fieldset("custom.admin").await);

    // Nothing changed.
    not_found(c.field("Agent_Field").await);
    not_found(c.fieldset("custom.agent").await);
    let got = c.field("Admin_Field").await.expect("field");
    assert_eq!(got.description, "a custom field");
    let got = c.fieldset("custom.admin").await.expect("set");
    assert_eq!(got.fields, ["Admin_Field"]);

    // But the agent can use the dictionary in objects.
    customer(
        &agent,
        json!({"fieldsets": ["custom.admin"], "data": {"Admin_Field": "v"}}),
    )
    .await;
}

#[tokio::test]
async fn lab_admins_cannot_change_what_production_data_uses() {
    let s = TestServer::start().await;
    let (lab, prod) = (s.client(s.lab()), s.client(s.prod()));
    for id in ["prod_used", "lab_only"] {
        let f = Field {
            max_length: Some(50),
            ..field(id, DataType::String, Classification::Unencrypted)
        };
        prod.create_field(&f).await.expect("field");
    }
    prod.create_fieldset(&set("prod_set", &["prod_used"]))
        .await
        .expect("prod set");
    lab.create_fieldset(&set("lab_set", &["lab_only"]))
        .await
        .expect("lab set");
    customer(
        &prod,
        json!({"fieldsets": ["prod_set"], "data": {"prod_used": "in production"}}),
    )
    .await;
    customer(
        &lab,
        json!({"fieldsets": ["lab_set"], "data": {"lab_only": "in the lab"}}),
    )
    .await;

    let original = lab.field("prod_used").await.expect("field");
    let changes: [fn(&mut Field); 4] = [
        |f| f.max_length = Some(10),
        |f| {
            f.enum_values = Some(vec![EnumValue {
                value: "in production".into(),
                active: true,
            }])
        },
        |f| f.classification = Classification::Pii,
        |f| {
            f.max_length = None;
            f.data_type = DataType::Integer;
        },
    ];
    for change in changes {
        let mut changed = original.clone();
        change(&mut changed);
        match lab.update_field(&changed).await {
            Err(Error::Forbidden { detail }) => assert!(
                detail.contains("production"),
                "the refusal says why: {detail}"
            ),
            other => panic!("{changed:?}: {other:?}"),
        }
    }
    let mut described = original.clone();
    described.description = "a lab admin may still describe it".into();
    lab.update_field(&described).await.expect("described");
    let mut grown = lab.fieldset("prod_set").await.expect("set");
    grown.fields = vec!["prod_used".into(), "lab_only".into()];
    forbidden(lab.update_fieldset(&grown).await);
    forbidden(lab.delete_fieldset("prod_set").await);

    // What production doesn't use stays the lab's to change; new entries too.
    let mut lab_field = lab.field("lab_only").await.expect("field");
    lab_field.max_length = Some(40);
    lab.update_field(&lab_field).await.expect("lab field");
    lab.create_field(&field(
        "lab_new",
        DataType::String,
        Classification::Unencrypted,
    ))
    .await
    .expect("new field");
    lab.delete_field("lab_new").await.expect("deleted");
    // A production admin may make the change (the in-use rules still apply).
    let mut shorter = prod.field("prod_used").await.expect("field");
    shorter.max_length = Some(20);
    prod.update_field(&shorter).await.expect("shorter");
    conflict(prod.delete_fieldset("prod_set").await, ErrorCode::InUse);
}

/// Another instance seals a field while this one still caches it as clear: this instance's
/// next write of the field is refused by the store (the dictionary version moved on), and
/// sealed under the new dictionary, never stored in the clear.
#[tokio::test]
async fn a_field_sealed_on_another_instance_is_never_written_in_the_clear() {
    use std::sync::Arc;

    use contextd_core::crypto::Keyring;
    use contextd_core::service::{Context, ContextConfig};
    use contextd_store_sqlite::{SqliteKeyStore, SqliteStore};

    let s = TestServer::start().await;
    let c = s.client(s.lab());
    c.create_field(&field(
        "late_sealed",
        DataType::String,
        Classification::Unencrypted,
    ))
    .await
    .expect("field");
    c.create_fieldset(&set("late_set", &["late_sealed"]))
        .await
        .expect("set");
    // This instance reads (and caches) the dictionary.
    c.field("late_sealed").await.expect("field");

    let other = Context::new(
        Arc::new(SqliteStore::open(&s.dir.path().join("contextd.db")).expect("open data")),
        Keyring::new(
            s.master.clone(),
            Arc::new(SqliteKeyStore::open(&s.dir.path().join("keys.db")).expect("open keys")),
            10,
        ),
        ContextConfig::default(),
    );
    let admin = s.lab_admin();
    let mut field = other.get_field(&admin, "late_sealed").await.expect("field");
    field.classification = Classification::Pii;
    other
        .put_field(&admin, field, Some("late_sealed"))
        .await
        .expect("seal the field on the other instance");

    let id = customer(
        &c,
        json!({"fieldsets": ["late_set"], "data": {"late_sealed": "secret-after-sealing"}}),
    )
    .await;
    let scope = admin.scope;
    let stored = s
        .context
        .store()
        .object(scope, id)
        .await
        .expect("read")
        .expect("stored");
    assert!(
        stored.clear.is_empty(),
        "nothing in the clear: {:?}",
        stored.clear
    );
    assert!(stored.sealed.contains_key("late_sealed"));
}
