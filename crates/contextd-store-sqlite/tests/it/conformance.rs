//! Every conformance check, each on its own fresh database, and all of them on one.

use crate::TestDb;

contextd_store_conformance::conformance_tests!(Some(TestDb::fresh()));
