//! Object writes: insert, update, versions, tokens, parents, deletes, flushes, auto-close.

use contextd_core::ids::{ObjectId, OrgId, Partition, Scope};
use contextd_core::object::{DetailType, Kind, MediaType, State};
use contextd_core::store::{Condition, ObjectWrite, Store, StoreError};

use crate::fixtures::*;

/// Insert, read back unchanged, duplicate insert refused, update, delete.
pub async fn check_object_crud(store: &dyn Store) {
    assert!(!store.backend().is_empty(), "backend() names the backend");
    store.ping().await.expect("ping");
    let s = lab();
    let t = now();

    let rich = rich_object(s, Kind::Activity, t);
    let tok = token();
    insert(store, &rich, &[tok]).await;
    assert_eq!(
        read(store, s, rich.id).await,
        rich,
        "every property of an object round-trips"
    );

    let mut bare = object(s, Kind::Customer, at(t, 5));
    bare.media_type = None;
    insert(store, &bare, &[]).await;
    assert_eq!(
        read(store, s, bare.id).await,
        bare,
        "an object with no optional property round-trips"
    );

    let mut detail = object(s, Kind::Detail, at(t, 6));
    detail.detail_type = Some(DetailType::Feedback);
    detail.state = State::Closed;
    insert(store, &detail, &[]).await;
    assert_eq!(read(store, s, detail.id).await, detail);

    assert_eq!(
        store.object(s, ObjectId::new()).await.expect("object"),
        None,
        "an unknown id reads as None"
    );

    // A second insert of the same id is refused and changes nothing, tokens included.
    let mut dup = rich.clone();
    dup.tags = vec!["other".into()];
    dup.version = 1;
    let dup_token = token();
    assert_err(
        store.write_object(&insert_write(&dup, &[dup_token])).await,
        StoreError::AlreadyExists,
        "duplicate insert",
    );
    assert_eq!(
        read(store, s, rich.id).await,
        rich,
        "a refused insert leaves the stored object alone"
    );
    let found = search(
        store,
        s,
        &plan_with(
            Kind::Activity,
            true,
            vec![Condition::Tokens(vec![dup_token])],
        ),
    )
    .await;
    assert!(found.ids.is_empty(), "a refused insert adds no tokens");

    // Update: the whole new state replaces the old one.
    let mut updated = rich.clone();
    updated.version = 4;
    updated.tags = vec!["changed".into()];
    updated.clear.remove("points");
    updated
        .clear
        .insert("new".into(), serde_json::json!("value"));
    updated.sealed.remove("empty");
    updated.media_type = Some(MediaType::Voice);
    updated.state = State::Closed;
    updated.customer_id = None;
    updated.last_updated = at(t, 10);
    updated.touched = at(t, 10);
    store
        .write_object(&update_write(&updated, &[tok], 3))
        .await
        .expect("update");
    assert_eq!(
        read(store, s, rich.id).await,
        updated,
        "an update stores the new state"
    );

    // Delete removes the object and its tokens.
    store
        .delete_object(s, rich.id, &by())
        .await
        .expect("delete");
    assert_eq!(
        store.object(s, rich.id).await.expect("object"),
        None,
        "a deleted object is gone"
    );
    let found = search(
        store,
        s,
        &plan_with(Kind::Activity, true, vec![Condition::Tokens(vec![tok])]),
    )
    .await;
    assert!(found.ids.is_empty(), "a deleted object's tokens are gone");
    assert!(
        !store
            .any_token_in_use(s.org, &[tok])
            .await
            .expect("any_token_in_use"),
        "deleted tokens are not in use"
    );
    assert_err(
        store.delete_object(s, rich.id, &by()).await,
        StoreError::NotFound,
        "second delete",
    );
    assert_err(
        store.delete_object(s, ObjectId::new(), &by()).await,
        StoreError::NotFound,
        "delete of an unknown id",
    );
    assert_eq!(
        read(store, s, bare.id).await,
        bare,
        "deleting one object leaves the others"
    );

    // The id is free again.
    insert(store, &rich, &[tok]).await;
    assert_eq!(
        read(store, s, rich.id).await,
        rich,
        "a deleted id can be inserted again"
    );
}

/// Optimistic concurrency and token replacement on update.
pub async fn check_versions(store: &dyn Store) {
    let s = lab();
    let t = now();
    let (a, b, c) = (token(), token(), token());
    let by = |tok| plan_with(Kind::Customer, true, vec![Condition::Tokens(vec![tok])]);
    let mut o = object(s, Kind::Customer, t);
    insert(store, &o, &[a]).await;

    let mut stale = o.clone();
    stale.version = 6;
    stale.tags = vec!["stale".into()];
    assert_err(
        store.write_object(&update_write(&stale, &[b], 5)).await,
        StoreError::VersionConflict { current: 1 },
        "update with a wrong expected version",
    );
    assert_eq!(
        read(store, s, o.id).await,
        o,
        "a conflicting update changes nothing"
    );
    assert_eq!(
        search(store, s, &by(a)).await.ids,
        vec![o.id],
        "a conflicting update keeps the old tokens"
    );
    assert!(
        search(store, s, &by(b)).await.ids.is_empty(),
        "a conflicting update adds no tokens"
    );

    let ghost = object(s, Kind::Customer, t);
    assert_err(
        store.write_object(&update_write(&ghost, &[c], 1)).await,
        StoreError::NotFound,
        "update of an unknown id",
    );
    assert_eq!(
        store.object(s, ghost.id).await.expect("object"),
        None,
        "an update never inserts"
    );
    assert!(
        search(store, s, &by(c)).await.ids.is_empty(),
        "a failed update adds no tokens"
    );

    o.version = 2;
    o.last_updated = at(t, 1);
    o.touched = at(t, 1);
    store
        .write_object(&update_write(&o, &[b, c, b], 1))
        .await
        .expect("update 1 -> 2");
    assert_eq!(read(store, s, o.id).await, o);
    assert!(
        search(store, s, &by(a)).await.ids.is_empty(),
        "tokens dropped by an update no longer match"
    );
    assert_eq!(
        search(store, s, &by(b)).await.ids,
        vec![o.id],
        "tokens added by an update match"
    );
    assert_eq!(search(store, s, &by(c)).await.ids, vec![o.id]);

    assert_err(
        store.write_object(&update_write(&o, &[a], 1)).await,
        StoreError::VersionConflict { current: 2 },
        "a second update from the same stale version",
    );

    o.version = 3;
    o.last_updated = at(t, 2);
    o.touched = at(t, 2);
    store
        .write_object(&update_write(&o, &[], 2))
        .await
        .expect("update 2 -> 3");
    assert_eq!(read(store, s, o.id).await.version, 3);
    assert!(
        search(store, s, &by(b)).await.ids.is_empty(),
        "an update with no tokens clears them"
    );
    assert!(!store
        .any_token_in_use(s.org, &[a, b, c])
        .await
        .expect("any_token_in_use"));
}

/// Parent checks: existence, kind, state, staleness, the `touched` refresh, atomicity.
pub async fn check_parent_rules(store: &dyn Store) {
    let s = lab();
    let t = now();
    let since = at(t, -1_000);

    let request = object(s, Kind::Request, t);
    let activity = object(s, Kind::Activity, t);
    let mut closed = object(s, Kind::Request, t);
    closed.state = State::Closed;
    let stale = object(s, Kind::Request, at(t, -1_001));
    let edge = object(s, Kind::Request, since);
    for o in [&request, &activity, &closed, &stale, &edge] {
        insert(store, o, &[]).await;
    }

    let tok = token();
    let orphan = object(s, Kind::Activity, at(t, 10));
    let write = contextd_core::store::ObjectWrite {
        tokens: vec![tok],
        ..child_write(&orphan, ObjectId::new(), true, since)
    };
    assert_err(
        store.write_object(&write).await,
        StoreError::ParentNotFound,
        "unknown parent",
    );
    assert_eq!(
        store.object(s, orphan.id).await.expect("object"),
        None,
        "a refused child is not stored"
    );
    assert!(
        !store
            .any_token_in_use(s.org, &[tok])
            .await
            .expect("any_token_in_use"),
        "a refused child adds no tokens"
    );

    let child = object(s, Kind::Activity, at(t, 10));
    assert_err(
        store
            .write_object(&child_write(&child, activity.id, true, since))
            .await,
        StoreError::ParentNotFound,
        "a parent that must be a request but is an activity",
    );
    assert_err(
        store
            .write_object(&child_write(&child, closed.id, true, since))
            .await,
        StoreError::ParentClosed,
        "closed parent",
    );
    assert_err(
        store
            .write_object(&child_write(&child, stale.id, true, since))
            .await,
        StoreError::ParentClosed,
        "a request untouched since before active_since",
    );
    assert_err(
        store
            .write_object(&child_write(&child, closed.id, false, since))
            .await,
        StoreError::ParentClosed,
        "a closed request refuses details too",
    );
    for scope in [
        other_partition(s),
        Scope {
            org: OrgId::new(),
            partition: Partition::Lab,
        },
    ] {
        let mut foreign = object(scope, Kind::Activity, at(t, 10));
        foreign.parent_id = Some(request.id);
        assert_err(
            store
                .write_object(&child_write(&foreign, request.id, true, since))
                .await,
            StoreError::ParentNotFound,
            "a parent in another scope",
        );
    }
    assert_eq!(store.object(s, child.id).await.expect("object"), None);
    for o in [&request, &activity, &closed, &stale, &edge] {
        assert_eq!(
            &read(store, s, o.id).await,
            o,
            "refused children change no parent"
        );
    }

    // touched == active_since is still active (the bound is inclusive).
    let edge_child = object(s, Kind::Activity, at(t, 11));
    store
        .write_object(&child_write(&edge_child, edge.id, true, since))
        .await
        .expect("child of a request touched at active_since");

    // Success refreshes the request's `touched`, and nothing else of it.
    store
        .write_object(&child_write(&child, request.id, true, since))
        .await
        .expect("child of an active request");
    assert_eq!(read(store, s, child.id).await, child);
    let mut expected = request.clone();
    expected.touched = child.last_updated;
    assert_eq!(
        read(store, s, request.id).await,
        expected,
        "the parent request's touched is the child's last_updated"
    );

    // A detail may hang under an activity, which is not refreshed.
    let detail = object(s, Kind::Detail, at(t, 20));
    store
        .write_object(&child_write(&detail, activity.id, false, since))
        .await
        .expect("detail under an activity");
    assert_eq!(
        read(store, s, activity.id).await,
        activity,
        "a parent that is not a request is left alone"
    );
    let detail2 = object(s, Kind::Detail, at(t, 30));
    store
        .write_object(&child_write(&detail2, request.id, false, since))
        .await
        .expect("detail under a request");
    expected.touched = detail2.last_updated;
    assert_eq!(
        read(store, s, request.id).await,
        expected,
        "a detail refreshes its parent request too"
    );

    // Parent checks apply to updates, and a failed write refreshes nothing.
    let mut moved = child.clone();
    moved.version = 2;
    moved.parent_id = Some(closed.id);
    moved.last_updated = at(t, 40);
    let write = contextd_core::store::ObjectWrite {
        expected_version: Some(1),
        ..child_write(&moved, closed.id, true, since)
    };
    assert_err(
        store.write_object(&write).await,
        StoreError::ParentClosed,
        "moving under a closed request",
    );
    assert_eq!(
        read(store, s, child.id).await,
        child,
        "a refused update changes nothing"
    );

    let mut again = child.clone();
    again.last_updated = at(t, 50);
    assert_err(
        store
            .write_object(&child_write(&again, request.id, true, since))
            .await,
        StoreError::AlreadyExists,
        "a duplicate insert under a parent",
    );
    assert_eq!(
        read(store, s, request.id).await,
        expected,
        "a refused child does not refresh its parent"
    );

    let mut moved = child.clone();
    moved.version = 2;
    moved.parent_id = Some(edge.id);
    moved.last_updated = at(t, 60);
    moved.touched = at(t, 60);
    let write = contextd_core::store::ObjectWrite {
        expected_version: Some(1),
        ..child_write(&moved, edge.id, true, since)
    };
    store
        .write_object(&write)
        .await
        .expect("moving under another active request");
    assert_eq!(read(store, s, child.id).await, moved);
    assert_eq!(
        read(store, s, edge.id).await.touched,
        moved.last_updated,
        "the new parent is refreshed"
    );
}

/// Concurrent writers: each gets its own answer, as if the writes ran one by one.
pub async fn check_concurrent_writes(store: &dyn Store) {
    let s = lab();
    let t = now();
    let objects: Vec<_> = (0..200)
        .map(|i| object(s, Kind::Activity, at(t, i)))
        .collect();
    let tokens: Vec<_> = objects.iter().map(|_| token()).collect();
    let first: Vec<_> = objects[..20]
        .iter()
        .zip(&tokens)
        .map(|(o, tok)| insert_write(o, &[*tok]))
        .collect();
    for r in join_all(first.iter().map(|w| store.write_object(w)).collect()).await {
        r.expect("concurrent insert");
    }
    // The rest, interleaved with duplicates of the first twenty.
    let mut writes = Vec::new();
    for (i, (o, tok)) in objects.iter().zip(&tokens).enumerate().skip(20) {
        writes.push((true, insert_write(o, &[*tok])));
        if i % 9 == 0 {
            writes.push((false, insert_write(&objects[i % 20], &[token()])));
        }
    }
    let results = join_all(writes.iter().map(|(_, w)| store.write_object(w)).collect()).await;
    for ((fresh, w), r) in writes.iter().zip(results) {
        if *fresh {
            assert!(
                r.is_ok(),
                "concurrent insert of {} failed: {r:?}",
                w.object.id
            );
        } else {
            assert_err(
                r,
                StoreError::AlreadyExists,
                "a duplicate among concurrent inserts",
            );
        }
    }
    let all = search(store, s, &plan(Kind::Activity)).await;
    assert_eq!(all.total, 200, "every concurrent insert is stored once");
    for (o, tok) in objects.iter().zip(&tokens).step_by(37) {
        let found = search(
            store,
            s,
            &plan_with(Kind::Activity, true, vec![Condition::Tokens(vec![*tok])]),
        )
        .await;
        assert_eq!(
            found.ids,
            vec![o.id],
            "each concurrent insert keeps its own tokens"
        );
    }

    // Many updates from the same version: exactly one wins.
    let target = &objects[0];
    let updates: Vec<_> = (0..40)
        .map(|i| {
            let mut o = target.clone();
            o.version = 2;
            o.tags = vec![format!("writer-{i}")];
            update_write(&o, &[], 1)
        })
        .collect();
    let results = join_all(updates.iter().map(|w| store.write_object(w)).collect()).await;
    let winners: Vec<_> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one of the concurrent updates from version 1 wins"
    );
    for r in results.into_iter().filter(|r| r.is_err()) {
        assert_err(
            r,
            StoreError::VersionConflict { current: 2 },
            "a losing concurrent update",
        );
    }
    let stored = read(store, s, target.id).await;
    assert_eq!(stored.version, 2);
    assert_eq!(
        stored.tags,
        vec![format!("writer-{}", winners[0])],
        "the stored object is the winner's"
    );
}

/// Flush deletes every object of one kind in one scope, with its tokens, and nothing else.
pub async fn check_flush(store: &dyn Store) {
    let s = lab();
    let prod = other_partition(s);
    let other = lab();
    let t = now();
    let doomed: Vec<_> = (0..3)
        .map(|i| object(s, Kind::Activity, at(t, i)))
        .collect();
    let doomed_tokens: Vec<_> = doomed.iter().map(|_| token()).collect();
    for (o, tok) in doomed.iter().zip(&doomed_tokens) {
        insert(store, o, &[*tok]).await;
    }
    let customer = object(s, Kind::Customer, t);
    let customer_token = token();
    insert(store, &customer, &[customer_token]).await;
    let prod_activity = object(prod, Kind::Activity, t);
    insert(store, &prod_activity, &[doomed_tokens[0]]).await;
    let other_activity = object(other, Kind::Activity, t);
    insert(store, &other_activity, &[doomed_tokens[1]]).await;

    assert_eq!(
        store.flush(s, Kind::Activity, &by()).await.expect("flush"),
        3,
        "flush returns how many it deleted"
    );
    assert_eq!(
        search(store, s, &plan(Kind::Activity)).await.total,
        0,
        "no activity is left in the scope"
    );
    for o in &doomed {
        assert_eq!(store.object(s, o.id).await.expect("object"), None);
    }
    let found = search(
        store,
        s,
        &plan_with(
            Kind::Activity,
            false,
            vec![Condition::Tokens(doomed_tokens.clone())],
        ),
    )
    .await;
    assert!(found.ids.is_empty(), "flushed tokens are gone");
    assert!(
        !store
            .any_token_in_use(s.org, &doomed_tokens[1..])
            .await
            .expect("any_token_in_use"),
        "flushed tokens are no longer in use in the org"
    );
    assert!(
        store
            .any_token_in_use(s.org, &[doomed_tokens[0]])
            .await
            .expect("any_token_in_use"),
        "the other partition's tokens are kept"
    );
    assert_eq!(
        read(store, s, customer.id).await,
        customer,
        "other kinds are kept"
    );
    assert_eq!(
        search(
            store,
            s,
            &plan_with(
                Kind::Customer,
                true,
                vec![Condition::Tokens(vec![customer_token])]
            )
        )
        .await
        .ids,
        vec![customer.id]
    );
    assert_eq!(
        read(store, prod, prod_activity.id).await,
        prod_activity,
        "the other partition is kept"
    );
    assert_eq!(
        read(store, other, other_activity.id).await,
        other_activity,
        "other orgs are kept"
    );

    assert_eq!(
        store.flush(s, Kind::Activity, &by()).await.expect("flush"),
        0,
        "a second flush finds nothing"
    );
    insert(store, &doomed[0], &[doomed_tokens[0]]).await;
    assert_eq!(
        read(store, s, doomed[0].id).await,
        doomed[0],
        "a flushed id can be written again"
    );
}

/// Auto-close: active requests (all orgs and partitions) untouched since before the cutoff.
pub async fn check_close_stale_requests(store: &dyn Store) {
    // Times in 1971, which no other check uses, so that the sweep (which spans all orgs) does
    // not close requests of other checks sharing the database.
    let base = contextd_core::time::from_millis(31_536_000_000);
    let cutoff = at(base, 10_000);
    let now = now();
    let a = lab();
    let b = Scope {
        org: OrgId::new(),
        partition: Partition::Production,
    };

    let stale_a = object(a, Kind::Request, base);
    let stale_b = object(b, Kind::Request, at(base, 1));
    let at_cutoff = object(a, Kind::Request, cutoff);
    let mut already_closed = object(a, Kind::Request, base);
    already_closed.state = State::Closed;
    let not_a_request = object(a, Kind::Activity, base);
    let fresh = object(b, Kind::Request, at(cutoff, 1_000));
    let mut touched_late = object(a, Kind::Request, base);
    touched_late.touched = at(cutoff, 5);
    let all = [
        &stale_a,
        &stale_b,
        &at_cutoff,
        &already_closed,
        &not_a_request,
        &fresh,
        &touched_late,
    ];
    for o in all {
        insert(store, o, &[]).await;
    }

    let n = store
        .close_stale_requests(cutoff, now)
        .await
        .expect("close_stale_requests");
    assert!(n >= 2, "both stale requests are counted, got {n}");
    for o in [&stale_a, &stale_b] {
        let mut expected = (*o).clone();
        expected.state = State::Closed;
        expected.version += 1;
        expected.last_updated = now;
        assert_eq!(
            read(store, o.scope, o.id).await,
            expected,
            "a stale request is closed, version+1, last_updated = now"
        );
    }
    for o in [
        &at_cutoff,
        &already_closed,
        &not_a_request,
        &fresh,
        &touched_late,
    ] {
        assert_eq!(
            &read(store, o.scope, o.id).await,
            o,
            "only active requests touched before the cutoff are closed"
        );
    }

    store
        .close_stale_requests(cutoff, at(now, 1))
        .await
        .expect("close_stale_requests");
    assert_eq!(
        read(store, a, stale_a.id).await.version,
        2,
        "a closed request is not closed again"
    );
}

/// Links to customers are checked inside the write (`customer_check`), and several writes can
/// be one transaction (`write_objects`): all of them or none.
pub async fn check_linked_writes(store: &dyn Store) {
    let s = lab();
    let t = now();
    let customer = object(s, Kind::Customer, t);
    insert(store, &customer, &[]).await;
    let not_a_customer = object(s, Kind::Request, t);
    insert(store, &not_a_customer, &[]).await;
    let linked = |to: ObjectId| {
        let mut o = object(s, Kind::Activity, t);
        o.customer_id = Some(to);
        ObjectWrite {
            customer_check: Some(to),
            ..insert_write(&o, &[token()])
        }
    };
    let ok = linked(customer.id);
    store.write_object(&ok).await.expect("linked to a customer");
    read(store, s, ok.object.id).await;
    for (to, what) in [
        (ObjectId::new(), "an unknown customer"),
        (not_a_customer.id, "a request as customer"),
    ] {
        let w = linked(to);
        assert_err(
            store.write_object(&w).await,
            StoreError::CustomerNotFound,
            what,
        );
        assert_eq!(
            store.object(s, w.object.id).await.expect("read"),
            None,
            "{what}: nothing written"
        );
    }
    let w = linked(customer.id);
    let mut elsewhere = linked(customer.id);
    elsewhere.object.scope = other_partition(s);
    assert_err(
        store.write_object(&elsewhere).await,
        StoreError::CustomerNotFound,
        "a customer of another partition",
    );
    // An update that moves an object to a customer checks it too.
    let mut moved = ok.object.clone();
    moved.version = 2;
    let bad_move = ObjectWrite {
        customer_check: Some(ObjectId::new()),
        ..update_write(&moved, &[], 1)
    };
    assert_err(
        store.write_object(&bad_move).await,
        StoreError::CustomerNotFound,
        "a move to nowhere",
    );
    assert_eq!(
        read(store, s, ok.object.id).await.version,
        1,
        "the refused move changed nothing"
    );

    // All or nothing.
    let mut first = w.object.clone();
    first.id = ObjectId::new();
    let mut second = ok.object.clone();
    second.version = 2;
    second.tags = vec!["moved".into()];
    let stale = update_write(&second, &[], 7);
    assert_err(
        store
            .write_objects(&[insert_write(&first, &[]), stale])
            .await,
        StoreError::VersionConflict { current: 1 },
        "a batch with a stale write",
    );
    assert_eq!(
        store.object(s, first.id).await.expect("read"),
        None,
        "nothing of the batch written"
    );
    store
        .write_objects(&[insert_write(&first, &[]), update_write(&second, &[], 1)])
        .await
        .expect("a good batch");
    read(store, s, first.id).await;
    assert_eq!(
        read(store, s, second.id).await.tags,
        vec!["moved".to_owned()]
    );
}

/// The reads and writes of a batch import: `objects` reads many ids at once, in scope only;
/// a parent check with `closed_allowed` accepts a closed or stale request (and refreshes its
/// `touched`, never moving it back) but still refuses a missing parent; a batch of inserts
/// is one transaction.
pub async fn check_batch_import(store: &dyn Store) {
    let s = lab();
    let t = now();
    let customer = object(s, Kind::Customer, t);
    let request = object(s, Kind::Request, at(t, 1));
    let elsewhere = object(other_partition(s), Kind::Customer, t);
    for o in [&customer, &request, &elsewhere] {
        insert(store, o, &[]).await;
    }
    let mut found = store
        .objects(s, &[request.id, ObjectId::new(), customer.id, elsewhere.id])
        .await
        .expect("objects");
    found.sort_by_key(|o| o.kind != Kind::Customer);
    assert_eq!(
        found,
        vec![customer.clone(), request.clone()],
        "objects reads those in scope and leaves out unknown ids and other partitions"
    );
    assert!(store.objects(s, &[]).await.expect("objects").is_empty());

    let since = at(t, -1_000);
    let mut closed = object(s, Kind::Request, at(t, -5_000));
    closed.state = State::Closed;
    insert(store, &closed, &[]).await;
    let history = |child: &contextd_core::store::StoredObject, parent: ObjectId| {
        let mut w = child_write(child, parent, true, since);
        if let Some(check) = w.parent_check.as_mut() {
            check.closed_allowed = true;
        }
        w
    };
    let old = object(s, Kind::Activity, at(t, -6_000));
    store
        .write_object(&history(&old, closed.id))
        .await
        .expect("an imported activity of a closed request");
    assert_eq!(read(store, s, old.id).await, old);
    assert_eq!(
        read(store, s, closed.id).await.touched,
        closed.touched,
        "an older child does not move the parent's touched back"
    );
    let missing = object(s, Kind::Activity, t);
    assert_err(
        store
            .write_object(&history(&missing, ObjectId::new()))
            .await,
        StoreError::ParentNotFound,
        "an import still needs its parent",
    );

    // One transaction: the duplicate at the end refuses the whole batch.
    let fresh: Vec<_> = (0..3)
        .map(|i| object(s, Kind::Customer, at(t, 10 + i)))
        .collect();
    let mut writes: Vec<ObjectWrite> = fresh.iter().map(|o| insert_write(o, &[])).collect();
    writes.push(insert_write(&customer, &[]));
    assert_err(
        store.write_objects(&writes).await,
        StoreError::AlreadyExists,
        "a batch with an id taken",
    );
    let ids: Vec<ObjectId> = fresh.iter().map(|o| o.id).collect();
    assert!(
        store.objects(s, &ids).await.expect("objects").is_empty(),
        "a refused batch writes nothing"
    );
    writes.pop();
    store.write_objects(&writes).await.expect("write_objects");
    assert_eq!(store.objects(s, &ids).await.expect("objects").len(), 3);

    // A refusal in the middle of a batch is the batch's answer, and nothing of it is written.
    let open = object(s, Kind::Request, t);
    insert(store, &open, &[]).await;
    let children: Vec<_> = (0..3)
        .map(|i| object(s, Kind::Activity, at(t, 20 + i)))
        .collect();
    let mixed = vec![
        child_write(&children[0], open.id, true, since),
        child_write(&children[1], closed.id, true, since),
        child_write(&children[2], open.id, true, since),
    ];
    assert_err(
        store.write_objects(&mixed).await,
        StoreError::ParentClosed,
        "a batch with a child of a closed request",
    );
    let child_ids: Vec<ObjectId> = children.iter().map(|o| o.id).collect();
    assert!(store
        .objects(s, &child_ids)
        .await
        .expect("objects")
        .is_empty());

    // An erased customer is remembered, in its own partition only.
    store
        .erase_customer(s, fresh[0].id, &by())
        .await
        .expect("erase_customer");
    assert_eq!(
        store.erased(s, &ids).await.expect("erased"),
        vec![fresh[0].id]
    );
    assert!(store
        .erased(other_partition(s), &ids)
        .await
        .expect("erased")
        .is_empty());
}
