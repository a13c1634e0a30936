//! Every conformance check, each on its own fresh database, and all of them on one (skipped
//! without `CONTEXTD_TEST_POSTGRES_URL`).

use crate::TestDb;

contextd_store_conformance::conformance_tests!(TestDb::fresh().await);
