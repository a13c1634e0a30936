//! Isolation: a token of one org or partition never reads, finds or changes another's objects.

use reqwest::Method;
use serde_json::json;

use crate::support::TestServer;

#[tokio::test]
async fn orgs_and_partitions_are_sealed_off() {
    let s = TestServer::start().await;
    let other = s
        .context
        .create_org("other", &s.url)
        .await
        .expect("second org");
    let a = s.lab();
    let customer = s
        .customer(
            a,
            json!({"Context_First_Name": "Alva", "Context_Mobile_Phone": "5550001111"}),
        )
        .await;
    let request = s
        .post(a, "/v1/requests", json!({"customerId": customer}))
        .await;
    request.expect(201);
    let request_id = request.str("/id");

    for (who, token) in [
        ("org B lab", other.lab_admin_token.as_str()),
        ("org B production", other.production_admin_token.as_str()),
        ("org A production", s.prod()),
    ] {
        let path = format!("/v1/customers/{customer}");
        s.get(token, &path).await.expect(404);
        s.get(token, &format!("/v1/requests/{request_id}"))
            .await
            .expect(404);
        s.get(token, &format!("/v1/customers/{customer}/timeline"))
            .await
            .expect(404);
        let by_phone = s
            .post(
                token,
                "/v1/customers/search",
                json!({"terms": {"Context_Mobile_Phone": ["5550001111"]}}),
            )
            .await;
        by_phone.expect(200);
        assert_eq!(
            by_phone.at("/total"),
            0,
            "{who} found org A's customer by phone"
        );
        let by_id = s
            .post(
                token,
                "/v1/customers/search",
                json!({"terms": {"id": [customer]}}),
            )
            .await;
        assert_eq!(by_id.at("/total"), 0, "{who} found org A's customer by id");
        let all = s.post(token, "/v1/requests/search", json!({})).await;
        assert_eq!(all.at("/total"), 0, "{who} listed org A's requests");
        s.put(token, &path, json!({"version": 1, "fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Mallory"}})).await.expect(404);
        s.patch(
            token,
            &path,
            json!({"data": {"Context_First_Name": "Mallory"}}),
        )
        .await
        .expect(404);
        // A child pointing at org A's objects is refused.
        s.post(
            token,
            "/v1/activities",
            json!({"customerId": customer, "mediaType": "voice"}),
        )
        .await
        .expect(400);
        s.post(
            token,
            "/v1/activities",
            json!({"parentId": request_id, "mediaType": "voice"}),
        )
        .await
        .expect(400);
        let del = s.call(Method::DELETE, &path, Some(token), None).await;
        assert!(
            del.status == 404 || del.status == 403,
            "{who} delete: {}",
            del.status
        );
    }
    // org B's lab flush does not touch org A.
    s.post(&other.lab_admin_token, "/v1/customers/flush", json!({}))
        .await
        .expect(202);

    let still = s.get(a, &format!("/v1/customers/{customer}")).await;
    still.expect(200);
    assert_eq!(still.str("/data/Context_First_Name"), "Alva");
    assert_eq!(still.at("/version"), 1, "nothing changed it");
}
