//! Builders and helpers shared by the checks.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use chrono::{DateTime, Duration, Utc};
use contextd_core::ids::{ObjectId, OrgId, Partition, Scope};
use contextd_core::object::{Contributor, ContributorType, DetailType, Kind, MediaType, State};
use contextd_core::store::{
    Change, Condition, ObjectWrite, PagePosition, ParentCheck, SearchPlan, Store, StoreError,
    StoredObject, Token,
};
use contextd_proto::events::EventType;
use uuid::Uuid;

/// The lab partition of a new, random org.
pub fn lab() -> Scope {
    Scope {
        org: OrgId::new(),
        partition: Partition::Lab,
    }
}

/// The same org's other partition.
pub fn other_partition(scope: Scope) -> Scope {
    let partition = match scope.partition {
        Partition::Lab => Partition::Production,
        Partition::Production => Partition::Lab,
    };
    Scope {
        org: scope.org,
        partition,
    }
}

/// The current time, whole milliseconds (what every backend stores).
pub fn now() -> DateTime<Utc> {
    contextd_core::time::now_ms()
}

/// `base` plus `ms` milliseconds.
pub fn at(base: DateTime<Utc>, ms: i64) -> DateTime<Utc> {
    base + Duration::milliseconds(ms)
}

/// A random blind-index token.
pub fn token() -> Token {
    Token(Uuid::new_v4().into_bytes())
}

/// A bare object: active, version 1, all three times equal to `t`, no data; activities get
/// `chat`, details `comment`.
pub fn object(scope: Scope, kind: Kind, t: DateTime<Utc>) -> StoredObject {
    StoredObject {
        id: ObjectId::new(),
        scope,
        kind,
        customer_id: None,
        parent_id: None,
        state: State::Active,
        media_type: (kind == Kind::Activity).then_some(MediaType::Chat),
        detail_type: (kind == Kind::Detail).then_some(DetailType::Comment),
        fieldsets: Vec::new(),
        clear: BTreeMap::new(),
        sealed: BTreeMap::new(),
        tags: Vec::new(),
        contributors: Vec::new(),
        created: t,
        last_updated: t,
        touched: t,
        version: 1,
        key_version: 0,
    }
}

/// An object with every property set, to prove nothing is lost on the way through the store.
pub fn rich_object(scope: Scope, kind: Kind, t: DateTime<Utc>) -> StoredObject {
    let mut o = object(scope, kind, at(t, -2_000));
    o.last_updated = at(t, -1_000);
    o.touched = t;
    o.customer_id = Some(ObjectId::new());
    o.parent_id = Some(ObjectId::new());
    o.fieldsets = vec!["cisco.base.pod".into(), "custom.set".into()];
    o.clear = BTreeMap::from([
        (
            "Context_POD_Activity_Link".to_owned(),
            serde_json::json!("https://example.test/a?b=c"),
        ),
        ("points".to_owned(), serde_json::json!(7)),
        ("ratio".to_owned(), serde_json::json!(0.25)),
        ("visible".to_owned(), serde_json::json!(true)),
        ("unicode".to_owned(), serde_json::json!("Zoë — 東京 ✓")),
    ]);
    o.key_version = 3;
    o.sealed = BTreeMap::from([
        ("Context_Notes".to_owned(), vec![0, 1, 2, 255, 254, 0]),
        ("Context_POD_Source_Phone".to_owned(), (0..=255u8).collect()),
        ("empty".to_owned(), Vec::new()),
    ]);
    o.tags = vec!["vip".into(), "motorbike".into(), "vip2".into()];
    o.contributors = vec![
        Contributor {
            id: "agent-7".into(),
            kind: ContributorType::User,
        },
        Contributor {
            id: Uuid::new_v4().to_string(),
            kind: ContributorType::Machine,
        },
    ];
    o.version = 3;
    o
}

/// An insert of `object` with `tokens`.
pub fn insert_write(object: &StoredObject, tokens: &[Token]) -> ObjectWrite {
    ObjectWrite {
        object: object.clone(),
        tokens: tokens.to_vec(),
        expected_version: None,
        parent_check: None,
        customer_check: None,
        dictionary_version: None,
        change: Change {
            event_type: EventType::Created,
            by: by(),
            history: false,
        },
    }
}

/// The contributor of the checks' changes.
pub fn by() -> Contributor {
    Contributor {
        id: "conformance".into(),
        kind: ContributorType::User,
    }
}

/// An update of `object` expecting the stored version `expected`.
pub fn update_write(object: &StoredObject, tokens: &[Token], expected: i64) -> ObjectWrite {
    ObjectWrite {
        expected_version: Some(expected),
        ..insert_write(object, tokens)
    }
}

/// A write of `object` under a parent check.
pub fn child_write(
    object: &StoredObject,
    parent: ObjectId,
    must_be_request: bool,
    active_since: DateTime<Utc>,
) -> ObjectWrite {
    ObjectWrite {
        parent_check: Some(ParentCheck {
            id: parent,
            must_be_request,
            active_since,
            closed_allowed: false,
        }),
        ..insert_write(object, &[])
    }
}

/// Inserts `object` with `tokens`; panics if the store refuses.
pub async fn insert(store: &dyn Store, object: &StoredObject, tokens: &[Token]) {
    if let Err(e) = store.write_object(&insert_write(object, tokens)).await {
        panic!("inserting {:?} {} failed: {e}", object.kind, object.id);
    }
}

/// Reads an object that must exist.
pub async fn read(store: &dyn Store, scope: Scope, id: ObjectId) -> StoredObject {
    match store.object(scope, id).await {
        Ok(Some(o)) => o,
        other => panic!("object {id} should exist in {scope:?}, got {other:?}"),
    }
}

/// Asserts that `result` is the error `expected` (compared by variant and content).
#[track_caller]
pub fn assert_err<T: Debug>(result: Result<T, StoreError>, expected: StoreError, what: &str) {
    match (&result, &expected) {
        (Err(StoreError::NotFound), StoreError::NotFound)
        | (Err(StoreError::AlreadyExists), StoreError::AlreadyExists)
        | (Err(StoreError::ParentNotFound), StoreError::ParentNotFound)
        | (Err(StoreError::ParentClosed), StoreError::ParentClosed)
        | (Err(StoreError::CustomerNotFound), StoreError::CustomerNotFound)
        | (Err(StoreError::DictionaryChanged), StoreError::DictionaryChanged)
        | (Err(StoreError::InUse), StoreError::InUse)
        | (Err(StoreError::LastAdmin), StoreError::LastAdmin)
        | (Err(StoreError::KeysChanged), StoreError::KeysChanged) => {}
        (
            Err(StoreError::VersionConflict { current: a }),
            StoreError::VersionConflict { current: b },
        ) if a == b => {}
        _ => panic!("{what}: expected Err({expected:?}), got {result:?}"),
    }
}

/// A search of every object of `kind`, 100 per page.
pub fn plan(kind: Kind) -> SearchPlan {
    SearchPlan {
        kind,
        match_all: true,
        conditions: Vec::new(),
        created_from: None,
        created_to: None,
        updated_from: None,
        updated_to: None,
        not_exists: Vec::new(),
        limit: 100,
        after: None,
    }
}

/// `plan(kind)` with these conditions.
pub fn plan_with(kind: Kind, match_all: bool, conditions: Vec<Condition>) -> SearchPlan {
    SearchPlan {
        match_all,
        conditions,
        ..plan(kind)
    }
}

/// One page as seen by both `search` and `search_ids`, which must agree.
#[derive(Debug, PartialEq)]
pub struct Found {
    /// The ids, in order.
    pub ids: Vec<ObjectId>,
    /// The total.
    pub total: u64,
    /// The next position.
    pub next: Option<PagePosition>,
}

/// Runs `plan` through `search` and `search_ids`, checks they agree and that every object
/// returned is in `scope` and of the plan's kind.
pub async fn search(store: &dyn Store, scope: Scope, plan: &SearchPlan) -> Found {
    let page = store
        .search(scope, plan)
        .await
        .unwrap_or_else(|e| panic!("search {plan:?} failed: {e}"));
    let ids = store
        .search_ids(scope, plan)
        .await
        .unwrap_or_else(|e| panic!("search_ids {plan:?} failed: {e}"));
    for o in &page.items {
        assert_eq!(o.scope, scope, "search returned an object of another scope");
        assert_eq!(
            o.kind, plan.kind,
            "search returned an object of another kind"
        );
    }
    let found = Found {
        ids: page.items.iter().map(|o| o.id).collect(),
        total: page.total,
        next: page.next,
    };
    let found_ids = Found {
        ids: ids.ids,
        total: ids.total,
        next: ids.next,
    };
    assert_eq!(
        found, found_ids,
        "search and search_ids disagree on {plan:?}"
    );
    found
}

/// Ids of `objects` in search order: newest `last_updated` first, then id descending.
pub fn by_updated(objects: &[&StoredObject]) -> Vec<ObjectId> {
    let mut v: Vec<_> = objects.iter().map(|o| (o.last_updated, o.id)).collect();
    v.sort_by(|a, b| b.cmp(a));
    v.into_iter().map(|(_, id)| id).collect()
}

/// Ids of `objects` in timeline order: newest `created` first, then id descending.
pub fn by_created(objects: &[&StoredObject]) -> Vec<ObjectId> {
    let mut v: Vec<_> = objects.iter().map(|o| (o.created, o.id)).collect();
    v.sort_by(|a, b| b.cmp(a));
    v.into_iter().map(|(_, id)| id).collect()
}

/// Polls all futures concurrently on the current task and returns their outputs in order
/// (the checks take `&dyn Store`, which cannot move into spawned tasks).
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
