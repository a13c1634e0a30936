//! SQL for searches and timelines, built from placeholders only: no value is ever spliced
//! into the text.
//!
//! IN-lists are padded to the next power of two (repeating the last value, which changes
//! nothing) so that the number of distinct statement texts stays small and the prepared
//! statement cache keeps hitting.

use contextd_core::ids::Scope;
use contextd_core::store::{Condition, PagePosition, SearchPlan, StoreError, TimelineQuery, Token};
use rusqlite::types::Value;

use crate::db::ms;

/// Most values accepted in one condition (the core sends a few hundred at most).
pub(crate) const MAX_IN_VALUES: usize = 1024;

/// A WHERE clause over `objects o` with its bound values, and the order of its pages.
pub(crate) struct Filter {
    clause: String,
    params: Vec<Value>,
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
        let mut f = Self {
            clause: String::with_capacity(256),
            params: Vec::with_capacity(8),
            order_column,
        };
        f.clause.push_str("o.org_id = ? AND o.partition = ?");
        f.params.push(Value::Blob(scope.org.0.as_bytes().to_vec()));
        f.params
            .push(Value::Text(scope.partition.as_str().to_owned()));
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
        let org = self.params[0].clone();
        let partition = self.params[1].clone();
        self.push("(SELECT t.object_id FROM tokens t WHERE t.org_id = ");
        self.bind(org);
        self.push(" AND t.partition = ");
        self.bind(partition);
        self.push(" AND t.token IN ");
        self.bind_list(tokens.iter().map(|t| Value::Blob(t.0.to_vec())).collect())?;
        self.push(")");
        Ok(())
    }

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
                self.push("o.customer_id IN ");
                self.bind_list(ids(v))
            }
            Condition::ParentIds(v) => {
                self.push("o.parent_id IN ");
                self.bind_list(ids(v))
            }
            Condition::States(v) => {
                self.push("o.state IN ");
                self.bind_list(
                    v.iter()
                        .map(|s| Value::Text(s.as_str().to_owned()))
                        .collect(),
                )
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

    /// The filter of a search, or `None` when the plan cannot match anything (a condition
    /// without values matches nothing).
    pub(crate) fn search(scope: Scope, plan: &SearchPlan) -> Result<Option<Self>, StoreError> {
        let conditions: Vec<&Condition> = plan.conditions.iter().filter(|c| !is_empty(c)).collect();
        if !plan.conditions.is_empty()
            && (conditions.is_empty()
                || (plan.match_all && conditions.len() < plan.conditions.len()))
        {
            return Ok(None);
        }
        let mut f = Self::new(scope, "last_updated");
        f.push(" AND o.kind = ");
        f.bind(Value::Text(plan.kind.as_str().to_owned()));
        for (column, op, bound) in [
            ("created", ">=", plan.created_from),
            ("created", "<=", plan.created_to),
            ("last_updated", ">=", plan.updated_from),
            ("last_updated", "<=", plan.updated_to),
        ] {
            if let Some(t) = bound {
                f.push(" AND o.");
                f.push(column);
                f.push(" ");
                f.push(op);
                f.push(" ");
                f.bind(Value::Integer(ms(&t)));
            }
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
        f.push(" AND o.customer_id = ");
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

fn is_empty(c: &Condition) -> bool {
    match c {
        Condition::Tokens(v) => v.is_empty(),
        Condition::Ids(v) | Condition::CustomerIds(v) | Condition::ParentIds(v) => v.is_empty(),
        Condition::States(v) => v.is_empty(),
        Condition::MediaTypes(v) => v.is_empty(),
    }
}
