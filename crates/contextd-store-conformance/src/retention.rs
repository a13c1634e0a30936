//! Retention: what an [`ExpirySelector`] selects (exactly what
//! [`ExpirySelector::selects`] says, oldest first, paged, in its scope only) and the
//! deletion of expired objects (only those still expired, with their tokens and one
//! `object.deleted` event each).

use chrono::{DateTime, Utc};
use contextd_core::ids::{ObjectId, Scope};
use contextd_core::object::{Kind, MediaType, State};
use contextd_core::store::{ExpirySelector, Kept, PagePosition, Store, StoredObject, Token};
use contextd_proto::events::EventType;

use crate::fixtures::*;

const DAY: i64 = 86_400_000;

/// An activity of `media` carrying `fieldsets`, last written at `t`.
fn activity(scope: Scope, media: MediaType, fieldsets: &[&str], t: DateTime<Utc>) -> StoredObject {
    let mut o = object(scope, Kind::Activity, t);
    o.media_type = Some(media);
    o.fieldsets = fieldsets.iter().map(|s| (*s).to_owned()).collect();
    o
}

/// A selector of `kind` before `cutoff`, nothing else narrowed.
fn selector(kind: Kind, cutoff: DateTime<Utc>) -> ExpirySelector {
    ExpirySelector {
        kind,
        media_type: None,
        fieldset: None,
        updated_before: cutoff,
        only_closed: false,
        keep: Vec::new(),
    }
}

fn kept(media_type: Option<MediaType>, fieldset: Option<&str>) -> Kept {
    Kept {
        media_type,
        fieldset: fieldset.map(str::to_owned),
    }
}

/// What the reference says `selector` selects in `scope` among `objects`, oldest first.
fn expected(objects: &[&StoredObject], scope: Scope, selector: &ExpirySelector) -> Vec<ObjectId> {
    let mut found: Vec<(DateTime<Utc>, ObjectId)> = objects
        .iter()
        .filter(|o| o.scope == scope && selector.selects(o))
        .map(|o| (o.last_updated, o.id))
        .collect();
    found.sort();
    found.into_iter().map(|(_, id)| id).collect()
}

/// The ids the store finds, checking each position's time against the object's.
async fn found(
    store: &dyn Store,
    objects: &[&StoredObject],
    scope: Scope,
    selector: &ExpirySelector,
    after: Option<PagePosition>,
    limit: usize,
) -> Vec<ObjectId> {
    let page = store
        .expired(scope, selector, after, limit)
        .await
        .unwrap_or_else(|e| panic!("expired {selector:?} failed: {e}"));
    assert!(page.len() <= limit, "expired returns at most `limit`");
    for p in &page {
        let o = objects
            .iter()
            .find(|o| o.id == p.id)
            .unwrap_or_else(|| panic!("expired found {} that no check wrote", p.id));
        assert_eq!(
            p.time, o.last_updated,
            "a position carries the object's last_updated"
        );
    }
    page.into_iter().map(|p| p.id).collect()
}

/// Asserts that the store selects in `scope` exactly what the reference selects.
async fn agrees(
    store: &dyn Store,
    objects: &[&StoredObject],
    scope: Scope,
    selector: &ExpirySelector,
    what: &str,
) -> Vec<ObjectId> {
    let want = expected(objects, scope, selector);
    let got = found(store, objects, scope, selector, None, 100).await;
    assert_eq!(
        got, want,
        "{what}: expired disagrees with ExpirySelector::selects"
    );
    got
}

/// Expired objects found as the reference selects them (channel, field set, closed only,
/// keep-forever exceptions, the cutoff exclusive), oldest first and paged, in their scope
/// only; deleted only while still expired, with their tokens and an event each.
pub async fn check_retention(store: &dyn Store) {
    let s = lab();
    let prod = other_partition(s);
    let stranger = lab();
    let t = now();
    let cutoff = at(t, -90 * DAY);
    let old = at(t, -100 * DAY);
    let young = at(t, -10 * DAY);

    let web_old = activity(s, MediaType::Web, &[], old);
    let web_pod = activity(s, MediaType::Web, &["cisco.base.pod"], at(old, 1));
    let web_kept = activity(
        s,
        MediaType::Web,
        &["keep.me", "cisco.base.pod"],
        at(old, 2),
    );
    let web_young = activity(s, MediaType::Web, &[], young);
    let web_at_cutoff = activity(s, MediaType::Web, &[], cutoff);
    let voice_old = activity(s, MediaType::Voice, &[], old);
    let prod_web_old = activity(prod, MediaType::Web, &[], old);
    let stranger_web_old = activity(stranger, MediaType::Web, &[], old);
    let mut closed_request = object(s, Kind::Request, at(old, 3));
    closed_request.state = State::Closed;
    let active_request = object(s, Kind::Request, at(old, 4));
    let mut comment = object(s, Kind::Detail, at(old, 5));
    comment.fieldsets = vec!["cisco.base.comment".into()];
    comment.state = State::Closed;
    let mut bare_detail = object(s, Kind::Detail, at(old, 6));
    bare_detail.state = State::Closed;
    let old_customer = object(s, Kind::Customer, old);

    let all = [
        &web_old,
        &web_pod,
        &web_kept,
        &web_young,
        &web_at_cutoff,
        &voice_old,
        &prod_web_old,
        &stranger_web_old,
        &closed_request,
        &active_request,
        &comment,
        &bare_detail,
        &old_customer,
    ];
    let mut tokens: Vec<(ObjectId, Token)> = Vec::new();
    for o in all {
        let tok = token();
        insert(store, o, &[tok]).await;
        tokens.push((o.id, tok));
    }
    let token_of = |id: ObjectId| {
        tokens
            .iter()
            .find(|(o, _)| *o == id)
            .map(|(_, t)| *t)
            .expect("a token per object")
    };

    // What a selector selects.
    let web = ExpirySelector {
        media_type: Some(MediaType::Web),
        ..selector(Kind::Activity, cutoff)
    };
    assert_eq!(
        agrees(store, &all, s, &web, "web activities").await,
        [web_old.id, web_pod.id, web_kept.id],
        "old web activities of the scope, oldest first; not one written at the cutoff, \
         a young one, another channel, another partition or another org"
    );
    assert_eq!(
        agrees(store, &all, prod, &web, "the other partition").await,
        [prod_web_old.id]
    );
    let every_activity = selector(Kind::Activity, cutoff);
    assert_eq!(
        agrees(store, &all, s, &every_activity, "every activity")
            .await
            .len(),
        4
    );
    let pod_set = ExpirySelector {
        fieldset: Some("cisco.base.pod".into()),
        ..selector(Kind::Activity, cutoff)
    };
    assert_eq!(
        agrees(store, &all, s, &pod_set, "a field set").await,
        [web_pod.id, web_kept.id]
    );
    for (keep, left, what) in [
        (vec![kept(None, Some("keep.me"))], 2, "a field set kept"),
        (vec![kept(Some(MediaType::Web), None)], 0, "a channel kept"),
        (
            vec![kept(Some(MediaType::Web), Some("keep.me"))],
            2,
            "a channel and field set kept",
        ),
        (
            vec![kept(Some(MediaType::Voice), Some("keep.me"))],
            3,
            "an exception of another channel",
        ),
        (
            vec![
                kept(None, Some("no.such.set")),
                kept(None, Some("cisco.base.pod")),
            ],
            1,
            "any exception keeps",
        ),
        (vec![kept(None, None)], 0, "an exception of everything"),
    ] {
        let narrowed = ExpirySelector {
            keep,
            ..web.clone()
        };
        assert_eq!(
            agrees(store, &all, s, &narrowed, what).await.len(),
            left,
            "{what}"
        );
    }
    let closed_requests = ExpirySelector {
        only_closed: true,
        ..selector(Kind::Request, cutoff)
    };
    assert_eq!(
        agrees(store, &all, s, &closed_requests, "closed requests").await,
        [closed_request.id],
        "an active request is not selected when only closed ones are"
    );
    assert_eq!(
        agrees(store, &all, s, &selector(Kind::Request, cutoff), "requests").await,
        [closed_request.id, active_request.id]
    );
    let comments = ExpirySelector {
        fieldset: Some("cisco.base.comment".into()),
        ..selector(Kind::Detail, cutoff)
    };
    assert_eq!(
        agrees(store, &all, s, &comments, "comments").await,
        [comment.id]
    );

    // Pages.
    let first = found(store, &all, s, &web, None, 1).await;
    assert_eq!(first, [web_old.id], "the oldest first");
    let position = |o: &StoredObject| {
        Some(PagePosition {
            time: o.last_updated,
            id: o.id,
        })
    };
    assert_eq!(
        found(store, &all, s, &web, position(&web_old), 1).await,
        [web_pod.id],
        "the next page starts after the position"
    );
    assert_eq!(
        found(store, &all, s, &web, position(&web_pod), 10).await,
        [web_kept.id]
    );
    assert!(found(store, &all, s, &web, position(&web_kept), 10)
        .await
        .is_empty());

    // Deletion: only what is still expired, in the scope, with its tokens and an event.
    store.publish_events().await.expect("publish_events");
    let mark = store.last_event_id(Some(s)).await.expect("last_event_id");
    let prod_mark = store
        .last_event_id(Some(prod))
        .await
        .expect("last_event_id");
    let deleted = store
        .delete_expired(
            s,
            &[web_old.id, web_young.id, ObjectId::new(), prod_web_old.id],
            cutoff,
            &by(),
        )
        .await
        .expect("delete_expired");
    assert_eq!(
        deleted,
        [web_old.id],
        "only the expired object of the scope is deleted; a young one, an unknown id and \
         another partition's object are not"
    );
    assert_eq!(store.object(s, web_old.id).await.expect("object"), None);
    assert_eq!(read(store, s, web_young.id).await, web_young);
    assert_eq!(read(store, prod, prod_web_old.id).await, prod_web_old);
    assert!(
        !store
            .any_token_in_use(s.org, &[token_of(web_old.id)])
            .await
            .expect("any_token_in_use"),
        "the deleted object's tokens are gone"
    );
    assert!(store
        .any_token_in_use(s.org, &[token_of(web_young.id)])
        .await
        .expect("any_token_in_use"));
    store.publish_events().await.expect("publish_events");
    let events = store
        .events_after(Some(s), mark, 100)
        .await
        .expect("events_after");
    assert_eq!(events.len(), 1, "one event per object deleted: {events:?}");
    let e = &events[0].event;
    assert_eq!(e.event_type, EventType::Deleted);
    assert_eq!(e.object_id, web_old.id);
    assert_eq!(e.object_type, Kind::Activity);
    assert_eq!(e.media_type, Some(MediaType::Web));
    assert_eq!(e.last_updated, web_old.last_updated);
    assert_eq!(e.contributor, by());
    assert!(
        store
            .events_after(Some(prod), prod_mark, 100)
            .await
            .expect("events_after")
            .is_empty(),
        "nothing happened in the other partition"
    );

    // An object written since it was found is young again and stays.
    let mut refreshed = web_pod.clone();
    refreshed.last_updated = now();
    refreshed.version += 1;
    store
        .write_object(&update_write(
            &refreshed,
            &[token_of(web_pod.id)],
            web_pod.version,
        ))
        .await
        .expect("update");
    store.publish_events().await.expect("publish_events");
    let mark = store.last_event_id(Some(s)).await.expect("last_event_id");
    assert!(
        store
            .delete_expired(s, &[web_pod.id], cutoff, &by())
            .await
            .expect("delete_expired")
            .is_empty(),
        "an object written since the cutoff is not deleted"
    );
    assert_eq!(read(store, s, web_pod.id).await, refreshed);
    assert!(store
        .delete_expired(s, &[], cutoff, &by())
        .await
        .expect("delete_expired of nothing")
        .is_empty());

    // Deleting the rest of a kind, page by page, as the core does.
    let mut after = None;
    let mut gone = Vec::new();
    loop {
        let page = store
            .expired(s, &every_activity, after, 1)
            .await
            .expect("expired");
        let Some(last) = page.last() else { break };
        after = Some(*last);
        let ids: Vec<ObjectId> = page.iter().map(|p| p.id).collect();
        gone.extend(
            store
                .delete_expired(s, &ids, cutoff, &by())
                .await
                .expect("delete_expired"),
        );
    }
    gone.sort();
    let mut want = vec![web_kept.id, voice_old.id];
    want.sort();
    assert_eq!(gone, want, "every old activity left is deleted");
    assert_eq!(read(store, s, web_at_cutoff.id).await, web_at_cutoff);
    assert_eq!(read(store, s, old_customer.id).await, old_customer);
    assert_eq!(
        read(store, stranger, stranger_web_old.id).await,
        stranger_web_old
    );
    store.publish_events().await.expect("publish_events");
    let later = store
        .events_after(Some(s), mark, 100)
        .await
        .expect("events_after");
    let deleted_events: Vec<ObjectId> = later
        .iter()
        .filter(|e| e.event.event_type == EventType::Deleted)
        .map(|e| e.event.object_id)
        .collect();
    assert_eq!(deleted_events.len(), 2, "an event per object deleted");
}
