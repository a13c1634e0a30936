//! Schema versions: every backend's migrations are numbered and forward-only, and a build
//! refuses a database whose schema is newer than it knows.

use super::StoreError;

/// One numbered schema migration of a backend; its SQL is the backend's own.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Its number; applied in ascending order, never twice.
    pub version: i64,
    /// The SQL.
    pub sql: &'static str,
}

/// Refuses a database at schema version `applied` (0: none) if that is newer than every one
/// of `migrations`: a newer contextd wrote it, and this one must not. `what` names the
/// database in the error (`data database`).
pub fn check_schema_version(
    what: &str,
    applied: i64,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    if applied > known {
        return Err(StoreError::Backend(format!(
            "the {what} has schema version {applied}, newer than this contextd knows ({known})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_newer_than_the_migrations_is_refused() {
        let m = |version| Migration { version, sql: "" };
        let known = [m(1), m(2)];
        for applied in [0, 1, 2] {
            assert!(check_schema_version("data database", applied, &known).is_ok());
        }
        let err = check_schema_version("data database", 3, &known).err();
        assert!(
            matches!(&err, Some(StoreError::Backend(m)) if m.contains("version 3") && m.contains("(2)")),
            "{err:?}"
        );
        assert!(check_schema_version("keys database", 1, &[]).is_err());
    }
}
