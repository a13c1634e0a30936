//! The audit log kept for years: hash chains per scope, their heads, monthly segments that
//! can be dropped, and verification across them (`contextd_core::audit_admin`).

use chrono::{DateTime, Duration, Utc};
use contextd_core::audit_admin;
use contextd_core::auth::Role;
use contextd_core::ids::Scope;
use contextd_core::object::Kind;
use contextd_core::store::{
    chain_hash, AuditEntry, AuditQuery, ChainHash, ChainHead, ChainedEntry, Month, SegmentHead,
    SegmentPosition, Store, StoreError, GENESIS,
};
use uuid::Uuid;

use crate::fixtures::{assert_err, lab, now, other_partition};

fn entry(scope: Scope, at: DateTime<Utc>, action: &str, object: Option<&str>) -> AuditEntry {
    AuditEntry {
        id: Uuid::now_v7(),
        scope,
        at,
        actor: Some(Uuid::now_v7()),
        actor_role: Some(Role::Admin),
        action: action.into(),
        object_kind: object.map(|_| Kind::Customer),
        object_id: object.map(str::to_owned),
        fields: vec!["Context_First_Name".into(), "Context_Last_Name".into()],
        detail: "read: 1 object".into(),
    }
}

/// `entries` chained from `prev`, numbered from `first`.
fn chained(entries: &[&AuditEntry], first: u64, prev: ChainHash) -> Vec<ChainedEntry> {
    let mut prev = prev;
    entries
        .iter()
        .zip(first..)
        .map(|(e, seq)| {
            let hash = chain_hash(&prev, seq, e);
            prev = hash;
            ChainedEntry {
                entry: (*e).clone(),
                seq,
                hash,
            }
        })
        .collect()
}

/// A segment's entries of `scope`, read `page` at a time; checks on the way that the segment
/// lists each chain's entries together, in `seq` order.
async fn chain_in(store: &dyn Store, month: Month, scope: Scope, page: usize) -> Vec<ChainedEntry> {
    let mut out = Vec::new();
    let mut after = None;
    let mut finished: Vec<Scope> = Vec::new();
    let mut last: Option<(Scope, u64)> = None;
    loop {
        let got = store
            .audit_segment_entries(month, after, page)
            .await
            .expect("audit_segment_entries");
        assert!(got.len() <= page, "at most a page");
        for e in &got {
            let s = e.entry.scope;
            match last {
                Some((l, seq)) if l == s => assert_eq!(e.seq, seq + 1, "a chain in seq order"),
                Some((l, _)) => {
                    finished.push(l);
                    assert!(
                        !finished.contains(&s),
                        "a chain's entries are listed together"
                    );
                }
                None => {}
            }
            last = Some((s, e.seq));
        }
        let done = got.len() < page;
        after = got.last().map(SegmentPosition::after);
        out.extend(got.into_iter().filter(|e| e.entry.scope == scope));
        if done {
            return out;
        }
    }
}

async fn read(store: &dyn Store, scope: Scope, query: AuditQuery) -> Vec<Uuid> {
    store
        .audit(scope, &query)
        .await
        .expect("audit")
        .iter()
        .map(|e| e.id)
        .collect()
}

async fn whole(store: &dyn Store, what: &str) {
    let report = audit_admin::verify(store).await.expect("verify");
    assert!(report.is_whole(), "{what}: {:?}", report.first_broken);
}

/// Chains: each scope's entries are numbered from 1 in append order and linked by
/// `chain_hash` from `GENESIS`, whatever the batches; the heads and the segment's heads say
/// so; segment pages resume after a position; reads find entries by any kind of object id.
pub async fn check_audit_chain(store: &dyn Store) {
    let scope = lab();
    let other = other_partition(scope);
    let t = now();
    let month = Month::of(t);
    let customer = Uuid::now_v7().to_string();
    let first = vec![
        entry(scope, t, "pii.read", Some(&customer)),
        entry(scope, t, "key.create", None),
    ];
    let second = vec![
        entry(scope, t, "pii.search", Some("")),
        entry(other, t, "pii.read", Some(&customer)),
        entry(scope, t, "field.create", Some("Fixture_Tier")),
    ];
    store.append_audit(&first).await.expect("append");
    store.append_audit(&second).await.expect("append");

    let ours = chained(&[&first[0], &first[1], &second[0], &second[2]], 1, GENESIS);
    let theirs = chained(&[&second[1]], 1, GENESIS);
    assert_eq!(
        chain_in(store, month, scope, 1000).await,
        ours,
        "numbered and linked in append order, round trip"
    );
    assert_eq!(chain_in(store, month, scope, 2).await, ours, "paged");
    assert_eq!(chain_in(store, month, other, 1000).await, theirs);

    let heads = store.audit_heads().await.expect("audit_heads");
    assert!(heads.contains(&ChainHead {
        scope,
        seq: 4,
        hash: ours[3].hash
    }));
    assert!(heads.contains(&ChainHead {
        scope: other,
        seq: 1,
        hash: theirs[0].hash
    }));
    let entered = store
        .audit_segment_heads(month)
        .await
        .expect("audit_segment_heads");
    assert!(entered.contains(&SegmentHead {
        scope,
        first_seq: 1,
        prev_hash: GENESIS
    }));
    let segments = store.audit_segments().await.expect("audit_segments");
    assert!(
        segments.iter().any(|s| s.month == month && s.entries >= 5),
        "{segments:?}"
    );

    let all = read(
        store,
        scope,
        AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        },
    )
    .await;
    assert_eq!(
        all,
        [second[2].id, second[0].id, first[1].id, first[0].id],
        "newest first"
    );
    for (object, wanted) in [
        (customer.as_str(), first[0].id),
        ("", second[0].id),
        ("Fixture_Tier", second[2].id),
    ] {
        let found = read(
            store,
            scope,
            AuditQuery {
                object_id: Some(object.to_owned()),
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .await;
        assert_eq!(found, [wanted], "by object id {object:?}");
    }
    let uppercase = read(
        store,
        scope,
        AuditQuery {
            object_id: Some(customer.to_uppercase()),
            limit: 10,
            ..AuditQuery::default()
        },
    )
    .await;
    assert!(uppercase.is_empty(), "object ids compare as written");
    assert!(
        read(
            store,
            scope,
            AuditQuery {
                action: Some("no.such.action".into()),
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .await
        .is_empty(),
        "an action never recorded"
    );
    whole(store, "after appends").await;
}

/// Segments: entries go to the month of their time, never back to a month before the one
/// their chain reached; reads, filters and cursors span segments; a past segment can be
/// dropped (the current month cannot), and the chain stays verifiable from the next one's
/// record of where it enters.
pub async fn check_audit_segments(store: &dyn Store) {
    let scope = lab();
    let jan = Month::parse("2001-01").expect("month");
    let feb = jan.next();
    let day = |m: Month, d: i64| m.start() + Duration::days(d);
    let e1 = entry(scope, day(jan, 1), "pii.read", None);
    let e2 = entry(scope, day(jan, 2), "pii.read", None);
    let e3 = entry(scope, day(feb, 1), "pii.read", None);
    store
        .append_audit(&[e1.clone(), e2.clone()])
        .await
        .expect("append");
    store
        .append_audit(std::slice::from_ref(&e3))
        .await
        .expect("append");
    // Stamped in January, appended after the chain reached February: it joins February.
    let late = entry(scope, day(jan, 3), "pii.read", None);
    store
        .append_audit(std::slice::from_ref(&late))
        .await
        .expect("append");

    let linked = chained(&[&e1, &e2, &e3, &late], 1, GENESIS);
    assert_eq!(chain_in(store, jan, scope, 1000).await, linked[..2]);
    assert_eq!(chain_in(store, feb, scope, 1000).await, linked[2..]);
    let entered = store.audit_segment_heads(feb).await.expect("segment heads");
    assert!(
        entered.contains(&SegmentHead {
            scope,
            first_seq: 3,
            prev_hash: linked[1].hash
        }),
        "{entered:?}"
    );
    let segments = store.audit_segments().await.expect("audit_segments");
    let counted: Vec<(Month, u64)> = segments.iter().map(|s| (s.month, s.entries)).collect();
    assert!(
        counted.contains(&(jan, 2)) && counted.contains(&(feb, 2)),
        "{counted:?}"
    );
    assert!(
        segments.windows(2).all(|w| w[0].month < w[1].month),
        "oldest first: {counted:?}"
    );

    let query =
        |from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>, before, limit| AuditQuery {
            from,
            to,
            before,
            limit,
            ..AuditQuery::default()
        };
    assert_eq!(
        read(store, scope, query(None, None, None, 10)).await,
        [late.id, e3.id, e2.id, e1.id],
        "newest first across segments"
    );
    assert_eq!(
        read(store, scope, query(None, None, None, 2)).await,
        [late.id, e3.id]
    );
    assert_eq!(
        read(store, scope, query(None, None, Some(e3.id), 2)).await,
        [e2.id, e1.id],
        "a cursor into an older segment"
    );
    assert_eq!(
        read(store, scope, query(Some(feb.start()), None, None, 10)).await,
        [e3.id],
        "from: by time, not by segment"
    );
    assert_eq!(
        read(
            store,
            scope,
            query(
                None,
                Some(feb.start() - Duration::milliseconds(1)),
                None,
                10
            )
        )
        .await,
        [late.id, e2.id, e1.id],
        "to: by time, not by segment"
    );
    whole(store, "two segments").await;

    let current = Month::of(Utc::now());
    for refused in [current, current.next()] {
        assert_err(
            store.drop_audit_segment(refused).await,
            StoreError::InUse,
            "the current month is not dropped",
        );
    }
    store.drop_audit_segment(jan).await.expect("drop");
    store
        .drop_audit_segment(jan)
        .await
        .expect("dropping a missing segment");
    let months: Vec<Month> = store
        .audit_segments()
        .await
        .expect("audit_segments")
        .iter()
        .map(|s| s.month)
        .collect();
    assert!(
        !months.contains(&jan) && months.contains(&feb),
        "{months:?}"
    );
    assert!(store
        .audit_segment_entries(jan, None, 10)
        .await
        .expect("a dropped segment")
        .is_empty());
    assert_eq!(
        read(store, scope, query(None, None, None, 10)).await,
        [late.id, e3.id]
    );
    whole(store, "after dropping the older segment").await;

    let next = entry(scope, now(), "pii.read", None);
    store
        .append_audit(std::slice::from_ref(&next))
        .await
        .expect("append");
    let continued = chained(&[&next], 5, linked[3].hash);
    assert_eq!(
        chain_in(store, Month::of(next.at), scope, 1000).await,
        continued,
        "the chain goes on"
    );
    store.drop_audit_segment(feb).await.expect("drop");
    assert!(store
        .audit_heads()
        .await
        .expect("heads")
        .contains(&ChainHead {
            scope,
            seq: 5,
            hash: continued[0].hash
        }));
    whole(store, "after dropping both").await;
}

/// Prepared segments: a month made ready before its first entry is listed (without reading
/// entries), stays empty and whole, takes appends like any other, and is made ready again
/// without harm.
pub async fn check_audit_segment_preparation(store: &dyn Store) {
    let scope = lab();
    let next = Month::of(now()).next();
    store
        .prepare_audit_segment(next)
        .await
        .expect("prepare next month");
    store
        .prepare_audit_segment(next)
        .await
        .expect("prepare it again");
    let months = store.audit_months().await.expect("months");
    assert!(months.contains(&next), "{months:?}");
    assert!(
        months.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {months:?}"
    );
    let counted: Vec<Month> = store
        .audit_segments()
        .await
        .expect("segments")
        .iter()
        .map(|s| s.month)
        .collect();
    assert_eq!(counted, months, "the same months as the counted listing");
    whole(store, "with an empty prepared segment").await;

    let this = Month::of(now());
    store.prepare_audit_segment(this).await.expect("prepare");
    let e = entry(scope, now(), "pii.read", Some("c-1"));
    store
        .append_audit(std::slice::from_ref(&e))
        .await
        .expect("append into a prepared month");
    whole(store, "after an append into a prepared month").await;
    let read = store
        .audit(
            scope,
            &AuditQuery {
                object_id: Some("c-1".into()),
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .await
        .expect("read");
    assert!(read.iter().any(|r| r.id == e.id), "the entry is read back");
}
