//! Concurrency: many writers to one customer lose no update and see no 5xx.

use contextd_client::Search;
use contextd_proto::dictionary::{Field, FieldSet};
use contextd_proto::object::{ObjectPatch, TimelineParams};
use contextd_proto::Kind;
use serde_json::json;

use crate::support::{input, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_no_update() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    const N: usize = 24;
    for i in 0..N {
        let field: Field = serde_json::from_value(json!({"id": format!("slot{i}"), "dataType": "string", "classification": if i % 2 == 0 { "PII" } else { "UNENCRYPTED" }, "searchable": true})).expect("a Field");
        c.create_field(&field).await.expect("field");
    }
    let fields: Vec<String> = (0..N).map(|i| format!("slot{i}")).collect();
    let set: FieldSet =
        serde_json::from_value(json!({"id": "slots", "fields": fields})).expect("a FieldSet");
    c.create_fieldset(&set).await.expect("field set");
    let customer = c
        .create(Kind::Customer, &input(json!({"fieldsets": ["slots", "cisco.base.customer"], "data": {"Context_First_Name": "Kai"}})))
        .await
        .expect("customer")
        .id;

    // N merge patches, each setting its own field, all at once; plus N activity creates.
    let mut tasks = Vec::new();
    for i in 0..N {
        let c1 = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut patch = ObjectPatch::new();
            patch.insert(
                "data".into(),
                json!({format!("slot{i}"): format!("value-{i}")}),
            );
            c1.patch(Kind::Customer, customer, &patch, None)
                .await
                .map(|_| ())
        }));
        let c2 = c.clone();
        tasks.push(tokio::spawn(async move {
            c2.create(
                Kind::Activity,
                &input(
                    json!({"customerId": customer, "mediaType": "chat", "tags": [format!("t{i}")]}),
                ),
            )
            .await
            .map(|_| ())
        }));
    }
    for task in tasks {
        let result = task.await.expect("task");
        assert!(result.is_ok(), "a concurrent write failed: {result:?}");
    }
    let after = c.get(Kind::Customer, customer).await.expect("read back");
    for i in 0..N {
        assert_eq!(
            after.data.get(&format!("slot{i}")),
            Some(&json!(format!("value-{i}"))),
            "update {i} was lost"
        );
    }
    assert_eq!(after.data["Context_First_Name"], "Kai");
    assert_eq!(after.version, 1 + N as i64, "one version per write");
    let timeline = c
        .timeline(
            customer,
            &TimelineParams {
                limit: Some(200),
                ..TimelineParams::default()
            },
        )
        .await
        .expect("timeline");
    assert_eq!(timeline.total, N as u64);
    // Each patched value is findable at once.
    let found = c
        .search(
            Kind::Customer,
            &Search::all().term("slot4", "VALUE-4").build(),
        )
        .await
        .expect("search");
    assert_eq!(found.total, 1);
}
