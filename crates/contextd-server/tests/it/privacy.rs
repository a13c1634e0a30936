//! Privacy invariants: no plaintext of ENCRYPTED/PII values in the database files.

use contextd_client::Search;
use contextd_proto::Kind;
use serde_json::json;

use crate::support::{input, TestServer};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file of the data directory (database, WAL, shared memory, key store).
fn raw_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read data dir").flatten() {
        if entry.path().is_file() {
            out.push((
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).expect("read file"),
            ));
        }
    }
    out
}

#[tokio::test]
async fn sealed_values_never_reach_the_database_files() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    let pii_name = "Zebulonia";
    let pii_mail = "zebulonia.q@example.org";
    let pii_phone = "+44 7700 900123";
    let secret_id = "EXT-SECRET-884422";
    let secret_note = "Customer disclosed a medical condition XYZZY";
    let clear_link = "https://clear.example/visible-link-5521";
    let customer = c
        .create(Kind::Customer, &input(json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": pii_name, "Context_Work_Email": pii_mail, "Context_Mobile_Phone": pii_phone, "Context_Customer_External_ID": secret_id, "Context_Preferred_Language": "en_GB"}})))
        .await
        .expect("customer")
        .id;
    c.create(Kind::Activity, &input(json!({"customerId": customer, "mediaType": "chat", "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": secret_note, "Context_POD_Activity_Link": clear_link}})))
        .await
        .expect("activity of the customer");
    // An object with no customer uses the partition key.
    c.create(Kind::Activity, &input(json!({"mediaType": "web", "fieldsets": ["cisco.base.pod"], "data": {"Context_POD_Source_Email": pii_mail}})))
        .await
        .expect("activity without a customer");
    // They are readable through the API…
    let back = c.get(Kind::Customer, customer).await.expect("read back");
    assert_eq!(back.data["Context_First_Name"], pii_name);
    assert_eq!(back.data["Context_Customer_External_ID"], secret_id);
    // …and searchable by blind index.
    let found = c
        .search(
            Kind::Customer,
            &Search::all()
                .term("Context_Work_Email", pii_mail.to_uppercase())
                .build(),
        )
        .await
        .expect("search");
    assert_eq!(found.total, 1);

    let files = raw_files(s.dir.path());
    assert!(
        files.iter().any(|(n, _)| n.ends_with("-wal")),
        "the WAL is scanned too"
    );
    for (name, bytes) in &files {
        for secret in [
            pii_name,
            pii_mail,
            "7700 900123",
            "447700900123",
            secret_id,
            secret_note,
            "XYZZY",
        ] {
            assert!(
                !contains(bytes, secret.as_bytes()),
                "plaintext {secret:?} found in {name}"
            );
            assert!(
                !contains(bytes, secret.to_lowercase().as_bytes()),
                "normalized {secret:?} found in {name}"
            );
        }
    }
    let data_files: Vec<_> = files
        .iter()
        .filter(|(n, _)| n.starts_with("contextd.db"))
        .collect();
    assert!(
        data_files.iter().any(|(_, b)| contains(b, clear_link.as_bytes())),
        "UNENCRYPTED values are stored in the clear (so the scan would see plaintext if it were there)"
    );
    assert!(
        !files
            .iter()
            .filter(|(n, _)| n.starts_with("keys.db"))
            .any(|(_, b)| contains(b, clear_link.as_bytes())),
        "the key store holds keys only"
    );
}
