//! Isolation: a token of one org or partition never reads, finds or changes another's objects.

use contextd_client::{Error, Search};
use contextd_proto::object::{ObjectPatch, TimelineParams};
use contextd_proto::Kind;
use serde_json::json;

use crate::support::{input, TestServer};

/// Asserts that a call answered 404.
#[track_caller]
fn not_found<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) {
    assert!(matches!(r, Err(Error::NotFound { .. })), "{what}: {r:?}");
}

/// Asserts that a call was refused as invalid, naming `field`.
#[track_caller]
fn invalid<T: std::fmt::Debug>(r: Result<T, Error>, field: &str, what: &str) {
    assert!(
        matches!(&r, Err(Error::Validation { errors, .. }) if errors.iter().any(|e| e.field == field)),
        "{what}: {r:?}"
    );
}

#[tokio::test]
async fn orgs_and_partitions_are_sealed_off() {
    let s = TestServer::start().await;
    let other = s
        .context
        .create_org("other", &s.url)
        .await
        .expect("second org");
    let a = s.client(s.lab());
    let customer = a
        .create(Kind::Customer, &input(json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Alva", "Context_Mobile_Phone": "5550001111"}})))
        .await
        .expect("customer")
        .id;
    let request_id = a
        .create(Kind::Request, &input(json!({"customerId": customer})))
        .await
        .expect("request")
        .id;

    for (who, token) in [
        ("org B lab", other.lab_admin_token.as_str()),
        ("org B production", other.production_admin_token.as_str()),
        ("org A production", s.prod()),
    ] {
        let c = s.client(token);
        not_found(c.get(Kind::Customer, customer).await, who);
        not_found(c.get(Kind::Request, request_id).await, who);
        not_found(c.timeline(customer, &TimelineParams::default()).await, who);
        let by_phone = c
            .search(
                Kind::Customer,
                &Search::all()
                    .term("Context_Mobile_Phone", "5550001111")
                    .build(),
            )
            .await
            .expect("search by phone");
        assert_eq!(by_phone.total, 0, "{who} found org A's customer by phone");
        let by_id = c
            .search(
                Kind::Customer,
                &Search::all().term("id", customer.to_string()).build(),
            )
            .await
            .expect("search by id");
        assert_eq!(by_id.total, 0, "{who} found org A's customer by id");
        let all = c
            .search(Kind::Request, &Search::all().build())
            .await
            .expect("search all");
        assert_eq!(all.total, 0, "{who} listed org A's requests");
        not_found(
            c.replace(Kind::Customer, customer, &input(json!({"version": 1, "fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Mallory"}})))
                .await,
            who,
        );
        let mut patch = ObjectPatch::new();
        patch.insert("data".into(), json!({"Context_First_Name": "Mallory"}));
        not_found(c.patch(Kind::Customer, customer, &patch, None).await, who);
        // A child pointing at org A's objects is refused.
        invalid(
            c.create(
                Kind::Activity,
                &input(json!({"customerId": customer, "mediaType": "voice"})),
            )
            .await,
            "customerId",
            who,
        );
        invalid(
            c.create(
                Kind::Activity,
                &input(json!({"parentId": request_id, "mediaType": "voice"})),
            )
            .await,
            "parentId",
            who,
        );
        let del = c.delete(Kind::Customer, customer).await;
        assert!(
            matches!(del, Err(Error::NotFound { .. } | Error::Forbidden { .. })),
            "{who} delete: {del:?}"
        );
    }
    // org B's lab flush does not touch org A.
    s.client(&other.lab_admin_token)
        .flush(Kind::Customer)
        .await
        .expect("org B's flush");

    let still = a.get(Kind::Customer, customer).await.expect("still there");
    assert_eq!(still.data["Context_First_Name"], "Alva");
    assert_eq!(still.version, 1, "nothing changed it");
}
