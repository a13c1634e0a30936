//! Retention: a production admin sets an organization's rules; the job (run here on the
//! server's own `Context` with an injected clock) deletes what they let go in both
//! partitions — never an active request, a customer, or what a `never` rule keeps — with an
//! `object.deleted` event per object and a `retention.delete` audit entry per page.

use chrono::{Duration, Utc};
use contextd_client::Client;
use contextd_core::store::StoredEvent;
use contextd_core::{Partition, Scope};
use contextd_proto::access::Role;
use contextd_proto::events::EventType;
use contextd_proto::retention::RetentionRules;
use contextd_proto::{Kind, ObjectId};
use serde_json::{json, Value};

use crate::support::{forbidden, input, invalid, key, new_customer, not_found, patch, TestServer};

fn rules(rules: Value) -> RetentionRules {
    serde_json::from_value(json!({ "rules": rules })).expect("retention rules")
}

#[tokio::test]
async fn admins_set_the_rules_others_may_not_and_a_wrong_rule_is_named() {
    let s = TestServer::start().await;
    let prod = s.client(s.prod());
    let lab = s.client(s.lab());
    assert_eq!(
        prod.retention().await.expect("retention"),
        RetentionRules::default(),
        "no rules until an admin sets them"
    );

    let stored = prod
        .set_retention(&rules(json!([
            {"kind": "pod", "mediaType": "web", "afterDays": 90},
            {"fieldset": "cisco.base.comment", "afterDays": 730},
            {"kind": "detail", "never": true},
        ])))
        .await
        .expect("set retention");
    assert_eq!(
        serde_json::to_value(&stored).expect("json"),
        json!({"rules": [
            {"kind": "activity", "mediaType": "web", "afterDays": 90},
            {"fieldset": "cisco.base.comment", "afterDays": 730},
            {"kind": "detail", "never": true},
        ]}),
        "the rules are answered as stored, by their canonical names"
    );
    assert_eq!(
        lab.retention().await.expect("retention"),
        stored,
        "the rules are the organization's: both partitions see them"
    );
    forbidden(lab.set_retention(&rules(json!([]))).await);
    let (_, agent) = key(&prod, Role::Agent).await;
    let agent = s.client(&agent);
    forbidden(agent.retention().await);
    forbidden(agent.set_retention(&rules(json!([]))).await);

    invalid(
        prod.set_retention(&rules(json!([
            {"kind": "activity", "afterDays": 90},
            {"kind": "customer", "afterDays": 1},
        ])))
        .await,
        "rules[1].kind",
    );
    let refused = s
        .put(
            s.prod(),
            "/v1/retention",
            json!({"rules": [
                {"kind": "activity", "afterDays": 90},
                {"kind": "request", "afterDays": 30},
                {"kind": "detail", "afterDays": 0},
                {"fieldset": "no.such.set", "never": true},
            ]}),
        )
        .await;
    refused.expect(400);
    let named: Vec<&str> = refused.body["errors"]
        .as_array()
        .expect("problem JSON lists the errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(named, ["rules[2].afterDays", "rules[3].fieldset"]);
    s.put(
        s.prod(),
        "/v1/retention",
        json!({"rules": [{"after": "90d"}]}),
    )
    .await
    .expect(400);
    assert_eq!(
        prod.retention().await.expect("retention"),
        stored,
        "a refused change changes nothing"
    );
    let audit = s.get(s.prod(), "/v1/audit?action=retention.set").await;
    audit.expect(200);
    assert!(
        audit.body["items"]
            .as_array()
            .expect("audit items")
            .iter()
            .any(|e| e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("rules[0]: activity mediaType=web afterDays=90"))),
        "the change is audited with the rules it set: {}",
        audit.body
    );
}

/// What one partition holds for the retention run.
struct Journey {
    scope: Scope,
    customer: ObjectId,
    web: ObjectId,
    web_kept: ObjectId,
    voice: ObjectId,
    open_request: ObjectId,
    closed_request: ObjectId,
    comment: ObjectId,
}

impl Journey {
    async fn create(s: &TestServer, partition: Partition, token: &str) -> Self {
        let c = s.client(token);
        let customer = new_customer(&c, json!({"Context_First_Name": "Rita"})).await;
        let open_request = new_object(
            &c,
            Kind::Request,
            json!({"customerId": customer, "fieldsets": ["cisco.base.request"], "data": {"Context_Title": "Open case"}}),
        )
        .await;
        let closed_request = new_object(
            &c,
            Kind::Request,
            json!({"customerId": customer, "fieldsets": ["cisco.base.request"], "data": {"Context_Title": "Done"}}),
        )
        .await;
        c.patch(
            Kind::Request,
            closed_request,
            &patch(json!({"state": "closed"})),
            None,
        )
        .await
        .expect("close");
        let web = new_object(
            &c,
            Kind::Activity,
            json!({"customerId": customer, "mediaType": "web"}),
        )
        .await;
        let web_kept = new_object(
            &c,
            Kind::Activity,
            json!({"customerId": customer, "mediaType": "web", "fieldsets": ["cisco.base.pod"],
                   "data": {"Context_POD_Activity_Link": "https://shop.example/service"}}),
        )
        .await;
        let voice = new_object(
            &c,
            Kind::Activity,
            json!({"customerId": customer, "parentId": open_request, "mediaType": "voice"}),
        )
        .await;
        let comment = new_object(
            &c,
            Kind::Detail,
            json!({"parentId": voice, "detailType": "comment", "fieldsets": ["cisco.base.comment"],
                   "data": {"Context_Comment": "called about the tyres"}}),
        )
        .await;
        Self {
            scope: Scope {
                org: s.org.org_id,
                partition,
            },
            customer,
            web,
            web_kept,
            voice,
            open_request,
            closed_request,
            comment,
        }
    }

    /// The outbox position of the partition now.
    async fn mark(&self, s: &TestServer) -> u64 {
        let store = s.context.store();
        store.publish_events().await.expect("publish");
        store
            .last_event_id(Some(self.scope))
            .await
            .expect("last event id")
    }

    /// The ids of the `object.deleted` events of the partition after `mark`.
    async fn deleted_since(&self, s: &TestServer, mark: u64) -> Vec<ObjectId> {
        let store = s.context.store();
        store.publish_events().await.expect("publish");
        let events: Vec<StoredEvent> = store
            .events_after(Some(self.scope), mark, 500)
            .await
            .expect("events");
        let mut ids: Vec<ObjectId> = events
            .iter()
            .filter(|e| e.event.event_type == EventType::Deleted)
            .inspect(|e| {
                assert_eq!(
                    e.event.contributor.id, "contextd",
                    "retention deletes as contextd itself"
                );
            })
            .map(|e| e.event.object_id)
            .collect();
        ids.sort();
        ids
    }
}

async fn new_object(c: &Client, kind: Kind, body: Value) -> ObjectId {
    c.create(kind, &input(body))
        .await
        .unwrap_or_else(|e| panic!("creating a {kind}: {e}"))
        .id
}

async fn exists(c: &Client, kind: Kind, id: ObjectId) {
    c.get(kind, id)
        .await
        .unwrap_or_else(|e| panic!("{kind} {id} should be kept: {e}"));
}

#[tokio::test]
async fn expired_objects_go_in_both_partitions_with_events_and_audit() {
    let s = TestServer::start().await;
    let prod = s.client(s.prod());
    prod.set_retention(&rules(json!([
        {"kind": "activity", "mediaType": "web", "afterDays": 90},
        {"kind": "request", "afterDays": 30},
        {"fieldset": "cisco.base.pod", "never": true},
        {"fieldset": "cisco.base.comment", "afterDays": 1},
        {"kind": "detail", "never": true},
    ])))
    .await
    .expect("set retention");
    let journeys = [
        Journey::create(&s, Partition::Lab, s.lab()).await,
        Journey::create(&s, Partition::Production, s.prod()).await,
    ];
    let mut marks = Vec::new();
    for j in &journeys {
        marks.push(j.mark(&s).await);
    }

    let today = s
        .context
        .apply_retention(Utc::now())
        .await
        .expect("retention today");
    assert_eq!(today.total(), 0, "nothing is old enough today: {today:?}");
    let in_29_days = s
        .context
        .apply_retention(Utc::now() + Duration::days(29))
        .await
        .expect("retention in 29 days");
    assert_eq!(
        in_29_days.total(),
        0,
        "no period has passed yet (the comment's is shorter, but details are kept forever): \
         {in_29_days:?}"
    );

    let report = s
        .context
        .apply_retention(Utc::now() + Duration::days(91))
        .await
        .expect("retention in 91 days");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.total(), 4, "{report:?}");
    for j in &journeys {
        assert!(
            report.deleted.contains(&(j.scope, 2)),
            "the web activity and the closed request of {:?} are deleted: {report:?}",
            j.scope.partition
        );
    }

    for (j, token, mark) in [
        (&journeys[0], s.lab(), marks[0]),
        (&journeys[1], s.prod(), marks[1]),
    ] {
        let c = s.client(token);
        not_found(c.get(Kind::Activity, j.web).await);
        not_found(c.get(Kind::Request, j.closed_request).await);
        exists(&c, Kind::Activity, j.voice).await;
        exists(&c, Kind::Activity, j.web_kept).await;
        exists(&c, Kind::Request, j.open_request).await;
        exists(&c, Kind::Detail, j.comment).await;
        exists(&c, Kind::Customer, j.customer).await;

        let mut want = vec![j.web, j.closed_request];
        want.sort();
        assert_eq!(
            j.deleted_since(&s, mark).await,
            want,
            "an object.deleted event per object deleted in {:?}",
            j.scope.partition
        );

        let audit = s.get(token, "/v1/audit?action=retention.delete").await;
        audit.expect(200);
        let details: Vec<&str> = audit.body["items"]
            .as_array()
            .expect("audit items")
            .iter()
            .filter_map(|e| e["detail"].as_str())
            .collect();
        for id in [j.web, j.closed_request] {
            assert!(
                details.iter().any(|d| d.contains(&id.to_string())),
                "the audit log of {:?} names {id}: {details:?}",
                j.scope.partition
            );
        }
        assert!(
            details.iter().all(|d| !d.contains("Rita")),
            "audit entries carry ids, never values"
        );
    }

    let again = s
        .context
        .apply_retention(Utc::now() + Duration::days(91))
        .await
        .expect("retention again");
    assert_eq!(
        again.total(),
        0,
        "a second run finds nothing left: {again:?}"
    );
}

#[tokio::test]
async fn without_rules_or_with_only_never_rules_nothing_is_deleted() {
    let s = TestServer::start().await;
    let lab = Journey::create(&s, Partition::Lab, s.lab()).await;
    let far = Utc::now() + Duration::days(40_000);
    assert_eq!(
        s.context
            .apply_retention(far)
            .await
            .expect("retention")
            .total(),
        0
    );
    s.client(s.prod())
        .set_retention(&rules(json!([{"kind": "activity", "never": true}])))
        .await
        .expect("set retention");
    assert_eq!(
        s.context
            .apply_retention(far)
            .await
            .expect("retention")
            .total(),
        0
    );
    exists(&s.client(s.lab()), Kind::Activity, lab.web).await;
}
