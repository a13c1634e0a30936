//! Scopes never see each other's rows, in any method.

use contextd_core::ids::ObjectId;
use contextd_core::object::Kind;
use contextd_core::store::{Condition, Store, StoreError, TimelineQuery};

use crate::fixtures::*;

/// Org A lab, org A production and org B lab, holding objects with the same ids and tokens.
pub async fn check_scope_isolation(store: &dyn Store) {
    let a_lab = lab();
    let a_prod = other_partition(a_lab);
    let b_lab = lab();
    let scopes = [a_lab, a_prod, b_lab];
    let t = now();
    let shared = token();

    // Ids are per scope: the same id in three scopes is three objects.
    let id = ObjectId::new();
    let customer = ObjectId::new();
    let mut copies = Vec::new();
    for (i, scope) in scopes.iter().enumerate() {
        let mut o = object(*scope, Kind::Activity, at(t, i as i64));
        o.id = id;
        o.customer_id = Some(customer);
        o.tags = vec![format!("copy-{i}")];
        insert(store, &o, &[shared]).await;
        copies.push(o);
    }
    for (scope, copy) in scopes.iter().zip(&copies) {
        assert_eq!(
            &read(store, *scope, id).await,
            copy,
            "each scope reads its own object"
        );
        let found = search(
            store,
            *scope,
            &plan_with(Kind::Activity, true, vec![Condition::Tokens(vec![shared])]),
        )
        .await;
        assert_eq!(
            (found.ids, found.total),
            (vec![id], 1),
            "search sees one scope only"
        );
        let page = store
            .timeline(
                *scope,
                &TimelineQuery {
                    customer_id: customer,
                    media_type: None,
                    limit: 10,
                    after: None,
                },
            )
            .await
            .expect("timeline");
        let items: Vec<_> = page
            .items
            .into_iter()
            .map(|o| o.into_object(*scope).expect("a stored row decodes"))
            .collect();
        assert_eq!(
            (items, page.total),
            (vec![copy.clone()], 1),
            "timeline sees one scope only"
        );
    }

    // An object in one scope only.
    let only = object(a_lab, Kind::Customer, t);
    let only_token = token();
    insert(store, &only, &[only_token]).await;
    for scope in [a_prod, b_lab] {
        assert_eq!(
            store.object(scope, only.id).await.expect("object"),
            None,
            "object() of another scope"
        );
        assert_eq!(
            search(store, scope, &plan(Kind::Customer)).await.total,
            0,
            "search of another scope"
        );
        let by_id = plan_with(Kind::Customer, true, vec![Condition::Ids(vec![only.id])]);
        assert_eq!(
            search(store, scope, &by_id).await.total,
            0,
            "search by id in another scope"
        );
        let mut moved = only.clone();
        moved.scope = scope;
        moved.version = 2;
        assert_err(
            store.write_object(&update_write(&moved, &[], 1)).await,
            StoreError::NotFound,
            "update from another scope",
        );
        assert_err(
            store.delete_object(scope, only.id, &by()).await,
            StoreError::NotFound,
            "delete from another scope",
        );
        let mut child = object(scope, Kind::Detail, t);
        child.parent_id = Some(only.id);
        assert_err(
            store
                .write_object(&child_write(&child, only.id, false, t))
                .await,
            StoreError::ParentNotFound,
            "a parent in another scope",
        );
        assert_eq!(
            store
                .flush(scope, Kind::Customer, &by())
                .await
                .expect("flush"),
            0,
            "flush of another scope"
        );
    }
    assert_eq!(
        read(store, a_lab, only.id).await,
        only,
        "nothing done from other scopes touched the object"
    );
    assert!(
        !store
            .any_token_in_use(b_lab.org, &[only_token])
            .await
            .expect("any_token_in_use"),
        "tokens of another org"
    );

    // Deleting, updating and flushing in one scope leave the copies in the others.
    store
        .delete_object(a_prod, id, &by())
        .await
        .expect("delete");
    assert_eq!(read(store, a_lab, id).await, copies[0]);
    assert_eq!(read(store, b_lab, id).await, copies[2]);
    let mut updated = copies[0].clone();
    updated.version = 2;
    updated.tags = vec!["updated".into()];
    store
        .write_object(&update_write(&updated, &[], 1))
        .await
        .expect("update");
    assert_eq!(
        read(store, b_lab, id).await,
        copies[2],
        "an update touches one scope"
    );
    let found = search(
        store,
        b_lab,
        &plan_with(Kind::Activity, true, vec![Condition::Tokens(vec![shared])]),
    )
    .await;
    assert_eq!(
        found.ids,
        vec![id],
        "an update replaces tokens in its own scope only"
    );
    assert_eq!(
        store
            .flush(b_lab, Kind::Activity, &by())
            .await
            .expect("flush"),
        1
    );
    assert_eq!(
        read(store, a_lab, id).await,
        updated,
        "a flush touches one scope"
    );
}
