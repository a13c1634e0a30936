//! The dictionary over HTTP (DESIGN §2, §3): fields and field sets, the read-only base sets,
//! the in-use rules, and admin-only writes.

use contextd_core::auth::Role;
use contextd_core::{Partition, Scope};
use serde_json::{json, Value};

use crate::support::{Resp, TestServer};

fn ids(r: &Resp) -> Vec<String> {
    r.body
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|v| v["id"].as_str().expect("id").to_owned())
        .collect()
}

fn string_field(id: &str) -> Value {
    json!({"id": id, "description": "a custom field", "dataType": "string", "classification": "UNENCRYPTED", "searchable": true})
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
    let r = s.get(s.lab(), "/v1/fieldsets").await;
    r.expect(200);
    let sets = ids(&r);
    for base in [
        "cisco.base.customer",
        "cisco.base.request",
        "cisco.base.pod",
        "cisco.base.comment",
        "cisco.base.rating",
    ] {
        assert!(sets.iter().any(|s| s == base), "{base} is listed: {sets:?}");
    }
    let customer = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "cisco.base.customer")
        .unwrap();
    let fields: Vec<&str> = customer["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
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
            fields.contains(&f),
            "cisco.base.customer has {f}: {fields:?}"
        );
    }

    let r = s.get(s.lab(), "/v1/fields").await;
    r.expect(200);
    let all = r.body.as_array().unwrap();
    let field = |id: &str| {
        all.iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("field {id} is listed"))
            .clone()
    };
    assert_eq!(field("Context_ZIP")["classification"], "PII");
    assert_eq!(field("Context_Last_Name")["classification"], "PII");
    assert_eq!(field("Context_Work_Email")["classification"], "PII");
    assert_eq!(
        field("Context_Customer_External_ID")["classification"],
        "ENCRYPTED"
    );
    assert_eq!(
        field("Context_Preferred_Language")["classification"],
        "UNENCRYPTED"
    );
    assert!(field("Context_Preferred_Language")["enumValues"]
        .as_array()
        .is_some_and(|v| !v.is_empty()));
    assert_eq!(field("Context_Description")["classification"], "ENCRYPTED");
    assert_eq!(field("Context_Notes")["classification"], "ENCRYPTED");
    assert_eq!(
        field("Context_POD_Activity_Link")["classification"],
        "UNENCRYPTED"
    );
    assert_eq!(field("Context_Visible")["dataType"], "boolean");
    assert_eq!(field("cccRatingPoints")["dataType"], "integer");
    assert_eq!(field("cccRatingComments")["classification"], "ENCRYPTED");
    for f in all.iter().filter(|f| f["base"] == true) {
        assert_eq!(f["searchable"], true, "every base field is searchable: {f}");
    }

    // One set and one field by id.
    let r = s.get(s.lab(), "/v1/fieldsets/cisco.base.rating").await;
    r.expect(200);
    assert_eq!(
        r.at("/fields"),
        &json!(["cccRatingComments", "cccRatingPoints"])
    );
    s.get(s.lab(), "/v1/fields/Context_First_Name")
        .await
        .expect(200);
    s.get(s.lab(), "/v1/fields/No_Such_Field").await.expect(404);
    s.get(s.lab(), "/v1/fieldsets/no.such.set")
        .await
        .expect(404);
}

#[tokio::test]
async fn base_dictionary_is_read_only() {
    let s = TestServer::start().await;
    let before = s.get(s.lab(), "/v1/fields/Context_First_Name").await.body;
    let mut edited = before.clone();
    edited["description"] = json!("changed");
    edited.as_object_mut().unwrap().remove("base");
    s.put(s.lab(), "/v1/fields/Context_First_Name", edited.clone())
        .await
        .expect(403);
    s.delete(s.lab(), "/v1/fields/Context_First_Name")
        .await
        .expect(403);
    s.post(s.lab(), "/v1/fields", edited).await.expect(403);
    assert_eq!(
        s.get(s.lab(), "/v1/fields/Context_First_Name").await.body,
        before
    );

    let set_before = s
        .get(s.lab(), "/v1/fieldsets/cisco.base.customer")
        .await
        .body;
    let set = json!({"id": "cisco.base.customer", "description": "mine now", "fields": ["Context_First_Name"]});
    s.put(s.lab(), "/v1/fieldsets/cisco.base.customer", set.clone())
        .await
        .expect(403);
    s.delete(s.lab(), "/v1/fieldsets/cisco.base.customer")
        .await
        .expect(403);
    s.post(s.lab(), "/v1/fieldsets", set).await.expect(403);
    assert_eq!(
        s.get(s.lab(), "/v1/fieldsets/cisco.base.customer")
            .await
            .body,
        set_before
    );

    // Production admins can't change it either (the dictionary is the org's).
    s.delete(s.prod(), "/v1/fields/Context_ZIP")
        .await
        .expect(403);
    s.delete(s.prod(), "/v1/fieldsets/cisco.base.pod")
        .await
        .expect(403);
}

#[tokio::test]
async fn custom_field_crud() {
    let s = TestServer::start().await;
    let r = s
        .post(s.lab(), "/v1/fields", string_field("Loyalty_Tier"))
        .await;
    r.expect(201);
    assert_eq!(
        r.headers.get("location").and_then(|v| v.to_str().ok()),
        Some("/v1/fields/Loyalty_Tier")
    );
    assert_eq!(r.at("/id"), "Loyalty_Tier");
    assert_eq!(r.at("/base"), false);

    let r = s.get(s.lab(), "/v1/fields/Loyalty_Tier").await;
    r.expect(200);
    assert_eq!(r.at("/dataType"), "string");
    assert_eq!(r.at("/classification"), "UNENCRYPTED");
    assert_eq!(r.at("/searchable"), true);
    assert!(ids(&s.get(s.lab(), "/v1/fields").await).contains(&"Loyalty_Tier".to_owned()));
    // Shared by both partitions.
    s.get(s.prod(), "/v1/fields/Loyalty_Tier").await.expect(200);

    // Duplicate: 409, and the original is untouched.
    let mut dup = string_field("Loyalty_Tier");
    dup["dataType"] = json!("integer");
    s.post(s.lab(), "/v1/fields", dup.clone()).await.expect(409);
    s.post(s.prod(), "/v1/fields", dup).await.expect(409);
    assert_eq!(
        s.get(s.lab(), "/v1/fields/Loyalty_Tier")
            .await
            .at("/dataType"),
        "string"
    );

    // Replace an unused field: anything may change.
    let mut changed = string_field("Loyalty_Tier");
    changed["dataType"] = json!("integer");
    changed["classification"] = json!("PII");
    changed["translations"] = json!({"de_DE": "Treuestufe"});
    s.put(s.lab(), "/v1/fields/Loyalty_Tier", changed)
        .await
        .expect(200);
    let r = s.get(s.lab(), "/v1/fields/Loyalty_Tier").await;
    assert_eq!(r.at("/dataType"), "integer");
    assert_eq!(r.at("/classification"), "PII");
    assert_eq!(r.at("/translations/de_DE"), "Treuestufe");
    // Path and body ids must agree; a PUT doesn't create.
    s.put(
        s.lab(),
        "/v1/fields/Loyalty_Tier",
        string_field("Other_Field"),
    )
    .await
    .expect(400);
    s.put(s.lab(), "/v1/fields/Not_There", string_field("Not_There"))
        .await
        .expect(404);
    s.get(s.lab(), "/v1/fields/Not_There").await.expect(404);

    // Delete an unused field.
    s.delete(s.lab(), "/v1/fields/Loyalty_Tier")
        .await
        .expect(204);
    s.get(s.lab(), "/v1/fields/Loyalty_Tier").await.expect(404);
    s.delete(s.lab(), "/v1/fields/Loyalty_Tier")
        .await
        .expect(404);
}

#[tokio::test]
async fn invalid_definitions_are_400() {
    let s = TestServer::start().await;
    for bad in [
        "1bad",
        "has space",
        "a-b",
        "",
        "_x",
        "ünïcode",
        &format!("a{}", "b".repeat(100)),
    ] {
        s.post(s.lab(), "/v1/fields", string_field(bad))
            .await
            .expect(400);
        s.post(s.lab(), "/v1/fieldsets", json!({"id": bad, "fields": []}))
            .await
            .expect(400);
    }
    // Longest valid id: 100 characters.
    s.post(
        s.lab(),
        "/v1/fields",
        string_field(&format!("a{}", "b".repeat(99))),
    )
    .await
    .expect(201);
    // Bad types, classifications, limits.
    let mut f = string_field("Bad_Type");
    f["dataType"] = json!("blob");
    s.post(s.lab(), "/v1/fields", f).await.expect(400);
    let mut f = string_field("Bad_Class");
    f["classification"] = json!("SECRET");
    s.post(s.lab(), "/v1/fields", f).await.expect(400);
    let mut f = string_field("Int_With_Max");
    f["dataType"] = json!("integer");
    f["maxLength"] = json!(5);
    s.post(s.lab(), "/v1/fields", f).await.expect(400);
    for name in ["Bad_Type", "Bad_Class", "Int_With_Max"] {
        s.get(s.lab(), &format!("/v1/fields/{name}"))
            .await
            .expect(404);
    }

    // A field set naming an unknown field.
    s.post(s.lab(), "/v1/fields", string_field("Known"))
        .await
        .expect(201);
    let r = s
        .post(
            s.lab(),
            "/v1/fieldsets",
            json!({"id": "custom.bad", "fields": ["Known", "Unknown_Field"]}),
        )
        .await;
    r.expect(400);
    assert!(
        r.at("/errors")
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["field"] == "fields")),
        "{}",
        r.body
    );
    s.get(s.lab(), "/v1/fieldsets/custom.bad").await.expect(404);
    // And an inactive field that is not among the set's fields.
    let r = s
        .post(
            s.lab(),
            "/v1/fieldsets",
            json!({"id": "custom.bad", "fields": ["Known"], "inactiveFields": ["Context_ZIP"]}),
        )
        .await;
    r.expect(400);
    s.get(s.lab(), "/v1/fieldsets/custom.bad").await.expect(404);
}

#[tokio::test]
async fn fieldset_crud() {
    let s = TestServer::start().await;
    s.post(s.lab(), "/v1/fields", string_field("Vehicle_VIN"))
        .await
        .expect(201);
    let r = s
        .post(s.lab(), "/v1/fieldsets", json!({"id": "custom.vehicle", "description": "bike", "fields": ["Vehicle_VIN", "Context_First_Name"]}))
        .await;
    r.expect(201);
    assert_eq!(
        r.headers.get("location").and_then(|v| v.to_str().ok()),
        Some("/v1/fieldsets/custom.vehicle")
    );
    s.post(
        s.lab(),
        "/v1/fieldsets",
        json!({"id": "custom.vehicle", "fields": []}),
    )
    .await
    .expect(409);
    let r = s.get(s.lab(), "/v1/fieldsets/custom.vehicle").await;
    r.expect(200);
    assert_eq!(
        r.at("/fields"),
        &json!(["Vehicle_VIN", "Context_First_Name"])
    );
    assert!(ids(&s.get(s.prod(), "/v1/fieldsets").await).contains(&"custom.vehicle".to_owned()));

    // Usable right away, in both partitions.
    for token in [s.lab(), s.prod()] {
        s.post(token, "/v1/customers", json!({"fieldsets": ["custom.vehicle"], "data": {"Vehicle_VIN": "VIN1", "Context_First_Name": "Ann"}}))
            .await
            .expect(201);
    }

    // Production data uses the set: its membership is the production admin's to change.
    s.put(
        s.lab(),
        "/v1/fieldsets/custom.vehicle",
        json!({"id": "custom.vehicle", "description": "v2", "fields": ["Vehicle_VIN"]}),
    )
    .await
    .expect(403);
    s.put(
        s.prod(),
        "/v1/fieldsets/custom.vehicle",
        json!({"id": "custom.vehicle", "description": "v2", "fields": ["Vehicle_VIN"]}),
    )
    .await
    .expect(200);
    assert_eq!(
        s.get(s.lab(), "/v1/fieldsets/custom.vehicle")
            .await
            .at("/description"),
        "v2"
    );
    // Unused set: deletable.
    s.post(
        s.lab(),
        "/v1/fieldsets",
        json!({"id": "custom.unused", "fields": ["Vehicle_VIN"]}),
    )
    .await
    .expect(201);
    s.delete(s.lab(), "/v1/fieldsets/custom.unused")
        .await
        .expect(204);
    s.get(s.lab(), "/v1/fieldsets/custom.unused")
        .await
        .expect(404);
}

#[tokio::test]
async fn fields_in_use_keep_type_and_classification() {
    let s = TestServer::start().await;
    s.post(s.lab(), "/v1/fields", string_field("Loyalty_Tier"))
        .await
        .expect(201);
    s.post(s.lab(), "/v1/fields", string_field("Other_Field"))
        .await
        .expect(201);
    s.post(
        s.lab(),
        "/v1/fieldsets",
        json!({"id": "custom.loyalty", "fields": ["Loyalty_Tier", "Other_Field"]}),
    )
    .await
    .expect(201);
    let r = s
        .post(
            s.lab(),
            "/v1/customers",
            json!({"fieldsets": ["custom.loyalty"], "data": {"Loyalty_Tier": "gold"}}),
        )
        .await;
    r.expect(201);
    let customer = r.str("/id");

    let mut f = string_field("Loyalty_Tier");
    f["dataType"] = json!("integer");
    s.put(s.lab(), "/v1/fields/Loyalty_Tier", f)
        .await
        .expect(409);
    let mut f = string_field("Loyalty_Tier");
    f["classification"] = json!("ENCRYPTED");
    s.put(s.lab(), "/v1/fields/Loyalty_Tier", f)
        .await
        .expect(409);
    let r = s.get(s.lab(), "/v1/fields/Loyalty_Tier").await;
    assert_eq!(r.at("/dataType"), "string");
    assert_eq!(r.at("/classification"), "UNENCRYPTED");

    // The description (and other metadata) can change.
    let mut f = string_field("Loyalty_Tier");
    f["description"] = json!("Tier of the loyalty program");
    f["translations"] = json!({"fr_FR": "Niveau"});
    s.put(s.lab(), "/v1/fields/Loyalty_Tier", f)
        .await
        .expect(200);
    let r = s.get(s.lab(), "/v1/fields/Loyalty_Tier").await;
    assert_eq!(r.at("/description"), "Tier of the loyalty program");
    assert_eq!(r.at("/translations/fr_FR"), "Niveau");

    // Still listed in a field set: 409.
    s.delete(s.lab(), "/v1/fields/Loyalty_Tier")
        .await
        .expect(409);
    // Out of every set but still in stored data: 409 too.
    s.put(
        s.lab(),
        "/v1/fieldsets/custom.loyalty",
        json!({"id": "custom.loyalty", "fields": ["Other_Field"]}),
    )
    .await
    .expect(200);
    s.delete(s.lab(), "/v1/fields/Loyalty_Tier")
        .await
        .expect(409);
    s.get(s.lab(), "/v1/fields/Loyalty_Tier").await.expect(200);
    // The stored value is still readable.
    assert_eq!(
        s.get(s.lab(), &format!("/v1/customers/{customer}"))
            .await
            .at("/data/Loyalty_Tier"),
        "gold"
    );

    // A field in no set and with no data: deletable.
    s.put(
        s.lab(),
        "/v1/fieldsets/custom.loyalty",
        json!({"id": "custom.loyalty", "fields": ["Loyalty_Tier"]}),
    )
    .await
    .expect(200);
    s.delete(s.lab(), "/v1/fields/Other_Field")
        .await
        .expect(204);
    s.get(s.lab(), "/v1/fields/Other_Field").await.expect(404);
}

#[tokio::test]
async fn data_in_production_counts_as_use() {
    let s = TestServer::start().await;
    s.post(s.lab(), "/v1/fields", string_field("Prod_Only"))
        .await
        .expect(201);
    s.post(
        s.lab(),
        "/v1/fieldsets",
        json!({"id": "custom.prod", "fields": ["Prod_Only"]}),
    )
    .await
    .expect(201);
    s.post(
        s.prod(),
        "/v1/customers",
        json!({"fieldsets": ["custom.prod"], "data": {"Prod_Only": "x"}}),
    )
    .await
    .expect(201);

    let mut f = string_field("Prod_Only");
    f["dataType"] = json!("boolean");
    // A lab admin may not touch it at all; for a production admin the in-use rule answers.
    s.put(s.lab(), "/v1/fields/Prod_Only", f.clone())
        .await
        .expect(403);
    s.put(s.prod(), "/v1/fields/Prod_Only", f).await.expect(409);
    s.delete(s.lab(), "/v1/fieldsets/custom.prod")
        .await
        .expect(403);
    s.delete(s.prod(), "/v1/fieldsets/custom.prod")
        .await
        .expect(409);
    assert_eq!(
        s.get(s.lab(), "/v1/fields/Prod_Only").await.at("/dataType"),
        "string"
    );
}

#[tokio::test]
async fn fieldset_used_by_an_object_cant_be_deleted() {
    let s = TestServer::start().await;
    s.post(s.lab(), "/v1/fields", string_field("Bike_Model"))
        .await
        .expect(201);
    s.post(
        s.lab(),
        "/v1/fieldsets",
        json!({"id": "custom.bike", "fields": ["Bike_Model"]}),
    )
    .await
    .expect(201);
    // Declaring the set is use, even with no value stored under it.
    let r = s.post(s.lab(), "/v1/customers", json!({"fieldsets": ["custom.bike", "cisco.base.customer"], "data": {"Context_First_Name": "Ann"}})).await;
    r.expect(201);
    let id = r.str("/id");

    s.delete(s.lab(), "/v1/fieldsets/custom.bike")
        .await
        .expect(409);
    s.get(s.lab(), "/v1/fieldsets/custom.bike")
        .await
        .expect(200);
    let o = s.get(s.lab(), &format!("/v1/customers/{id}")).await;
    o.expect(200);
    assert!(o
        .at("/fieldsets")
        .as_array()
        .unwrap()
        .contains(&json!("custom.bike")));

    // Once no object declares it, it can go.
    s.delete(s.lab(), &format!("/v1/customers/{id}"))
        .await
        .expect(204);
    s.delete(s.lab(), "/v1/fieldsets/custom.bike")
        .await
        .expect(204);
    s.get(s.lab(), "/v1/fieldsets/custom.bike")
        .await
        .expect(404);
}

#[tokio::test]
async fn non_admins_read_but_cant_write_the_dictionary() {
    let s = TestServer::start().await;
    let agent = agent_token(&s).await;
    s.post(s.lab(), "/v1/fields", string_field("Admin_Field"))
        .await
        .expect(201);
    s.post(
        s.lab(),
        "/v1/fieldsets",
        json!({"id": "custom.admin", "fields": ["Admin_Field"]}),
    )
    .await
    .expect(201);

    // Reads work.
    let r = s.get(&agent, "/v1/fields").await;
    r.expect(200);
    assert!(ids(&r).contains(&"Admin_Field".to_owned()));
    assert!(ids(&r).contains(&"Context_First_Name".to_owned()));
    let r = s.get(&agent, "/v1/fieldsets").await;
    r.expect(200);
    assert!(ids(&r).contains(&"cisco.base.customer".to_owned()));
    s.get(&agent, "/v1/fields/Admin_Field").await.expect(200);
    s.get(&agent, "/v1/fieldsets/custom.admin")
        .await
        .expect(200);

    // Writes don't.
    s.post(&agent, "/v1/fields", string_field("Agent_Field"))
        .await
        .expect(403);
    let mut f = string_field("Admin_Field");
    f["description"] = json!("agent was here");
    s.put(&agent, "/v1/fields/Admin_Field", f).await.expect(403);
    s.delete(&agent, "/v1/fields/Admin_Field").await.expect(403);
    s.post(
        &agent,
        "/v1/fieldsets",
        json!({"id": "custom.agent", "fields": ["Admin_Field"]}),
    )
    .await
    .expect(403);
    s.put(
        &agent,
        "/v1/fieldsets/custom.admin",
        json!({"id": "custom.admin", "fields": []}),
    )
    .await
    .expect(403);
    s.delete(&agent, "/v1/fieldsets/custom.admin")
        .await
        .expect(403);

    // Nothing changed.
    s.get(s.lab(), "/v1/fields/Agent_Field").await.expect(404);
    s.get(s.lab(), "/v1/fieldsets/custom.agent")
        .await
        .expect(404);
    assert_eq!(
        s.get(s.lab(), "/v1/fields/Admin_Field")
            .await
            .at("/description"),
        "a custom field"
    );
    assert_eq!(
        s.get(s.lab(), "/v1/fieldsets/custom.admin")
            .await
            .at("/fields"),
        &json!(["Admin_Field"])
    );

    // But the agent can use the dictionary in objects.
    s.post(
        &agent,
        "/v1/customers",
        json!({"fieldsets": ["custom.admin"], "data": {"Admin_Field": "v"}}),
    )
    .await
    .expect(201);
}

#[tokio::test]
async fn lab_admins_cannot_change_what_production_data_uses() {
    let s = TestServer::start().await;
    let (lab, prod) = (s.lab().to_owned(), s.prod().to_owned());
    for id in ["prod_used", "lab_only"] {
        s.post(
            &prod,
            "/v1/fields",
            json!({"id": id, "dataType": "string", "classification": "UNENCRYPTED", "maxLength": 50}),
        )
        .await
        .expect(201);
    }
    s.post(
        &prod,
        "/v1/fieldsets",
        json!({"id": "prod_set", "fields": ["prod_used"]}),
    )
    .await
    .expect(201);
    s.post(
        &lab,
        "/v1/fieldsets",
        json!({"id": "lab_set", "fields": ["lab_only"]}),
    )
    .await
    .expect(201);
    s.post(
        &prod,
        "/v1/customers",
        json!({"fieldsets": ["prod_set"], "data": {"prod_used": "in production"}}),
    )
    .await
    .expect(201);
    s.post(
        &lab,
        "/v1/customers",
        json!({"fieldsets": ["lab_set"], "data": {"lab_only": "in the lab"}}),
    )
    .await
    .expect(201);

    let field = s.get(&lab, "/v1/fields/prod_used").await.body;
    for (key, value) in [
        ("maxLength", json!(10)),
        (
            "enumValues",
            json!([{"value": "in production", "active": true}]),
        ),
        ("classification", json!("PII")),
        ("dataType", json!("integer")),
    ] {
        let mut changed = field.clone();
        if key == "dataType" {
            changed["maxLength"] = Value::Null;
        }
        changed[key] = value;
        let r = s.put(&lab, "/v1/fields/prod_used", changed).await;
        r.expect(403);
        assert!(
            r.str("/detail").contains("production"),
            "the refusal says why: {}",
            r.str("/detail")
        );
    }
    let mut described = field.clone();
    described["description"] = json!("a lab admin may still describe it");
    s.put(&lab, "/v1/fields/prod_used", described)
        .await
        .expect(200);
    let mut set = s.get(&lab, "/v1/fieldsets/prod_set").await.body;
    set["fields"] = json!(["prod_used", "lab_only"]);
    s.put(&lab, "/v1/fieldsets/prod_set", set).await.expect(403);
    s.delete(&lab, "/v1/fieldsets/prod_set").await.expect(403);

    // What production doesn't use stays the lab's to change; new entries too.
    let mut lab_field = s.get(&lab, "/v1/fields/lab_only").await.body;
    lab_field["maxLength"] = json!(40);
    s.put(&lab, "/v1/fields/lab_only", lab_field)
        .await
        .expect(200);
    s.post(
        &lab,
        "/v1/fields",
        json!({"id": "lab_new", "dataType": "string", "classification": "UNENCRYPTED"}),
    )
    .await
    .expect(201);
    s.delete(&lab, "/v1/fields/lab_new").await.expect(204);
    // A production admin may make the change (the in-use rules still apply).
    let mut shorter = s.get(&prod, "/v1/fields/prod_used").await.body;
    shorter["maxLength"] = json!(20);
    s.put(&prod, "/v1/fields/prod_used", shorter)
        .await
        .expect(200);
    s.delete(&prod, "/v1/fieldsets/prod_set").await.expect(409);
}

/// Another instance seals a field while this one still caches it as clear: this instance's
/// next write of the field is refused by the store (the dictionary version moved on), and
/// sealed under the new dictionary, never stored in the clear.
#[tokio::test]
async fn a_field_sealed_on_another_instance_is_never_written_in_the_clear() {
    use std::sync::Arc;

    use contextd_core::crypto::Keyring;
    use contextd_core::dictionary::Classification;
    use contextd_core::service::{Context, ContextConfig};
    use contextd_store_sqlite::{SqliteKeyStore, SqliteStore};

    let s = TestServer::start().await;
    let t = s.lab();
    s.post(
        t,
        "/v1/fields",
        json!({"id": "late_sealed", "dataType": "string", "classification": "UNENCRYPTED"}),
    )
    .await
    .expect(201);
    s.post(
        t,
        "/v1/fieldsets",
        json!({"id": "late_set", "fields": ["late_sealed"]}),
    )
    .await
    .expect(201);
    // This instance reads (and caches) the dictionary.
    s.get(t, "/v1/fields/late_sealed").await.expect(200);

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

    let created = s
        .post(
            t,
            "/v1/customers",
            json!({"fieldsets": ["late_set"], "data": {"late_sealed": "secret-after-sealing"}}),
        )
        .await;
    created.expect(201);
    let id = contextd_core::ObjectId::parse(&created.str("/id")).expect("id");
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
