//! `contextd export` and `contextd import` between two real servers: the round trip gives the
//! same objects on SQLite and on PostgreSQL, running an import again changes nothing, links
//! outside the file are reported, and a JSON array of the original wire shape is taken too.

use std::process::Output;

use reqwest::Client;
use serde_json::{json, Value};

use crate::cli::ok;
use crate::postgres::{TestDatabase, URL_VAR};
use crate::{contextd, serve_fresh, terminate, Served};

/// A served instance stopped when dropped, also when an assertion fails.
struct Running(Served);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = terminate(&mut self.0.child);
    }
}

/// Runs a client command against `server` with its lab admin token.
fn cli(server: &Served, dir: &std::path::Path, args: &[&str]) -> Output {
    contextd(dir)
        .env_remove("CONTEXTD_CONFIG")
        .env_remove("CONTEXTD_CONNECTION_DATA")
        .env("CONTEXTD_URL", &server.base)
        .env("CONTEXTD_TOKEN", &server.lab)
        .args(args)
        .output()
        .expect("run contextd")
}

async fn post(http: &Client, server: &Served, path: &str, body: Value) -> Value {
    let r = http
        .post(format!("{}{path}", server.base))
        .bearer_auth(&server.lab)
        .json(&body)
        .send()
        .await
        .expect("post");
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.expect("json")
}

/// A partition with something of everything: a field and a field set of its own, customers
/// with PII, a closed request with an activity, a comment and a feedback, a web visit of
/// nobody yet, tags and contributors.
async fn fill(http: &Client, s: &Served) -> usize {
    post(
        http,
        s,
        "/v1/fields",
        json!({"id": "Loyalty_Tier", "dataType": "string",
        "classification": "UNENCRYPTED", "searchable": true,
        "translations": {"en-US": "Loyalty tier"}}),
    )
    .await;
    post(
        http,
        s,
        "/v1/fieldsets",
        json!({"id": "acme.loyalty",
        "fields": ["Loyalty_Tier"]}),
    )
    .await;
    let ada = post(http, s, "/v1/customers", json!({"fieldsets": ["cisco.base.customer", "acme.loyalty"],
        "data": {"Context_First_Name": "Ada", "Context_Mobile_Phone": "+1 555 0101", "Loyalty_Tier": "gold"},
        "tags": ["vip"]}))
    .await;
    let ada = ada["id"].as_str().expect("id").to_owned();
    post(
        http,
        s,
        "/v1/customers",
        json!({"fieldsets": ["cisco.base.customer"],
        "data": {"Context_First_Name": "Grace", "Context_Work_Email": "grace@example.com"}}),
    )
    .await;
    let case = post(
        http,
        s,
        "/v1/requests",
        json!({"customerId": ada,
        "fieldsets": ["cisco.base.request"], "data": {"Context_Title": "Router fault"}}),
    )
    .await;
    let case = case["id"].as_str().expect("id").to_owned();
    let call = post(http, s, "/v1/activities", json!({"customerId": ada, "parentId": case,
        "mediaType": "voice", "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": "called twice"}}))
    .await;
    let call = call["id"].as_str().expect("id");
    post(
        http,
        s,
        "/v1/details",
        json!({"parentId": call, "detailType": "comment",
        "fieldsets": ["cisco.base.comment"], "data": {"Context_Comment": "promised a callback"}}),
    )
    .await;
    post(
        http,
        s,
        "/v1/details",
        json!({"parentId": case, "detailType": "feedback",
        "fieldsets": ["cisco.base.rating"], "data": {"cccRatingPoints": 4}}),
    )
    .await;
    post(
        http,
        s,
        "/v1/activities",
        json!({"mediaType": "web",
        "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": "pricing page"}}),
    )
    .await;
    let r = http
        .patch(format!("{}/v1/requests/{case}", s.base))
        .bearer_auth(&s.lab)
        .header("content-type", "application/merge-patch+json")
        .json(&json!({"state": "closed"}))
        .send()
        .await
        .expect("close");
    assert!(r.status().is_success());
    // Two customers, a request, two activities, two details.
    7
}

/// The lines of an export other than its header, parsed and sorted; the dictionary's without
/// `lastUpdated` (the time the target made them).
fn body_of(export: &str) -> Vec<Value> {
    let mut lines: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .filter(|v: &Value| v["type"] != "export")
        .map(|mut v: Value| {
            if v["type"] == "field" || v["type"] == "fieldset" {
                v.as_object_mut().map(|o| o.remove("lastUpdated"));
            }
            v
        })
        .collect();
    lines.sort_by_key(|v| v.to_string());
    lines
}

async fn round_trip(target_env: &[(&str, &str)]) {
    let (dir_a, dir_b, work) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let a = Running(serve_fresh(dir_a.path(), &[]).await);
    let b = Running(serve_fresh(dir_b.path(), target_env).await);
    let http = Client::new();
    let objects = fill(&http, &a.0).await;

    let first = ok(&cli(&a.0, work.path(), &["export"]));
    let header: Value =
        serde_json::from_str(first.lines().next().expect("a header")).expect("JSON");
    assert_eq!(header["type"], "export");
    assert_eq!(header["partition"], "lab");
    // Dictionary first, then customers, requests, activities, details: links point up.
    let ranks: Vec<usize> = first
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .map(|v| match v["type"].as_str() {
            Some("field" | "fieldset") => 0,
            Some("customer") => 1,
            Some("request") => 2,
            Some("activity") => 3,
            _ => 4,
        })
        .collect();
    assert!(ranks.is_sorted(), "{ranks:?}");
    assert_eq!(ranks.len(), objects + 2);
    let file = work.path().join("export.jsonl");
    std::fs::write(&file, &first).expect("write");

    let path = file.to_str().expect("path");
    let imported: Value =
        serde_json::from_str(ok(&cli(&b.0, work.path(), &["import", path, "--json"])).trim())
            .expect("a summary");
    assert_eq!(imported["created"], objects, "{imported}");
    assert_eq!(imported["failed"], 0);
    assert_eq!(imported["linksOutside"], 0);
    assert_eq!(imported["fieldsCreated"], 1);
    assert_eq!(imported["fieldsetsCreated"], 1);
    let again: Value =
        serde_json::from_str(ok(&cli(&b.0, work.path(), &["import", path, "--json"])).trim())
            .expect("a summary");
    assert_eq!(
        (
            &again["created"],
            &again["existing"],
            &again["fieldsExisting"]
        ),
        (&json!(0), &json!(objects), &json!(1)),
        "running it again changes nothing"
    );

    // Two exports concatenated, with blank lines: headers and dictionary lines amid objects,
    // every id twice.
    let twice = work.path().join("twice.jsonl");
    std::fs::write(&twice, format!("{first}\n\n{first}")).expect("write");
    let doubled: Value = serde_json::from_str(
        ok(&cli(
            &b.0,
            work.path(),
            &["import", twice.to_str().expect("path"), "--json"],
        ))
        .trim(),
    )
    .expect("a summary");
    assert_eq!(
        (
            &doubled["created"],
            &doubled["existing"],
            &doubled["failed"]
        ),
        (&json!(0), &json!(2 * objects), &json!(0)),
        "{doubled}"
    );
    // A field of the file that exists here under another classification stops the import.
    let clash = work.path().join("clash.jsonl");
    std::fs::write(
        &clash,
        json!({"type": "field", "id": "Loyalty_Tier", "dataType": "string", "classification": "PII"})
            .to_string(),
    )
    .expect("write");
    let refused = cli(
        &b.0,
        work.path(),
        &["import", clash.to_str().expect("path")],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Loyalty_Tier"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let second = ok(&cli(&b.0, work.path(), &["export"]));
    assert_eq!(body_of(&second), body_of(&first), "the same objects");
    let found = post(
        &http,
        &b.0,
        "/v1/customers/search",
        json!({"terms": {"Context_Mobile_Phone": "15550101"}}),
    )
    .await;
    assert_eq!(found["total"], 1, "PII imported is searchable: {found}");

    // Links outside the file: one to a request the target holds, one to nothing.
    let case = body_of(&first)
        .into_iter()
        .find(|v| v["type"] == "request")
        .expect("a request");
    let outside = [
        json!({"type": "activity", "id": uuid::Uuid::new_v4(), "parentId": case["id"],
            "customerId": case["customerId"], "mediaType": "sms", "fieldsets": [], "data": {}}),
        json!({"type": "activity", "id": uuid::Uuid::new_v4(), "parentId": uuid::Uuid::new_v4(),
            "mediaType": "sms", "fieldsets": [], "data": {}}),
    ];
    let lines: Vec<String> = outside.iter().map(Value::to_string).collect();
    let partial = work.path().join("partial.jsonl");
    std::fs::write(&partial, lines.join("\n")).expect("write");
    let out = cli(
        &b.0,
        work.path(),
        &["import", partial.to_str().expect("path"), "--json"],
    );
    assert_eq!(out.status.code(), Some(1), "a failure is an error");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("a summary");
    assert_eq!(
        (
            &summary["created"],
            &summary["failed"],
            &summary["linksOutside"]
        ),
        (&json!(1), &json!(1), &json!(2))
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2: activity") && stderr.contains("parentId"),
        "{stderr}"
    );
    assert!(stderr.contains("links outside the file"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_export_gives_the_same_objects_on_sqlite() {
    round_trip(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_export_gives_the_same_objects_on_postgres() {
    let Ok(admin_url) = std::env::var(URL_VAR) else {
        eprintln!("PostgreSQL tests skipped: {URL_VAR} is not set");
        return;
    };
    let database = TestDatabase::create(admin_url);
    round_trip(&[("CONTEXTD_DATABASE_URL", database.url.as_str())]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_takes_an_array_of_objects_in_the_original_wire_shape() {
    let (dir, work) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let s = Running(serve_fresh(dir.path(), &[]).await);
    let customer = uuid::Uuid::new_v4();
    let pod = uuid::Uuid::new_v4();
    // As the original's search answered: pods before their customer, times in milliseconds,
    // a reference on another host.
    let array = json!([
        {"type": "pod", "id": pod, "state": "active", "mediaType": "chat",
         "customerRefUrl": format!("https://context.example.com/context/v1/customer/{customer}"),
         "fieldsets": ["cisco.base.pod"],
         "dataElements": [{"Context_Notes": "asked about billing", "type": "string"}],
         "tags": [], "contributors": [], "created": 1_546_300_800_000_i64,
         "lastUpdated": 1_546_300_900_000_i64, "refUrl": format!("/context/v1/pod/{pod}")},
        {"type": "customer", "id": customer,
         "fieldsets": ["cisco.base.customer"],
         "dataElements": [{"Context_First_Name": "Lin", "type": "string"}],
         "created": "2019-01-01T00:00:00Z", "lastUpdated": "2019-01-01T00:00:00Z"}
    ]);
    let file = work.path().join("original.json");
    std::fs::write(&file, array.to_string()).expect("write");
    let out = cli(
        &s.0,
        work.path(),
        &["import", file.to_str().expect("path"), "--json"],
    );
    let summary: Value = serde_json::from_str(ok(&out).trim()).expect("a summary");
    assert_eq!(
        (&summary["created"], &summary["failed"]),
        (&json!(2), &json!(0))
    );
    let read: Value = Client::new()
        .get(format!("{}/context/v1/pod/{pod}", s.0.base))
        .bearer_auth(&s.0.lab)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(read["customerId"], customer.to_string());
    assert_eq!(read["lastUpdated"], "2019-01-01T00:01:40.000Z");
    assert_eq!(
        read["dataElements"][0]["Context_Notes"],
        "asked about billing"
    );
}
