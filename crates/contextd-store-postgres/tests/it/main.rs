//! The crate's one integration-test binary: the shared conformance suite against fresh
//! PostgreSQL databases, then what is particular to PostgreSQL (concurrent migrations,
//! schemas, the privacy scan over every column, the events outbox across instances).
//!
//! Every test needs a server: `CONTEXTD_TEST_POSTGRES_URL` names one (a URL whose role may
//! create databases, e.g. `postgres://postgres@127.0.0.1:5432/postgres`). Each test creates
//! its own database, `contextd_test_<random>`, and drops it when done, failed or not. Without
//! the variable every test says it was skipped and passes.

mod audit;
mod conformance;
mod events;
mod migrations;
mod privacy;

use contextd_store_postgres::{PgKeyStore, PgStore};
use tokio_postgres::NoTls;

/// The variable naming the test server.
pub const URL_VAR: &str = "CONTEXTD_TEST_POSTGRES_URL";

/// A fresh, uniquely named database, dropped (connections and all) when this is dropped.
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// A URL of it.
    pub url: String,
    admin_url: String,
}

/// `url` with its database replaced by `name` (URL form only: `postgres://…/db?…`).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{name}", &base[..path]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl TestDatabase {
    /// Creates the database, or returns `None` (saying so) when no server is configured.
    pub async fn create() -> Option<Self> {
        let Ok(admin_url) = std::env::var(URL_VAR) else {
            eprintln!("PostgreSQL tests skipped: {URL_VAR} is not set");
            return None;
        };
        let name = format!("contextd_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        Some(Self {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        })
    }

    /// A plain connection to the test database, for looking at what the stores wrote.
    pub async fn connect(&self) -> tokio_postgres::Client {
        admin(&self.url).await
    }
}

/// Connects without TLS (the test server is local) and drives the connection in the
/// background.
pub async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // On a thread of its own with its own runtime: this may run inside the test's
        // runtime, which must not block on itself, and while a panic unwinds.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&admin_url, NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("could not drop test database {}", self.name),
        }
    }
}

/// A data store and a key store on a fresh database, in their default schemas.
pub struct TestDb {
    pub store: PgStore,
    pub keys: PgKeyStore,
    /// Last, so that it is dropped after the stores' pools.
    pub database: TestDatabase,
}

impl TestDb {
    /// A fresh database with both stores connected, or `None` when no server is configured.
    pub async fn fresh() -> Option<Self> {
        let database = TestDatabase::create().await?;
        let store = PgStore::connect(&database.url)
            .await
            .unwrap_or_else(|e| panic!("connect the data store: {e}"));
        let keys = PgKeyStore::connect(&database.url)
            .await
            .unwrap_or_else(|e| panic!("connect the key store: {e}"));
        Some(Self {
            store,
            keys,
            database,
        })
    }
}

#[test]
fn urls_get_their_database_replaced() {
    assert_eq!(
        with_database("postgres://u@h:5432/postgres", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    assert_eq!(
        with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
        "postgresql://u:p@h/x?sslmode=disable"
    );
}
