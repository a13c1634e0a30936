use contextd_core::object::Kind;
use contextd_core::store::*;
use contextd_store_conformance::fixtures::*;
use contextd_store_sqlite::SqliteStore;
use std::sync::Arc;
use std::time::Instant;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("p.db")).unwrap());
    let s = lab();
    let n = 100_000usize;
    let conc = 512usize;
    let objs: Arc<Vec<_>> = Arc::new(
        (0..n)
            .map(|i| {
                let mut o = object(s, Kind::Activity, at(now(), i as i64));
                o.tags = vec!["a".into(), "b".into()];
                o.clear.insert(
                    "Context_POD_Activity_Link".into(),
                    serde_json::json!("https://example.com/xyz"),
                );
                (o, vec![token(), token(), token(), token(), token()])
            })
            .collect(),
    );
    let t0 = Instant::now();
    let mut hs = vec![];
    for w in 0..conc {
        let store = store.clone();
        let objs = objs.clone();
        hs.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                let (o, t) = &objs[i];
                store
                    .write_object(&ObjectWrite {
                        object: o.clone(),
                        tokens: t.clone(),
                        expected_version: None,
                        parent_check: None,
                    })
                    .await
                    .unwrap();
                i += conc;
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    let dt = t0.elapsed();
    println!(
        "writes: {n} in {:?} = {:.0}/s",
        dt,
        n as f64 / dt.as_secs_f64()
    );
    let t0 = Instant::now();
    let m = 100_000usize;
    let mut hs = vec![];
    for w in 0..64 {
        let store = store.clone();
        let objs = objs.clone();
        hs.push(tokio::spawn(async move {
            let mut i = w;
            while i < m {
                let (o, t) = &objs[(i * 7919) % n];
                let p = SearchPlan {
                    limit: 10,
                    ..plan_with(Kind::Activity, true, vec![Condition::Tokens(vec![t[2]])])
                };
                let r = store.search(s, &p).await.unwrap();
                assert_eq!(r.items[0].id, o.id);
                i += 64;
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    let dt = t0.elapsed();
    println!(
        "lookups: {m} in {:?} = {:.0}/s",
        dt,
        m as f64 / dt.as_secs_f64()
    );
}
