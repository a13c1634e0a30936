//! The key store.

use contextd_core::ids::ObjectId;
use contextd_core::store::{KeyStore, StoreError, WrappedKey};

use crate::fixtures::*;

fn key(version: u32, wrapped_by: u32, fill: u8) -> WrappedKey {
    WrappedKey {
        version,
        wrapped_by,
        bytes: (0..60).map(|i| fill ^ i).collect(),
    }
}

/// Data, index and customer keys: first writer wins, versions ascending, deletes, scopes.
pub async fn check_key_store(keys: &dyn KeyStore) {
    keys.ping().await.expect("ping");
    let s = lab();
    let prod = other_partition(s);
    let other = lab();

    assert!(
        keys.data_keys(s).await.expect("data_keys").is_empty(),
        "a new partition has no data key"
    );
    let (v2, v1) = (key(2, 1, 0xa0), key(1, 1, 0x10));
    keys.insert_data_key(s, &v2).await.expect("insert_data_key");
    keys.insert_data_key(s, &v1).await.expect("insert_data_key");
    assert_eq!(
        keys.data_keys(s).await.expect("data_keys"),
        vec![v1.clone(), v2.clone()],
        "data keys, versions ascending"
    );
    assert_err(
        keys.insert_data_key(s, &key(1, 2, 0xff)).await,
        StoreError::AlreadyExists,
        "a data key version that exists",
    );
    assert_eq!(
        keys.data_keys(s).await.expect("data_keys"),
        vec![v1.clone(), v2],
        "the first data key of a version stands"
    );
    for scope in [prod, other] {
        assert!(
            keys.data_keys(scope).await.expect("data_keys").is_empty(),
            "data keys belong to one partition"
        );
    }
    keys.insert_data_key(prod, &v1)
        .await
        .expect("the same version in another partition");

    assert_eq!(keys.index_key(s).await.expect("index_key"), None);
    let index = key(1, 1, 0x33);
    keys.insert_index_key(s, &index)
        .await
        .expect("insert_index_key");
    assert_eq!(
        keys.index_key(s).await.expect("index_key"),
        Some(index.clone())
    );
    assert_err(
        keys.insert_index_key(s, &key(1, 1, 0x44)).await,
        StoreError::AlreadyExists,
        "a second index key",
    );
    assert_eq!(
        keys.index_key(s).await.expect("index_key"),
        Some(index),
        "the first index key stands"
    );
    assert_eq!(
        keys.index_key(prod).await.expect("index_key"),
        None,
        "index keys belong to one partition"
    );
    assert_eq!(
        keys.index_key(other).await.expect("index_key"),
        None,
        "index keys belong to one org"
    );

    let customer = ObjectId::new();
    assert_eq!(
        keys.customer_key(s, customer).await.expect("customer_key"),
        None
    );
    let ck = key(1, 2, 0x55);
    keys.insert_customer_key(s, customer, &ck)
        .await
        .expect("insert_customer_key");
    assert_eq!(
        keys.customer_key(s, customer).await.expect("customer_key"),
        Some(ck.clone())
    );
    assert_err(
        keys.insert_customer_key(s, customer, &key(1, 2, 0x66))
            .await,
        StoreError::AlreadyExists,
        "a second customer key",
    );
    assert_eq!(
        keys.customer_key(s, customer).await.expect("customer_key"),
        Some(ck.clone()),
        "the first customer key stands"
    );
    assert_eq!(
        keys.customer_key(prod, customer)
            .await
            .expect("customer_key"),
        None,
        "customer keys belong to one partition"
    );
    assert_err(
        keys.delete_customer_key(prod, customer).await,
        StoreError::NotFound,
        "deleting from another partition",
    );
    assert_err(
        keys.delete_customer_key(other, customer).await,
        StoreError::NotFound,
        "deleting from another org",
    );
    let neighbour = ObjectId::new();
    keys.insert_customer_key(s, neighbour, &ck)
        .await
        .expect("insert_customer_key");

    keys.delete_customer_key(s, customer)
        .await
        .expect("delete_customer_key");
    assert_eq!(
        keys.customer_key(s, customer).await.expect("customer_key"),
        None,
        "a deleted customer key is gone"
    );
    assert_err(
        keys.delete_customer_key(s, customer).await,
        StoreError::NotFound,
        "deleting twice",
    );
    assert_eq!(
        keys.customer_key(s, neighbour).await.expect("customer_key"),
        Some(ck),
        "other customers keep their keys"
    );
    let fresh = key(1, 2, 0x77);
    keys.insert_customer_key(s, customer, &fresh)
        .await
        .expect("a new key after shredding");
    assert_eq!(
        keys.customer_key(s, customer).await.expect("customer_key"),
        Some(fresh)
    );
}

/// Key operations that race: a data key wrapped by another kind of KEK than the partition's
/// is refused, a re-wrap of keys other than those read is refused, and when inserts race a
/// re-wrap no inserted version is ever lost.
pub async fn check_partition_key_races(keys: &dyn KeyStore) {
    let s = lab();
    let operator = |version: u32, fill: u8| key(version, 0, fill);
    let own = |version: u32, fill: u8| key(version, 1, fill);
    keys.insert_index_key(s, &operator(1, 0x01))
        .await
        .expect("insert_index_key");
    keys.insert_data_key(s, &operator(1, 0x02))
        .await
        .expect("insert_data_key");
    assert_err(
        keys.insert_data_key(s, &own(2, 0x03)).await,
        StoreError::KeysChanged,
        "a data key wrapped by another kind of KEK than the partition's",
    );
    keys.insert_data_key(s, &operator(2, 0x04))
        .await
        .expect("a data key wrapped like the others");
    let stored = vec![operator(1, 0x02), operator(2, 0x04)];
    assert_eq!(keys.data_keys(s).await.expect("data_keys"), stored);

    let rewrapped = [own(1, 0x12), own(2, 0x14)];
    for (stale, why) in [
        (
            vec![operator(1, 0x02)],
            "a version added since the keys were read",
        ),
        (
            vec![operator(1, 0x02), operator(2, 0x99)],
            "a version whose bytes changed since they were read",
        ),
        (
            vec![operator(1, 0x02), operator(2, 0x04), operator(3, 0x05)],
            "a version that is no longer stored",
        ),
    ] {
        assert_err(
            keys.replace_partition_keys(s, &stale, &rewrapped, &own(1, 0x11))
                .await,
            StoreError::KeysChanged,
            why,
        );
        assert_eq!(
            keys.data_keys(s).await.expect("data_keys"),
            stored,
            "a refused re-wrap changes no data key"
        );
        assert_eq!(
            keys.index_key(s).await.expect("index_key"),
            Some(operator(1, 0x01)),
            "a refused re-wrap changes no index key"
        );
    }
    let reversed: Vec<WrappedKey> = stored.iter().rev().cloned().collect();
    keys.replace_partition_keys(s, &reversed, &rewrapped, &own(1, 0x11))
        .await
        .expect("a re-wrap of the keys as read (in any order)");
    assert_eq!(
        keys.data_keys(s).await.expect("data_keys"),
        rewrapped.to_vec()
    );
    assert_err(
        keys.insert_data_key(s, &operator(3, 0x06)).await,
        StoreError::KeysChanged,
        "a data key wrapped by the operator's KEK after the org adopted its own",
    );
    keys.insert_data_key(s, &own(3, 0x07))
        .await
        .expect("a data key wrapped by the org's own KEK");

    // Rotations racing a re-wrap that read the keys before them: either the re-wrap is
    // refused, or the inserts that follow it are; no version that was acknowledged is lost.
    let r = other_partition(s);
    keys.insert_index_key(r, &operator(1, 0x21))
        .await
        .expect("insert_index_key");
    keys.insert_data_key(r, &operator(1, 0x22))
        .await
        .expect("insert_data_key");
    let read = keys.data_keys(r).await.expect("data_keys");
    let (k2, k3, k4) = (operator(2, 0x23), operator(3, 0x24), operator(4, 0x25));
    let (rewrapped, index) = ([own(1, 0x32)], own(1, 0x31));
    let (a, b, c, replaced) = tokio::join!(
        keys.insert_data_key(r, &k2),
        keys.insert_data_key(r, &k3),
        keys.insert_data_key(r, &k4),
        keys.replace_partition_keys(r, &read, &rewrapped, &index),
    );
    let after = keys.data_keys(r).await.expect("data_keys");
    for (version, result) in [(2, a), (3, b), (4, c)] {
        match result {
            Ok(()) => assert!(
                after.iter().any(|k| k.version == version),
                "an acknowledged data key version {version} survives a racing re-wrap"
            ),
            Err(StoreError::KeysChanged) => {}
            Err(e) => panic!("a racing insert fails only with KeysChanged, got {e:?}"),
        }
    }
    match replaced {
        Ok(()) | Err(StoreError::KeysChanged) => {}
        Err(e) => panic!("a racing re-wrap fails only with KeysChanged, got {e:?}"),
    }
    let index = keys.index_key(r).await.expect("index_key").expect("index");
    assert!(
        after.iter().all(|k| k.wrapped_by == index.wrapped_by),
        "after the race every key of the partition is wrapped alike: {after:?}, index {index:?}"
    );
}

/// Customer keys stored in a batch: the new ones stored, one that exists kept and reported.
pub async fn check_customer_key_batches(keys: &dyn KeyStore) {
    let s = lab();
    let (kept, a, b) = (ObjectId::new(), ObjectId::new(), ObjectId::new());
    let first = key(0, 1, 0x21);
    keys.insert_customer_key(s, kept, &first)
        .await
        .expect("insert_customer_key");
    let stored = keys
        .insert_customer_keys(
            s,
            &[
                (a, key(0, 1, 0x22)),
                (kept, key(0, 1, 0x23)),
                (b, key(0, 1, 0x24)),
            ],
        )
        .await
        .expect("insert_customer_keys");
    assert_eq!(stored, vec![true, false, true]);
    assert_eq!(
        keys.customer_key(s, kept).await.expect("customer_key"),
        Some(first),
        "an existing key is kept"
    );
    assert_eq!(
        keys.customer_key(s, b).await.expect("customer_key"),
        Some(key(0, 1, 0x24))
    );
    assert_eq!(
        keys.customer_key(other_partition(s), a)
            .await
            .expect("customer_key"),
        None,
        "customer keys belong to one partition"
    );
    assert!(keys
        .insert_customer_keys(s, &[])
        .await
        .expect("an empty batch")
        .is_empty());
}
