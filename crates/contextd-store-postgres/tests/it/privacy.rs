//! The privacy scan: no plaintext of a PII or ENCRYPTED value in any column of any table,
//! in either schema — values written through the real core (sealing, blind indexes) onto
//! PostgreSQL, then looked for with SQL in every text, jsonb and bytea column.

use std::sync::Arc;

use contextd_core::crypto::{Keyring, MasterKey};
use contextd_core::object::Kind;
use contextd_core::search::SearchRequest;
use contextd_core::service::{Context, ContextConfig, ObjectInput};
use contextd_core::store::{KeyStore, Store};
use serde_json::json;

use crate::TestDb;

/// Every (schema, table, column, type) of the two schemas that can hold text or bytes.
async fn columns(client: &tokio_postgres::Client) -> Vec<(String, String, String, String)> {
    client
        .query(
            "SELECT c.table_schema::text, c.table_name::text, c.column_name::text, c.data_type::text
             FROM information_schema.columns c
             JOIN information_schema.tables t
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name
             WHERE c.table_schema IN ('contextd', 'contextd_keys') AND t.table_type = 'BASE TABLE'
               AND c.data_type IN ('text', 'character varying', 'character', 'jsonb', 'json',
                                   'bytea', 'ARRAY')
             ORDER BY 1, 2, 3",
            &[],
        )
        .await
        .expect("columns")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// The places (`schema.table.column`) where `needle` occurs, as text or as bytes,
/// case-insensitively.
async fn find(client: &tokio_postgres::Client, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (schema, table, column, ty) in columns(client).await {
        // bytea is searched for the needle's bytes, as given and lowercased; the rest as text.
        let condition = if ty == "bytea" {
            format!(
                "position(convert_to($1, 'UTF8') IN \"{column}\") > 0
                 OR position(convert_to(lower($1), 'UTF8') IN \"{column}\") > 0"
            )
        } else {
            format!("strpos(lower(\"{column}\"::text), lower($1)) > 0")
        };
        let sql = format!("SELECT count(*) FROM \"{schema}\".\"{table}\" WHERE {condition}");
        let n: i64 = client
            .query_one(&sql, &[&needle])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0);
        if n > 0 {
            found.push(format!("{schema}.{table}.{column}"));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_pii_in_any_column_of_either_schema() {
    let Some(db) = TestDb::fresh().await else {
        return;
    };
    let TestDb {
        store,
        keys,
        database,
    } = db;
    let store: Arc<dyn Store> = Arc::new(store);
    let keys: Arc<dyn KeyStore> = Arc::new(keys);
    let context = Context::new(
        store,
        Keyring::new(MasterKey::generate(), keys, 100),
        ContextConfig::default(),
    );
    let org = context
        .create_org("privacy", "http://127.0.0.1")
        .await
        .expect("create org");
    let admin = context
        .authenticate(&org.lab_admin_token)
        .await
        .expect("authenticate");

    let pii_name = "Zebulonia";
    let pii_mail = "zebulonia.q@example.org";
    let pii_phone = "+44 7700 900123";
    let secret_note = "Customer disclosed a medical condition XYZZY";
    let clear_link = "https://clear.example/visible-link-5521";
    let input = |value: serde_json::Value| -> ObjectInput {
        serde_json::from_value(value).expect("object input")
    };
    let customer = context
        .create(
            &admin,
            Kind::Customer,
            input(json!({"fieldsets": ["cisco.base.customer"], "data": {
                "Context_First_Name": pii_name,
                "Context_Work_Email": pii_mail,
                "Context_Mobile_Phone": pii_phone,
            }})),
        )
        .await
        .expect("create customer");
    context
        .create(
            &admin,
            Kind::Activity,
            input(
                json!({"customerId": customer.id.to_string(), "mediaType": "chat",
                "fieldsets": ["cisco.base.pod"],
                "data": {"Context_Notes": secret_note, "Context_POD_Activity_Link": clear_link}}),
            ),
        )
        .await
        .expect("create activity");
    // An object with no customer is sealed under the partition key.
    context
        .create(
            &admin,
            Kind::Activity,
            input(json!({"mediaType": "web", "fieldsets": ["cisco.base.pod"],
                "data": {"Context_POD_Source_Email": pii_mail}})),
        )
        .await
        .expect("create activity");

    // The values are there: searchable by blind index, readable through the core.
    let request: SearchRequest = serde_json::from_value(json!({
        "terms": {"Context_Work_Email": [pii_mail.to_uppercase()]}
    }))
    .expect("search request");
    let found = context
        .search(&admin, Kind::Customer, &request)
        .await
        .expect("search");
    assert_eq!(
        found.total, 1,
        "the customer is found by its email's blind index"
    );
    let back = context
        .get(&admin, Kind::Customer, customer.id)
        .await
        .expect("get");
    assert_eq!(back.data["Context_First_Name"], pii_name);

    let client = database.connect().await;
    let scanned = columns(&client).await;
    for wanted in [
        "contextd.objects.body",
        "contextd.objects.sealed",
        "contextd.tokens.token",
        "contextd_keys.customer_keys.bytes",
    ] {
        assert!(
            scanned
                .iter()
                .any(|(s, t, c, _)| format!("{s}.{t}.{c}") == wanted),
            "the scan covers {wanted}"
        );
    }
    assert!(
        find(&client, clear_link).await == vec!["contextd.objects.body".to_owned()],
        "UNENCRYPTED values are stored in the clear, so the scan would see plaintext if it were there"
    );
    for secret in [
        pii_name,
        pii_mail,
        "7700 900123",
        "447700900123",
        secret_note,
        "XYZZY",
    ] {
        let places = find(&client, secret).await;
        assert!(
            places.is_empty(),
            "plaintext {secret:?} found in {places:?}"
        );
    }
}
