//! SQL for searches and timelines, built from placeholders only: no value is ever spliced
//! into the text.
//!
//! IN-lists are padded to the next power of two (repeating the last value, which changes
//! nothing) so that the number of distinct statement texts stays small and the prepared
//! statement cache keeps hitting.

use contextd_core::ids::Scope;
use contextd_core::object::State;
use contextd_core::store::{
    wanted_states, Condition, PagePosition, SearchPlan, StoreError, TimelineQuery, Token,
};
use rusqlite::types::Value;

use crate::db::ms;

/// Most values accepted in one condition (the core sends a few hundred at most).
pub(crate) const MAX_IN_VALUES: usize = 1024;

/// A WHERE clause over `objects o` with its bound values, and the order of its pages.
pub(crate) struct Filter {
    clause: String,
    params: Vec<Value>,
    /// The scope's org and partition, bound again inside token subqueries.
    org: Value,
    partition: Value,
    /// `last_updated` (search) or `created` (timeline).
    order_column: &'static str,
}

/// A statement and its values.
pub(crate) struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
}

impl Filter {
    fn new(scope: Scope, order_column: &'static str) -> Self {
        let org = Value::Blob(scope.org.0.as_bytes().to_vec());
        let partition = Value::Text(scope.partition.as_str().to_owned());
        let mut f = Self {
            clause: String::with_capacity(256),
            params: Vec::with_capacity(8),
            org: org.clone(),
            partition: partition.clone(),
            order_column,
        };
        f.push("o.org_id = ");
        f.bind(org);
        f.push(" AND o.partition = ");
        f.bind(partition);
        f
    }

    fn push(&mut self, sql: &str) {
        self.clause.push_str(sql);
    }

    fn bind(&mut self, value: Value) {
        self.clause.push('?');
        self.params.push(value);
    }

    /// Writes `(?, ?, …)` for `values`, padded to a power of two.
    fn bind_list(&mut self, values: Vec<Value>) -> Result<(), StoreError> {
        if values.len() > MAX_IN_VALUES {
            return Err(StoreError::Backend(format!(
                "a search condition has {} values; at most {MAX_IN_VALUES} are supported",
                values.len()
            )));
        }
        let Some(last) = values.last().cloned() else {
            return Err(StoreError::Backend("empty IN-list".into()));
        };
        let padded = values.len().next_power_of_two();
        let padding = padded - values.len();
        self.clause.push('(');
        for i in 0..padded {
            if i > 0 {
                self.clause.push_str(", ");
            }
            self.clause.push('?');
        }
        self.clause.push(')');
        self.params.extend(values);
        self.params.extend(std::iter::repeat_n(last, padding));
        Ok(())
    }

    /// `o.id IN (SELECT object_id FROM tokens …)`: objects carrying any of the tokens.
    fn tokens(&mut self, tokens: &[Token]) -> Result<(), StoreError> {
        self.push("(SELECT t.object_id FROM tokens t WHERE t.org_id = ");
        self.bind(self.org.clone());
        self.push(" AND t.partition = ");
        self.bind(self.partition.clone());
        self.push(" AND t.token IN ");
        self.bind_list(tokens.iter().map(|t| Value::Blob(t.0.to_vec())).collect())?;
        self.push(")");
        Ok(())
    }

    /// Writes one condition of [`SearchPlan::live_conditions`] (none is empty).
    fn condition(&mut self, condition: &Condition) -> Result<(), StoreError> {
        fn ids(v: &[contextd_core::ids::ObjectId]) -> Vec<Value> {
            v.iter()
                .map(|id| Value::Blob(id.0.as_bytes().to_vec()))
                .collect()
        }
        match condition {
            Condition::Tokens(tokens) => {
                self.push("o.id IN ");
                self.tokens(tokens)
            }
            Condition::Ids(v) => {
                self.push("o.id IN ");
                self.bind_list(ids(v))
            }
            Condition::CustomerIds(v) => {
                // `journey` equals `customer_id` wherever that is set, and is indexed.
                self.push("(o.journey IN ");
                self.bind_list(ids(v))?;
                self.push(" AND o.customer_id IN ");
                self.bind_list(ids(v))?;
                self.push(")");
                Ok(())
            }
            Condition::ParentIds(v) => {
                self.push("o.parent_id IN ");
                self.bind_list(ids(v))
            }
            Condition::States {
                states,
                active_since,
            } => {
                let cutoff = Value::Integer(ms(active_since));
                self.push("(");
                for (i, state) in wanted_states(states).enumerate() {
                    self.push(if i == 0 { "(" } else { " OR (" });
                    self.push(match state {
                        State::Active => {
                            "o.state = 'active' AND (o.kind <> 'request' OR o.touched >= "
                        }
                        State::Closed => {
                            "o.state = 'closed' OR (o.kind = 'request' AND o.touched < "
                        }
                    });
                    self.bind(cutoff.clone());
                    self.push("))");
                }
                self.push(")");
                Ok(())
            }
            Condition::MediaTypes(v) => {
                self.push("o.media_type IN ");
                self.bind_list(
                    v.iter()
                        .map(|m| Value::Text(m.as_str().to_owned()))
                        .collect(),
                )
            }
        }
    }

    /// The filter of a search, or `None` when the plan cannot match anything
    /// ([`SearchPlan::live_conditions`]).
    pub(crate) fn search(scope: Scope, plan: &SearchPlan) -> Result<Option<Self>, StoreError> {
        let Some(conditions) = plan.live_conditions() else {
            return Ok(None);
        };
        // Walking `objects_by_kind` in page order spares a sort, which tempts SQLite even when
        // it means testing every object of the kind — a full scan for a lookup by phone. When
        // the conditions name few objects (tokens, ids, customers, parents), the unary `+`
        // takes the kind index out of play so that those drive (the planner statistics in
        // the first migration do the rest).
        let selective = if plan.match_all {
            conditions.iter().any(|c| is_selective(c))
        } else {
            !conditions.is_empty() && conditions.iter().all(|c| is_selective(c))
        };
        let mut f = Self::new(scope, "last_updated");
        f.push(if selective {
            " AND +o.kind = "
        } else {
            " AND o.kind = "
        });
        f.bind(Value::Text(plan.kind.as_str().to_owned()));
        for b in plan.time_bounds() {
            f.push(&format!(
                " AND o.{} {} ",
                b.field,
                if b.lower { ">=" } else { "<=" }
            ));
            f.bind(Value::Integer(ms(&b.at)));
        }
        if !plan.not_exists.is_empty() {
            f.push(" AND o.id NOT IN ");
            f.tokens(&plan.not_exists)?;
        }
        if !conditions.is_empty() {
            let joiner = if plan.match_all { " AND " } else { " OR " };
            f.push(" AND (");
            for (i, c) in conditions.into_iter().enumerate() {
                if i > 0 {
                    f.push(joiner);
                }
                f.condition(c)?;
            }
            f.push(")");
        }
        Ok(Some(f))
    }

    /// The filter of a timeline.
    pub(crate) fn timeline(scope: Scope, query: &TimelineQuery) -> Self {
        let mut f = Self::new(scope, "created");
        // The journey is the table's key after org and partition: a page is one range read.
        f.push(" AND o.journey = ");
        f.bind(Value::Blob(query.customer_id.0.as_bytes().to_vec()));
        match query.media_type {
            Some(media) => {
                f.push(" AND o.kind = 'activity' AND o.media_type = ");
                f.bind(Value::Text(media.as_str().to_owned()));
            }
            None => f.push(" AND o.kind IN ('request', 'activity', 'detail')"),
        }
        f
    }

    /// Counts every match.
    pub(crate) fn count(&self) -> Statement {
        Statement {
            sql: format!("SELECT count(*) FROM objects o WHERE {}", self.clause),
            params: self.params.clone(),
        }
    }

    /// One page of `columns`, newest first, strictly after `after`, at most `limit` rows.
    pub(crate) fn page(
        &self,
        columns: &str,
        after: Option<PagePosition>,
        limit: usize,
    ) -> Statement {
        let order = self.order_column;
        let mut params = self.params.clone();
        let mut sql = format!("SELECT {columns} FROM objects o WHERE {}", self.clause);
        if let Some(p) = after {
            sql.push_str(&format!(" AND (o.{order}, o.id) < (?, ?)"));
            params.push(Value::Integer(ms(&p.time)));
            params.push(Value::Blob(p.id.0.as_bytes().to_vec()));
        }
        sql.push_str(&format!(" ORDER BY o.{order} DESC, o.id DESC LIMIT ?"));
        params.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        Statement { sql, params }
    }
}

/// Whether a condition names few objects through an index of its own.
fn is_selective(c: &Condition) -> bool {
    matches!(
        c,
        Condition::Tokens(_)
            | Condition::Ids(_)
            | Condition::CustomerIds(_)
            | Condition::ParentIds(_)
    )
}

#[cfg(test)]
mod tests {
    use contextd_core::ids::{ObjectId, OrgId, Partition};
    use contextd_core::object::{Kind, MediaType};
    use rusqlite::{params_from_iter, Connection};

    use super::*;
    use crate::rows::OBJECT_COLUMNS;

    fn plan(kind: Kind, match_all: bool, conditions: Vec<Condition>) -> SearchPlan {
        SearchPlan {
            kind,
            match_all,
            conditions,
            created_from: None,
            created_to: None,
            updated_from: None,
            updated_to: None,
            not_exists: Vec::new(),
            limit: 10,
            after: None,
        }
    }

    fn explain(conn: &Connection, st: &Statement) -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", st.sql))
            .expect("prepare");
        let rows = stmt
            .query_map(params_from_iter(st.params.iter()), |r| {
                r.get::<_, String>(3)
            })
            .expect("query");
        rows.collect::<Result<Vec<_>, _>>()
            .expect("rows")
            .join("\n")
    }

    /// Plans are what make lookups flat from 10 K to 10 M objects: a lookup by token, id,
    /// customer or parent must start from that index, never walk a whole kind; pages must
    /// start at the cursor, not skip up to it.
    #[test]
    fn query_plans_use_the_intended_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.db");
        drop(crate::SqliteStore::open(&path).expect("open"));
        let conn = Connection::open(&path).expect("open");
        let scope = Scope {
            org: OrgId::new(),
            partition: Partition::Lab,
        };
        let t = Token([1; 16]);
        let after = Some(PagePosition {
            time: contextd_core::time::now_ms(),
            id: ObjectId::new(),
        });
        let customer = Condition::CustomerIds(vec![ObjectId::new()]);
        let cases = vec![
            (
                "by token",
                plan(Kind::Customer, true, vec![Condition::Tokens(vec![t, t])]),
                "objects_by_id",
            ),
            (
                "by token and state",
                plan(
                    Kind::Customer,
                    true,
                    vec![
                        Condition::States {
                            states: vec![State::Active],
                            active_since: contextd_core::time::now_ms(),
                        },
                        Condition::Tokens(vec![t]),
                    ],
                ),
                "objects_by_id",
            ),
            (
                "by ids",
                plan(
                    Kind::Activity,
                    true,
                    vec![Condition::Ids(vec![ObjectId::new(); 3])],
                ),
                "objects_by_id",
            ),
            (
                "by customer",
                plan(Kind::Activity, true, vec![customer.clone()]),
                // The journey's range of the table, or of `objects_by_journey`.
                "partition=? AND journey=?",
            ),
            (
                "by parent",
                plan(
                    Kind::Activity,
                    true,
                    vec![Condition::ParentIds(vec![ObjectId::new()])],
                ),
                "objects_by_parent",
            ),
            (
                "token or customer",
                plan(
                    Kind::Activity,
                    false,
                    vec![Condition::Tokens(vec![t]), customer.clone()],
                ),
                "MULTI-INDEX OR",
            ),
            (
                "everything",
                plan(Kind::Activity, true, vec![]),
                "objects_by_kind (org_id=? AND partition=? AND kind=?",
            ),
            (
                "by media type",
                plan(
                    Kind::Activity,
                    true,
                    vec![Condition::MediaTypes(vec![MediaType::Chat])],
                ),
                "objects_by_kind (org_id=? AND partition=? AND kind=?",
            ),
        ];
        for (name, p, index) in cases {
            let f = Filter::search(scope, &p)
                .expect("filter")
                .expect("a plan that can match");
            for (what, st) in [
                ("page", f.page(OBJECT_COLUMNS, None, 11)),
                ("ids", f.page("o.id, o.last_updated", None, 11)),
                ("count", f.count()),
            ] {
                let plan = explain(&conn, &st);
                assert!(
                    plan.contains(index),
                    "{name} ({what}) should use {index}:\n{plan}"
                );
                if index != "objects_by_kind (org_id=? AND partition=? AND kind=?" {
                    assert!(
                        !plan.contains("objects_by_kind"),
                        "{name} ({what}) must not walk the kind:\n{plan}"
                    );
                }
            }
        }
        let f = Filter::search(scope, &plan(Kind::Activity, true, vec![]))
            .expect("filter")
            .expect("some");
        let plan = explain(&conn, &f.page(OBJECT_COLUMNS, after, 11));
        assert!(
            plan.contains("(last_updated,id)<(?,?)"),
            "a search page starts at its cursor:\n{plan}"
        );

        let q = TimelineQuery {
            customer_id: ObjectId::new(),
            media_type: Some(MediaType::Voice),
            limit: 10,
            after,
        };
        let plan = explain(
            &conn,
            &Filter::timeline(scope, &q).page(OBJECT_COLUMNS, after, 11),
        );
        assert!(
            plan.contains("objects_by_journey (org_id=? AND partition=? AND journey=? AND kind=? AND (created,id)<(?,?))")
                && !plan.contains("TEMP B-TREE"),
            "a timeline of one channel starts at its cursor, in order:\n{plan}"
        );
        // A whole timeline page is one range of the table itself, in key order: no lookup
        // per row, no sort.
        let all_kinds = TimelineQuery {
            media_type: None,
            ..q
        };
        let plan = explain(
            &conn,
            &Filter::timeline(scope, &all_kinds).page(OBJECT_COLUMNS, after, 11),
        );
        assert_eq!(
            plan,
            "SEARCH o USING PRIMARY KEY (org_id=? AND partition=? AND journey=? AND (created,id)<(?,?))",
            "a timeline page is one range read"
        );
        // The `total` of a timeline page counts the journey from the index alone.
        let plan = explain(&conn, &Filter::timeline(scope, &all_kinds).count());
        assert!(
            plan.contains("USING COVERING INDEX objects_by_journey"),
            "{plan}"
        );

        let sweep = Statement {
            sql: "UPDATE objects SET state = 'closed' WHERE kind = 'request' AND state = 'active' AND touched < ?".into(),
            params: vec![Value::Integer(0)],
        };
        let plan = explain(&conn, &sweep);
        assert!(
            plan.contains("objects_active_requests"),
            "the auto-close sweep reads only active requests:\n{plan}"
        );
    }

    /// A cached statement must run as compiled, whatever its values: recompiling it per call
    /// (SQLite's default with STAT4) costs more than the lookup itself.
    #[test]
    fn cached_statements_are_not_recompiled_for_new_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.db");
        drop(crate::SqliteStore::open(&path).expect("open"));
        let conn = Connection::open(&path).expect("open");
        crate::db::configure_reader(&conn).expect("configure");
        let scope = Scope {
            org: OrgId::new(),
            partition: Partition::Lab,
        };
        for i in 0..5u8 {
            let p = plan(
                Kind::Customer,
                true,
                vec![Condition::Tokens(vec![Token([i; 16])])],
            );
            let st = Filter::search(scope, &p)
                .expect("filter")
                .expect("some")
                .page(OBJECT_COLUMNS, None, 11);
            let mut stmt = conn.prepare_cached(&st.sql).expect("prepare");
            let mut rows = stmt
                .query(params_from_iter(st.params.iter()))
                .expect("query");
            while rows.next().expect("step").is_some() {}
            drop(rows);
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "run {i} recompiled the statement"
            );
        }
    }
}
