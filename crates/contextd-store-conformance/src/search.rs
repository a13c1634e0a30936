//! Search, paging and timelines.

use contextd_core::ids::ObjectId;
use contextd_core::object::{Kind, MediaType, State};
use contextd_core::store::{
    Condition, PagePosition, SearchPlan, Store, StoredObject, TimelineQuery, Token,
};
use uuid::Uuid;

use crate::fixtures::*;

/// Conditions, AND/OR, token sets, date bounds, `not_exists`, kinds.
pub async fn check_search_semantics(store: &dyn Store) {
    let s = lab();
    let t = now();
    let (ta, tb, tc, tp) = (token(), token(), token(), token());
    let (cust_x, cust_y) = (ObjectId::new(), ObjectId::new());
    let (p1, p2) = (ObjectId::new(), ObjectId::new());

    let activity = |created: i64, updated: i64, media: MediaType, state: State| {
        let mut o = object(s, Kind::Activity, at(t, created));
        o.last_updated = at(t, updated);
        o.touched = o.last_updated;
        o.media_type = Some(media);
        o.state = state;
        o
    };
    let mut a1 = activity(1, 1, MediaType::Chat, State::Active);
    a1.customer_id = Some(cust_x);
    a1.parent_id = Some(p1);
    let mut a2 = activity(2, 5, MediaType::Voice, State::Closed);
    a2.customer_id = Some(cust_x);
    a2.parent_id = Some(p2);
    let mut a3 = activity(3, 3, MediaType::Chat, State::Closed);
    a3.customer_id = Some(cust_y);
    let a4 = activity(4, 4, MediaType::Voice, State::Active);
    insert(store, &a1, &[ta, tb]).await;
    insert(store, &a2, &[tb]).await;
    insert(store, &a3, &[tc]).await;
    insert(store, &a4, &[ta, tp]).await;
    // Same tokens on objects of another kind and another scope: never returned.
    insert(store, &object(s, Kind::Customer, t), &[ta, tb, tc]).await;
    insert(
        store,
        &object(other_partition(s), Kind::Activity, t),
        &[ta, tb, tc],
    )
    .await;

    let ids = |v: &[&StoredObject]| v.iter().map(|o| o.id).collect::<Vec<_>>();
    let all = |conditions| plan_with(Kind::Activity, true, conditions);
    let any = |conditions| plan_with(Kind::Activity, false, conditions);
    let cases: Vec<(&str, SearchPlan, Vec<ObjectId>)> = vec![
        (
            "no condition: every object of the kind",
            plan(Kind::Activity),
            ids(&[&a2, &a4, &a3, &a1]),
        ),
        (
            "one token",
            all(vec![Condition::Tokens(vec![ta])]),
            ids(&[&a4, &a1]),
        ),
        (
            "tokens of one condition are OR-ed",
            all(vec![Condition::Tokens(vec![ta, tc])]),
            ids(&[&a4, &a3, &a1]),
        ),
        (
            "an unknown token",
            all(vec![Condition::Tokens(vec![token()])]),
            vec![],
        ),
        (
            "match all",
            all(vec![
                Condition::Tokens(vec![tb]),
                Condition::States {
                    states: vec![State::Closed],
                    active_since: contextd_core::time::from_millis(0),
                },
            ]),
            ids(&[&a2]),
        ),
        (
            "match any",
            any(vec![
                Condition::Tokens(vec![tc]),
                Condition::MediaTypes(vec![MediaType::Voice]),
            ]),
            ids(&[&a2, &a4, &a3]),
        ),
        (
            "customer and media type",
            all(vec![
                Condition::CustomerIds(vec![cust_x]),
                Condition::MediaTypes(vec![MediaType::Chat]),
            ]),
            ids(&[&a1]),
        ),
        (
            "customers OR-ed",
            all(vec![Condition::CustomerIds(vec![cust_y, cust_x])]),
            ids(&[&a2, &a3, &a1]),
        ),
        (
            "parents",
            all(vec![Condition::ParentIds(vec![p1, p2])]),
            ids(&[&a2, &a1]),
        ),
        (
            "ids",
            all(vec![Condition::Ids(vec![a3.id, a1.id, ObjectId::new()])]),
            ids(&[&a3, &a1]),
        ),
        (
            "states",
            all(vec![Condition::States {
                states: vec![State::Active],
                active_since: contextd_core::time::from_millis(0),
            }]),
            ids(&[&a4, &a1]),
        ),
        (
            "both states",
            all(vec![Condition::States {
                states: vec![State::Active, State::Closed],
                active_since: contextd_core::time::from_millis(0),
            }]),
            ids(&[&a2, &a4, &a3, &a1]),
        ),
        (
            "ids and tokens",
            all(vec![
                Condition::Ids(vec![a1.id, a2.id]),
                Condition::Tokens(vec![ta]),
            ]),
            ids(&[&a1]),
        ),
        (
            "match any with one condition",
            any(vec![Condition::Tokens(vec![tb])]),
            ids(&[&a2, &a1]),
        ),
        (
            "an empty condition matches nothing under match all",
            all(vec![
                Condition::Tokens(vec![]),
                Condition::States {
                    states: vec![State::Active],
                    active_since: contextd_core::time::from_millis(0),
                },
            ]),
            vec![],
        ),
        (
            "an empty condition adds nothing under match any",
            any(vec![Condition::Ids(vec![]), Condition::Ids(vec![a3.id])]),
            ids(&[&a3]),
        ),
        (
            "not_exists",
            SearchPlan {
                not_exists: vec![tp],
                ..plan(Kind::Activity)
            },
            ids(&[&a2, &a3, &a1]),
        ),
        (
            "not_exists with conditions",
            SearchPlan {
                not_exists: vec![tp, tc],
                ..all(vec![Condition::Tokens(vec![ta, tc])])
            },
            ids(&[&a1]),
        ),
        (
            "created bounds are inclusive",
            SearchPlan {
                created_from: Some(at(t, 2)),
                created_to: Some(at(t, 3)),
                ..plan(Kind::Activity)
            },
            ids(&[&a2, &a3]),
        ),
        (
            "updated_from",
            SearchPlan {
                updated_from: Some(at(t, 4)),
                ..plan(Kind::Activity)
            },
            ids(&[&a2, &a4]),
        ),
        (
            "updated_to",
            SearchPlan {
                updated_to: Some(at(t, 3)),
                ..plan(Kind::Activity)
            },
            ids(&[&a3, &a1]),
        ),
        (
            "updated bounds on one instant",
            SearchPlan {
                updated_from: Some(at(t, 5)),
                updated_to: Some(at(t, 5)),
                ..plan(Kind::Activity)
            },
            ids(&[&a2]),
        ),
        (
            "date bounds are AND-ed under match any",
            SearchPlan {
                created_to: Some(at(t, 3)),
                ..any(vec![
                    Condition::Tokens(vec![tc]),
                    Condition::States {
                        states: vec![State::Active],
                        active_since: contextd_core::time::from_millis(0),
                    },
                ])
            },
            ids(&[&a3, &a1]),
        ),
        (
            "many values",
            all(vec![Condition::Ids(
                (0..300).map(|_| ObjectId::new()).chain([a4.id]).collect(),
            )]),
            ids(&[&a4]),
        ),
        (
            "many tokens",
            all(vec![Condition::Tokens(
                (0..299)
                    .map(|_| token())
                    .chain([tc])
                    .collect::<Vec<Token>>(),
            )]),
            ids(&[&a3]),
        ),
    ];
    for (what, plan, expected) in cases {
        let found = search(store, s, &plan).await;
        assert_eq!(found.ids, expected, "{what}");
        assert_eq!(found.total, expected.len() as u64, "{what}: total");
        assert_eq!(found.next, None, "{what}: one page, no next");
    }

    let found = search(
        store,
        s,
        &plan_with(Kind::Customer, true, vec![Condition::Tokens(vec![ta])]),
    )
    .await;
    assert_eq!(
        found.ids.len(),
        1,
        "only objects of the plan's kind are returned"
    );

    check_state_cutoff(store).await;
}

/// `Condition::States` applies the auto-close cutoff: an active request untouched since
/// before `active_since` is closed to a search, whether or not the sweep has closed it yet;
/// one touched at or after it is active; objects of other kinds keep their stored state.
async fn check_state_cutoff(store: &dyn Store) {
    let s = lab();
    let t = now();
    let cutoff = at(t, -1_000);
    let request = |touched: i64, state: State| {
        let mut o = object(s, Kind::Request, at(t, -5_000));
        o.touched = at(t, touched);
        o.state = state;
        o
    };
    let stale = request(-1_001, State::Active);
    let edge = request(-1_000, State::Active);
    let fresh = request(0, State::Active);
    let closed = request(0, State::Closed);
    let mut old_activity = object(s, Kind::Activity, at(t, -5_000));
    old_activity.touched = at(t, -5_000);
    for o in [&stale, &edge, &fresh, &closed, &old_activity] {
        insert(store, o, &[]).await;
    }
    let states = |kind, states: Vec<State>| {
        plan_with(
            kind,
            true,
            vec![Condition::States {
                states,
                active_since: cutoff,
            }],
        )
    };
    let mut active = vec![edge.id, fresh.id];
    active.sort_by(|a, b| b.cmp(a));
    let mut closed_ids = vec![stale.id, closed.id];
    closed_ids.sort_by(|a, b| b.cmp(a));
    // All requests share last_updated, so the order is by id descending.
    let cases = vec![
        (
            "a stale active request is not active",
            states(Kind::Request, vec![State::Active]),
            active.clone(),
        ),
        (
            "a stale active request is closed",
            states(Kind::Request, vec![State::Closed]),
            closed_ids.clone(),
        ),
        (
            "both states: every request once",
            states(Kind::Request, vec![State::Active, State::Closed]),
            {
                let mut all = vec![stale.id, edge.id, fresh.id, closed.id];
                all.sort_by(|a, b| b.cmp(a));
                all
            },
        ),
        (
            "other kinds keep their stored state",
            states(Kind::Activity, vec![State::Active]),
            vec![old_activity.id],
        ),
        (
            "an old active activity is not closed",
            states(Kind::Activity, vec![State::Closed]),
            vec![],
        ),
        (
            "the cutoff under match any",
            plan_with(
                Kind::Request,
                false,
                vec![
                    Condition::Ids(vec![closed.id]),
                    Condition::States {
                        states: vec![State::Active],
                        active_since: cutoff,
                    },
                ],
            ),
            {
                let mut v = vec![edge.id, fresh.id, closed.id];
                v.sort_by(|a, b| b.cmp(a));
                v
            },
        ),
    ];
    for (what, plan, expected) in cases {
        let found = search(store, s, &plan).await;
        assert_eq!(found.ids, expected, "{what}");
        assert_eq!(found.total, expected.len() as u64, "{what}: total");
    }
    assert_eq!(
        read(store, s, stale.id).await,
        stale,
        "searching closes nothing: the stored state is the sweep's to change"
    );
}

/// Pages: order with ties, `after` strictly after, `total` over all pages, `next` only when
/// more follow.
pub async fn check_paging(store: &dyn Store) {
    let s = lab();
    let t = now();
    let shared = token();
    let mut objects = Vec::new();
    for i in 0..25 {
        // Triples share a last_updated, so ties are broken by id.
        let mut o = object(s, Kind::Customer, at(t, -i));
        o.last_updated = at(t, i / 3);
        o.touched = o.last_updated;
        let tokens = if i % 2 == 0 { vec![shared] } else { vec![] };
        insert(store, &o, &tokens).await;
        objects.push(o);
    }
    let refs: Vec<&StoredObject> = objects.iter().collect();
    let expected = by_updated(&refs);
    let position = |id: ObjectId| {
        let o = objects.iter().find(|o| o.id == id).expect("known id");
        PagePosition {
            time: o.last_updated,
            id,
        }
    };

    let mut seen = Vec::new();
    let mut after = None;
    for (page, size) in [(1, 10), (2, 10), (3, 5)] {
        let found = search(
            store,
            s,
            &SearchPlan {
                limit: 10,
                after,
                ..plan(Kind::Customer)
            },
        )
        .await;
        assert_eq!(found.ids.len(), size, "page {page} size");
        assert_eq!(
            found.total, 25,
            "page {page}: total counts every match, whatever the page"
        );
        let last = *found.ids.last().expect("non-empty page");
        if page < 3 {
            assert_eq!(
                found.next,
                Some(position(last)),
                "page {page}: next is the last item's position"
            );
        } else {
            assert_eq!(found.next, None, "the last page has no next");
        }
        seen.extend(found.ids);
        after = found.next;
    }
    assert_eq!(
        seen, expected,
        "pages in order: newest last_updated first, then id descending"
    );

    let found = search(
        store,
        s,
        &SearchPlan {
            limit: 25,
            ..plan(Kind::Customer)
        },
    )
    .await;
    assert_eq!(
        (found.ids.len(), found.next),
        (25, None),
        "a page that holds exactly every match has no next"
    );
    let found = search(
        store,
        s,
        &SearchPlan {
            limit: 24,
            ..plan(Kind::Customer)
        },
    )
    .await;
    assert_eq!(found.next, Some(position(expected[23])));

    // `after` may be any position, not only an item's; it is strict.
    let cut = PagePosition {
        time: at(t, 3),
        id: ObjectId(Uuid::max()),
    };
    let found = search(
        store,
        s,
        &SearchPlan {
            after: Some(cut),
            ..plan(Kind::Customer)
        },
    )
    .await;
    let tail: Vec<_> = expected
        .iter()
        .copied()
        .filter(|id| position(*id).time <= at(t, 3))
        .collect();
    assert_eq!(found.ids, tail, "after a position between items");
    assert_eq!(found.total, 25, "total ignores after");
    let found = search(
        store,
        s,
        &SearchPlan {
            after: Some(position(expected[4])),
            ..plan(Kind::Customer)
        },
    )
    .await;
    assert_eq!(
        found.ids,
        expected[5..].to_vec(),
        "the item at the after position is excluded"
    );
    let found = search(
        store,
        s,
        &SearchPlan {
            after: Some(position(expected[24])),
            ..plan(Kind::Customer)
        },
    )
    .await;
    assert_eq!(
        (found.ids.len(), found.total, found.next),
        (0, 25, None),
        "after the last item"
    );

    // Paging a filtered search.
    let matching: Vec<ObjectId> = expected
        .iter()
        .copied()
        .filter(|id| {
            objects
                .iter()
                .position(|o| o.id == *id)
                .is_some_and(|i| i % 2 == 0)
        })
        .collect();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let plan = SearchPlan {
            limit: 5,
            after,
            ..plan_with(Kind::Customer, true, vec![Condition::Tokens(vec![shared])])
        };
        let found = search(store, s, &plan).await;
        assert_eq!(found.total, 13, "total of a filtered search");
        seen.extend(found.ids);
        match found.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen, matching,
        "a filtered search pages through every match once"
    );
}

/// A customer's requests, activities and details, newest `created` first.
pub async fn check_timeline(store: &dyn Store) {
    let s = lab();
    let t = now();
    let customer = object(s, Kind::Customer, t);
    insert(store, &customer, &[]).await;
    let of = |kind, created: i64, media: Option<MediaType>| {
        let mut o = object(s, kind, at(t, created));
        o.customer_id = Some(customer.id);
        // last_updated runs against created, so only created can explain the order.
        o.last_updated = at(t, 1_000 - created);
        o.touched = o.last_updated;
        if kind == Kind::Activity {
            o.media_type = media;
        }
        o
    };
    let r1 = of(Kind::Request, 1, None);
    let a1 = of(Kind::Activity, 2, Some(MediaType::Chat));
    let a2 = of(Kind::Activity, 3, Some(MediaType::Voice));
    let a3 = of(Kind::Activity, 3, Some(MediaType::Chat));
    let d1 = of(Kind::Detail, 4, None);
    let a4 = of(Kind::Activity, 5, Some(MediaType::Chat));
    let mine = [&r1, &a1, &a2, &a3, &d1, &a4];
    for o in mine {
        insert(store, o, &[]).await;
    }
    // Not on this timeline: another customer, another partition, a customer-kind object.
    let mut elsewhere = of(Kind::Activity, 6, Some(MediaType::Chat));
    elsewhere.customer_id = Some(ObjectId::new());
    insert(store, &elsewhere, &[]).await;
    let mut other_scope = of(Kind::Activity, 6, Some(MediaType::Chat));
    other_scope.scope = other_partition(s);
    insert(store, &other_scope, &[]).await;
    let mut odd = object(s, Kind::Customer, at(t, 7));
    odd.customer_id = Some(customer.id);
    insert(store, &odd, &[]).await;

    let query = |media_type, limit, after| TimelineQuery {
        customer_id: customer.id,
        media_type,
        limit,
        after,
    };
    let expected = by_created(&mine);
    let page = store
        .timeline(s, &query(None, 100, None))
        .await
        .expect("timeline");
    let mut expected_objects: Vec<StoredObject> = mine.iter().map(|o| (*o).clone()).collect();
    expected_objects.sort_by_key(|o| std::cmp::Reverse((o.created, o.id)));
    let items: Vec<StoredObject> = page
        .items
        .into_iter()
        .map(|o| o.into_object(s).expect("a stored row decodes"))
        .collect();
    assert_eq!(
        items, expected_objects,
        "requests, activities and details of the customer, newest created first"
    );
    assert_eq!((page.total, page.next), (6, None));

    let chat = store
        .timeline(s, &query(Some(MediaType::Chat), 100, None))
        .await
        .expect("timeline");
    let chats = by_created(&[&a1, &a3, &a4]);
    assert_eq!(
        chat.items.iter().map(|o| o.id).collect::<Vec<_>>(),
        chats,
        "a media type keeps only those activities"
    );
    assert_eq!(chat.total, 3);
    let none = store
        .timeline(s, &query(Some(MediaType::Email), 100, None))
        .await
        .expect("timeline");
    assert_eq!((none.items.len(), none.total, none.next), (0, 0, None));

    let mut seen = Vec::new();
    let mut after = None;
    for page_no in 1..=3 {
        let page = store
            .timeline(s, &query(None, 2, after))
            .await
            .expect("timeline");
        assert_eq!(
            page.total, 6,
            "timeline page {page_no}: total counts every match"
        );
        let last = page.items.last().expect("non-empty page");
        let position = PagePosition {
            time: last.created,
            id: last.id,
        };
        assert_eq!(
            page.next,
            (page_no < 3).then_some(position),
            "timeline page {page_no}: next is (created, id) of the last item"
        );
        seen.extend(page.items.iter().map(|o| o.id));
        after = page.next;
    }
    assert_eq!(seen, expected, "timeline pages in order");

    let page = store
        .timeline(s, &query(Some(MediaType::Chat), 1, None))
        .await
        .expect("timeline");
    assert_eq!(page.total, 3);
    let page = store
        .timeline(s, &query(Some(MediaType::Chat), 5, page.next))
        .await
        .expect("timeline");
    assert_eq!(
        page.items.iter().map(|o| o.id).collect::<Vec<_>>(),
        chats[1..].to_vec(),
        "filtered timeline paging"
    );

    let empty = store
        .timeline(
            s,
            &TimelineQuery {
                customer_id: ObjectId::new(),
                media_type: None,
                limit: 10,
                after: None,
            },
        )
        .await;
    let empty = empty.expect("timeline");
    assert_eq!(
        (empty.items.len(), empty.total),
        (0, 0),
        "an unknown customer has an empty timeline"
    );
}
