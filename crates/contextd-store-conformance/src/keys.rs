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
