//! The events outbox: an event per object change in the change's transaction (none for a
//! change that failed), scoped, in id order; pruning; the leased cursors of the forwarding
//! channels; webhooks and their delivery attempts.
//!
//! Events are read after `publish_events`, as the server does. Ids are compared with those
//! read first, never with fixed numbers: the database may hold events of other checks.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use contextd_core::ids::{ObjectId, Scope};
use contextd_core::object::{Contributor, ContributorType, Kind, MediaType, State};
use contextd_core::store::{
    system_contributor, Change, ObjectWrite, Store, StoreError, StoredEvent, StoredObject,
    WebhookRecord, WebhookState,
};
use contextd_proto::events::{Delivery, DeliveryOutcome, Event, EventFilter, EventType};
use uuid::Uuid;

use crate::fixtures::*;

/// The contributor of the changes the checks make.
fn agent() -> Contributor {
    Contributor {
        id: "agent-7".into(),
        kind: ContributorType::User,
    }
}

/// A write of `object` recording `event_type` by `agent()`: an insert, or (with `expected`)
/// an update.
fn write(object: &StoredObject, expected: Option<i64>, event_type: EventType) -> ObjectWrite {
    ObjectWrite {
        object: object.clone(),
        tokens: vec![token()],
        expected_version: expected,
        parent_check: None,
        customer_check: None,
        dictionary_version: None,
        change: Change {
            event_type,
            by: agent(),
            history: false,
        },
    }
}

/// Writes, panicking if the store refuses.
async fn commit(store: &dyn Store, w: ObjectWrite) {
    if let Err(e) = store.write_object(&w).await {
        panic!("writing {:?} {} failed: {e}", w.object.kind, w.object.id);
    }
}

/// The events of `scope` after `*mark`, oldest first, read page by page after publishing;
/// moves `*mark` to the last. Checks each is of the scope and ids strictly increase.
async fn since(store: &dyn Store, scope: Scope, mark: &mut u64) -> Vec<Event> {
    store.publish_events().await.expect("publish_events");
    let mut out = Vec::new();
    loop {
        let page = store
            .events_after(Some(scope), *mark, 3)
            .await
            .expect("events_after");
        assert!(page.len() <= 3, "events_after returns at most `limit`");
        if page.is_empty() {
            return out;
        }
        for e in &page {
            assert_eq!(
                e.scope, scope,
                "events_after returned another scope's event"
            );
            assert!(e.event.id > *mark, "ids strictly increase, after `after`");
            *mark = e.event.id;
        }
        out.extend(page.into_iter().map(|e| e.event));
    }
}

/// Every event of `scope` (from the start).
async fn all(store: &dyn Store, scope: Scope) -> Vec<Event> {
    since(store, scope, &mut 0).await
}

/// Asserts that `e` is the event of `event_type` by `by` for `object` as it is now.
#[track_caller]
fn assert_event(e: &Event, event_type: EventType, object: &StoredObject, by: &Contributor) {
    let expected = Event {
        id: e.id,
        time: e.time,
        ..StoredEvent::of(object, event_type, by).event
    };
    assert_eq!(e, &expected, "the event carries the object as changed");
}

/// Asserts that `events` are one event of `event_type` by `by` per object of `objects`, in
/// any order.
#[track_caller]
fn assert_one_each(
    events: &[Event],
    event_type: EventType,
    objects: &[&StoredObject],
    by: &Contributor,
) {
    assert_eq!(
        events.len(),
        objects.len(),
        "one {event_type} event per object"
    );
    for o in objects {
        match events.iter().find(|e| e.object_id == o.id) {
            Some(e) => assert_event(e, event_type, o, by),
            None => panic!("no {event_type} event for {}", o.id),
        }
    }
}

/// Create, update, move, close and delete each record one event, in order, carrying the
/// object as changed; a failing write or `write_objects` records none.
async fn check_write_events(store: &dyn Store, s: Scope, mark: &mut u64) {
    let t = now();
    let customer = object(s, Kind::Customer, t);
    let mut request = object(s, Kind::Request, t);
    request.customer_id = Some(customer.id);
    let mut activity = object(s, Kind::Activity, t);
    activity.customer_id = Some(customer.id);
    activity.parent_id = Some(request.id);
    activity.media_type = Some(MediaType::Voice);
    for o in [&customer, &request, &activity] {
        commit(store, write(o, None, EventType::Created)).await;
    }
    let events = since(store, s, mark).await;
    assert_eq!(events.len(), 3, "one event per create");
    for (e, o) in events.iter().zip([&customer, &request, &activity]) {
        assert_event(e, EventType::Created, o, &agent());
        assert!(e.time >= t && e.time <= now(), "the time it was recorded");
    }

    assert_eq!(
        events[2].addressed_to, None,
        "no agent tag: addressed to no one"
    );

    let mut updated = activity.clone();
    updated.version = 2;
    updated.tags = vec!["vip".into(), "agent:ana".into()];
    updated.last_updated = at(t, 10);
    commit(store, write(&updated, Some(1), EventType::Updated)).await;
    let mut closed = request.clone();
    closed.version = 2;
    closed.state = State::Closed;
    closed.last_updated = at(t, 20);
    commit(store, write(&closed, Some(1), EventType::Closed)).await;
    let other = object(s, Kind::Customer, t);
    commit(store, write(&other, None, EventType::Created)).await;
    let mut moved = updated.clone();
    moved.version = 3;
    moved.customer_id = Some(other.id);
    moved.last_updated = at(t, 30);
    let mut moved_request = closed.clone();
    moved_request.version = 3;
    moved_request.customer_id = Some(other.id);
    store
        .write_objects(&[
            write(&moved, Some(2), EventType::Moved),
            write(&moved_request, Some(2), EventType::Moved),
        ])
        .await
        .expect("write_objects");
    let events = since(store, s, mark).await;
    assert_eq!(
        events.len(),
        5,
        "one event per write, write_objects included"
    );
    assert_event(&events[0], EventType::Updated, &updated, &agent());
    assert_eq!(
        events[0].addressed_to.as_deref(),
        Some("ana"),
        "an activity tagged agent:<name> is addressed to that agent"
    );
    assert_event(&events[1], EventType::Closed, &closed, &agent());
    assert_event(&events[2], EventType::Created, &other, &agent());
    assert_event(&events[3], EventType::Moved, &moved, &agent());
    assert_event(&events[4], EventType::Moved, &moved_request, &agent());

    // Refused writes record nothing.
    let mut stale = moved.clone();
    stale.version = 9;
    assert_err(
        store
            .write_object(&write(&stale, Some(8), EventType::Updated))
            .await,
        StoreError::VersionConflict { current: 3 },
        "a stale update",
    );
    let fresh = object(s, Kind::Customer, t);
    assert_err(
        store
            .write_objects(&[
                write(&fresh, None, EventType::Created),
                write(&stale, Some(8), EventType::Moved),
            ])
            .await,
        StoreError::VersionConflict { current: 3 },
        "write_objects whose second write is stale",
    );
    let mut orphan = object(s, Kind::Activity, t);
    orphan.parent_id = Some(closed.id);
    let under_closed = ObjectWrite {
        change: write(&orphan, None, EventType::Created).change,
        ..child_write(&orphan, closed.id, true, t)
    };
    assert_err(
        store.write_object(&under_closed).await,
        StoreError::ParentClosed,
        "a write under a closed request",
    );
    assert_err(
        store.delete_object(s, ObjectId::new(), &agent()).await,
        StoreError::NotFound,
        "a delete of nothing",
    );
    assert_eq!(
        since(store, s, mark).await,
        Vec::<Event>::new(),
        "a write that fails records no event"
    );

    store
        .delete_object(s, moved.id, &agent())
        .await
        .expect("delete");
    let events = since(store, s, mark).await;
    assert_eq!(events.len(), 1, "one event per delete");
    assert_event(&events[0], EventType::Deleted, &moved, &agent());
}

/// A flush records an `object.deleted` per object, an erase an `object.erased` per object
/// (none when repeated), the auto-close sweep an `object.closed` by the system contributor.
async fn check_bulk_events(store: &dyn Store, s: Scope, mark: &mut u64) {
    let t = now();
    let by = Contributor {
        id: Uuid::new_v4().to_string(),
        kind: ContributorType::Machine,
    };
    let details: Vec<_> = (0..3).map(|i| object(s, Kind::Detail, at(t, i))).collect();
    for d in &details {
        commit(store, write(d, None, EventType::Created)).await;
    }
    let customer = object(s, Kind::Customer, t);
    let mut linked = object(s, Kind::Activity, t);
    linked.customer_id = Some(customer.id);
    for o in [&customer, &linked] {
        commit(store, write(o, None, EventType::Created)).await;
    }
    since(store, s, mark).await;

    assert_eq!(store.flush(s, Kind::Detail, &by).await.expect("flush"), 3);
    let events = since(store, s, mark).await;
    assert_one_each(
        &events,
        EventType::Deleted,
        &details.iter().collect::<Vec<_>>(),
        &by,
    );
    assert_eq!(store.flush(s, Kind::Detail, &by).await.expect("flush"), 0);
    assert_eq!(
        since(store, s, mark).await,
        Vec::<Event>::new(),
        "an empty flush records nothing"
    );

    let first = store
        .erase_customer(s, customer.id, &by)
        .await
        .expect("erase");
    assert_eq!(first.objects, 2);
    let events = since(store, s, mark).await;
    assert_one_each(&events, EventType::Erased, &[&customer, &linked], &by);
    store
        .erase_customer(s, customer.id, &by)
        .await
        .expect("repeated erase");
    assert_err(
        store.erase_customer(s, ObjectId::new(), &by).await,
        StoreError::NotFound,
        "an erase of nothing",
    );
    assert_eq!(
        since(store, s, mark).await,
        Vec::<Event>::new(),
        "a repeated erase records nothing"
    );

    // Times in 1970, before those of every other check, so that the sweep (which spans all
    // orgs) closes only this request.
    let base = contextd_core::time::from_millis(1_000_000);
    let stale = object(s, Kind::Request, base);
    commit(store, write(&stale, None, EventType::Created)).await;
    since(store, s, mark).await;
    let swept = now();
    let n = store
        .close_stale_requests(at(base, 10_000), swept)
        .await
        .expect("close_stale_requests");
    assert!(n >= 1, "the stale request is closed");
    let mut closed = stale.clone();
    closed.state = State::Closed;
    closed.last_updated = swept;
    let events = since(store, s, mark).await;
    assert_one_each(
        &events,
        EventType::Closed,
        &[&closed],
        &system_contributor(),
    );
}

/// Every object change records its event, in the change's transaction; events are scoped,
/// ordered, paged and pruned.
pub async fn check_events(store: &dyn Store) {
    let s = lab();
    store.publish_events().await.expect("publish_events");
    let start = store.last_event_id(None).await.expect("last_event_id");
    assert_eq!(
        store.last_event_id(Some(s)).await.expect("last_event_id"),
        0,
        "a scope without events"
    );
    let mut mark = 0;
    check_write_events(store, s, &mut mark).await;
    check_bulk_events(store, s, &mut mark).await;

    let mine = all(store, s).await;
    assert!(mine.iter().all(|e| e.id > start), "new events have new ids");
    assert_eq!(
        store.last_event_id(Some(s)).await.expect("last_event_id"),
        mark,
        "last_event_id is the newest of the scope"
    );
    assert!(store.last_event_id(None).await.expect("last_event_id") >= mark);
    for other in [other_partition(s), lab()] {
        assert_eq!(
            all(store, other).await,
            Vec::<Event>::new(),
            "other scopes see none"
        );
        assert_eq!(store.last_event_id(Some(other)).await.expect("last"), 0);
    }
    let mut everyone = Vec::new();
    let mut after = start;
    while after < mark {
        let page = store
            .events_after(None, after, 100)
            .await
            .expect("events_after(None)");
        let Some(last) = page.last() else { break };
        after = last.event.id;
        everyone.extend(page.into_iter().filter(|e| e.scope == s).map(|e| e.event));
    }
    assert_eq!(
        everyone, mine,
        "events_after(None) sees every scope's events"
    );

    // Pruning removes what was recorded before the cutoff, only that.
    tokio::time::sleep(StdDuration::from_millis(20)).await;
    let cutoff = now();
    let kept = object(s, Kind::Customer, cutoff);
    commit(store, write(&kept, None, EventType::Created)).await;
    store.publish_events().await.expect("publish_events");
    let high = store.last_event_id(None).await.expect("last_event_id");
    let pruned = store.prune_events(cutoff).await.expect("prune_events");
    assert!(
        pruned >= mine.len() as u64,
        "every older event pruned, got {pruned}"
    );
    let left = all(store, s).await;
    assert_eq!(left.len(), 1, "the event recorded after the cutoff is kept");
    assert_event(&left[0], EventType::Created, &kept, &agent());
    assert!(left[0].id > mark);
    // Pruning never lowers the newest id given (a client's position stays valid).
    store
        .prune_events(now() + chrono::Duration::seconds(1))
        .await
        .expect("prune everything");
    assert_eq!(store.last_event_id(None).await.expect("after"), high);
}

/// Cursors: created once, leased to one owner at a time until the lease expires, moved only
/// by their owner.
pub async fn check_event_cursors(store: &dyn Store) {
    let name = format!("check:{}", Uuid::new_v4());
    let t = now();
    let lease = |s: i64| at(t, s * 1_000);
    assert_eq!(
        store
            .claim_cursor(&name, "a", t, lease(30))
            .await
            .expect("claim"),
        None,
        "a missing cursor cannot be claimed"
    );
    store.ensure_cursor(&name, 5).await.expect("ensure");
    store.ensure_cursor(&name, 9).await.expect("ensure again");
    let claim = |owner: &'static str, now_s: i64, until_s: i64| {
        let (name, now, until) = (name.clone(), lease(now_s), lease(until_s));
        async move {
            store
                .claim_cursor(&name, owner, now, until)
                .await
                .expect("claim_cursor")
        }
    };
    assert_eq!(
        claim("a", 0, 30).await,
        Some(5),
        "ensure keeps the first position"
    );
    assert_eq!(
        claim("a", 1, 31).await,
        Some(5),
        "the owner renews its lease"
    );
    assert_eq!(claim("b", 2, 32).await, None, "a live lease is another's");
    let advance = |owner: &'static str, position: u64| {
        let name = name.clone();
        async move {
            store
                .advance_cursor(&name, owner, position)
                .await
                .expect("advance_cursor")
        }
    };
    assert!(!advance("b", 99).await, "a non-owner cannot advance");
    assert!(advance("a", 7).await, "the owner advances");
    store.ensure_cursor(&name, 0).await.expect("ensure");
    assert_eq!(
        claim("b", 31, 61).await,
        None,
        "the lease holds until its end"
    );
    assert_eq!(
        claim("b", 32, 62).await,
        Some(7),
        "an expired lease is free; the position is where the owner left it"
    );
    assert!(!advance("a", 8).await, "a lost lease cannot advance");
    assert_eq!(claim("a", 33, 63).await, None);
    assert!(advance("b", 8).await);
    assert_eq!(claim("b", 34, 64).await, Some(8));
}

/// A webhook of `scope` created at `t`.
fn webhook(scope: Scope, t: DateTime<Utc>, filter: EventFilter) -> WebhookRecord {
    WebhookRecord {
        id: Uuid::now_v7(),
        scope,
        url: "https://example.test/hook?a=b".into(),
        filter,
        description: "Zoë's CRM".into(),
        secret: vec![0, 1, 254, 255],
        created: t,
    }
}

/// A delivery attempt of event `event_id` (its `id` is the store's).
fn delivery(event_id: u64, outcome: DeliveryOutcome, when: DateTime<Utc>) -> Delivery {
    let ok = outcome == DeliveryOutcome::Delivered;
    Delivery {
        id: 0,
        event_id,
        event_type: EventType::Created,
        attempt: 2,
        outcome,
        status: Some(if ok { 204 } else { 503 }),
        error: (!ok).then(|| "503 Service Unavailable".into()),
        at: when,
        duration_ms: 42,
    }
}

/// Webhooks: stored whole with their cursor, listed oldest first within their scope, with
/// their position and dead letters; attempts newest first; deletion takes it all.
pub async fn check_webhooks(store: &dyn Store) {
    let s = lab();
    let t = now();
    let filter = EventFilter {
        types: vec![EventType::Created, EventType::Moved],
        customer_id: Some(ObjectId::new()),
        contributor: Some("agent-7".into()),
        media_type: Some(MediaType::Chat),
        addressed_to: Some("ana".into()),
    };
    let w1 = webhook(s, t, filter);
    let w2 = webhook(s, at(t, 1), EventFilter::default());
    store.create_webhook(&w1, 10).await.expect("create");
    store.create_webhook(&w2, 0).await.expect("create");
    assert_err(
        store.create_webhook(&w1, 0).await,
        StoreError::AlreadyExists,
        "a second webhook of the same id",
    );
    let state = |w: &WebhookRecord, position, dead_letters| WebhookState {
        webhook: w.clone(),
        position,
        dead_letters,
    };
    assert_eq!(
        store.webhooks(Some(s)).await.expect("webhooks"),
        vec![state(&w1, 10, 0), state(&w2, 0, 0)],
        "webhooks round-trip, oldest first"
    );
    assert_eq!(
        store.webhook(s, w1.id).await.expect("webhook"),
        Some(state(&w1, 10, 0))
    );
    for other in [other_partition(s), lab()] {
        assert_eq!(store.webhook(other, w1.id).await.expect("webhook"), None);
        assert!(store
            .webhooks(Some(other))
            .await
            .expect("webhooks")
            .is_empty());
        assert_err(
            store.delete_webhook(other, w1.id).await,
            StoreError::NotFound,
            "a delete from another scope",
        );
    }
    let everyone = store.webhooks(None).await.expect("webhooks(None)");
    assert!(
        everyone.contains(&state(&w2, 0, 0)),
        "webhooks(None) lists every scope's"
    );

    // The position is the cursor's.
    let cursor = w1.cursor_name();
    assert_eq!(
        store
            .claim_cursor(&cursor, "me", t, at(t, 30_000))
            .await
            .expect("claim"),
        Some(10)
    );
    assert!(store
        .advance_cursor(&cursor, "me", 12)
        .await
        .expect("advance"));

    let attempts = [
        delivery(11, DeliveryOutcome::Failed, t),
        delivery(11, DeliveryOutcome::Dead, at(t, 1)),
        delivery(12, DeliveryOutcome::Delivered, at(t, 2)),
        delivery(13, DeliveryOutcome::Dead, at(t, 3)),
    ];
    let mut recorded = Vec::new();
    for d in &attempts {
        let id = store.record_delivery(w1.id, d).await.expect("record");
        assert!(
            recorded.last().is_none_or(|p: &Delivery| id > p.id),
            "ids increase"
        );
        recorded.push(Delivery { id, ..d.clone() });
    }
    recorded.reverse();
    let list = |outcome, limit| async move {
        store
            .deliveries(w1.id, outcome, limit)
            .await
            .expect("deliveries")
    };
    assert_eq!(list(None, 10).await, recorded, "newest first");
    assert_eq!(list(None, 2).await, recorded[..2], "at most `limit`");
    assert_eq!(
        list(Some(DeliveryOutcome::Dead), 10).await,
        vec![recorded[0].clone(), recorded[2].clone()],
        "only the outcome asked for"
    );
    assert_eq!(
        store.webhook(s, w1.id).await.expect("webhook"),
        Some(state(&w1, 12, 2)),
        "position and dead letters"
    );

    // Pruning takes attempts made before the cutoff (here, of 1970: no event is that old).
    let old = delivery(
        1,
        DeliveryOutcome::Dead,
        contextd_core::time::from_millis(1_000),
    );
    store.record_delivery(w2.id, &old).await.expect("record");
    assert_eq!(
        store.deliveries(w2.id, None, 10).await.expect("list").len(),
        1
    );
    store
        .prune_events(contextd_core::time::from_millis(2_000))
        .await
        .expect("prune_events");
    assert!(store
        .deliveries(w2.id, None, 10)
        .await
        .expect("list")
        .is_empty());
    assert_eq!(list(None, 10).await, recorded, "newer attempts are kept");

    store.delete_webhook(s, w1.id).await.expect("delete");
    assert_eq!(store.webhook(s, w1.id).await.expect("webhook"), None);
    assert!(
        list(None, 10).await.is_empty(),
        "its attempts are deleted with it"
    );
    assert_eq!(
        store
            .claim_cursor(&cursor, "me", t, at(t, 30_000))
            .await
            .expect("claim"),
        None,
        "its cursor is deleted with it"
    );
    assert_err(
        store.delete_webhook(s, w1.id).await,
        StoreError::NotFound,
        "a second delete",
    );
    assert_eq!(
        store.webhooks(Some(s)).await.expect("webhooks"),
        vec![state(&w2, 0, 0)]
    );
}
