//! Concurrency: many writers to one customer lose no update and see no 5xx.

use std::sync::Arc;

use serde_json::json;

use crate::support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_no_update() {
    let s = Arc::new(TestServer::start().await);
    let t = s.lab().to_owned();
    const N: usize = 24;
    for i in 0..N {
        s.post(&t, "/v1/fields", json!({"id": format!("slot{i}"), "dataType": "string", "classification": if i % 2 == 0 { "PII" } else { "UNENCRYPTED" }, "searchable": true}))
            .await
            .expect(201);
    }
    let fields: Vec<String> = (0..N).map(|i| format!("slot{i}")).collect();
    s.post(
        &t,
        "/v1/fieldsets",
        json!({"id": "slots", "fields": fields}),
    )
    .await
    .expect(201);
    let created = s.post(&t, "/v1/customers", json!({"fieldsets": ["slots", "cisco.base.customer"], "data": {"Context_First_Name": "Kai"}})).await;
    created.expect(201);
    let customer = created.str("/id");

    // N merge patches, each setting its own field, all at once; plus N activity creates.
    let mut tasks = Vec::new();
    for i in 0..N {
        let (s1, t1, c1) = (s.clone(), t.clone(), customer.clone());
        tasks.push(tokio::spawn(async move {
            let r = s1
                .patch(
                    &t1,
                    &format!("/v1/customers/{c1}"),
                    json!({"data": {format!("slot{i}"): format!("value-{i}")}}),
                )
                .await;
            r.status.as_u16()
        }));
        let (s2, t2, c) = (s.clone(), t.clone(), customer.clone());
        tasks.push(tokio::spawn(async move {
            let r = s2
                .post(
                    &t2,
                    "/v1/activities",
                    json!({"customerId": c, "mediaType": "chat", "tags": [format!("t{i}")]}),
                )
                .await;
            r.status.as_u16()
        }));
    }
    for task in tasks {
        let status = task.await.expect("task");
        assert!(
            status == 200 || status == 201,
            "a concurrent write failed with {status}"
        );
    }
    let after = s.get(&t, &format!("/v1/customers/{customer}")).await;
    after.expect(200);
    for i in 0..N {
        assert_eq!(
            after.at(&format!("/data/slot{i}")),
            &json!(format!("value-{i}")),
            "update {i} was lost"
        );
    }
    assert_eq!(after.at("/data/Context_First_Name"), "Kai");
    assert_eq!(
        after.at("/version"),
        &json!(1 + N as i64),
        "one version per write"
    );
    let timeline = s
        .get(&t, &format!("/v1/customers/{customer}/timeline?limit=200"))
        .await;
    assert_eq!(timeline.at("/total"), &json!(N));
    // Each patched value is findable at once.
    let found = s
        .post(
            &t,
            "/v1/customers/search",
            json!({"terms": {"slot4": ["VALUE-4"]}}),
        )
        .await;
    assert_eq!(found.at("/total"), 1);
}
