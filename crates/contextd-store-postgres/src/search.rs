//! SQL for searches and timelines, built from placeholders only: no value is ever spliced
//! into the text.
//!
//! A list of values is one array parameter (`= ANY($n)`), so the text of a statement depends
//! only on which conditions a search has, not on how many values they hold, and prepared
//! statements are reused. A page and its total come from one statement, hence from one
//! snapshot; the total is counted only when the page cannot tell it.

use contextd_core::ids::{ObjectId, Scope};
use contextd_core::object::State;
use contextd_core::store::{
    wanted_states, Condition, PagePosition, SearchPlan, TimelineQuery, Token,
};
use uuid::Uuid;

use crate::db::{ms, Param};
use crate::store::token_bytes;

/// A WHERE clause over `objects o` with its bound values, and the order of its pages.
pub(crate) struct Filter {
    clause: String,
    params: Vec<Param>,
    /// `last_updated` (search) or `created` (timeline).
    order_column: &'static str,
}

/// A statement and its values.
pub(crate) struct Statement {
    pub sql: String,
    pub params: Vec<Param>,
}

fn uuids(ids: &[ObjectId]) -> Vec<Uuid> {
    ids.iter().map(|id| id.0).collect()
}

impl Filter {
    /// `$1` is the org and `$2` the partition in every statement.
    fn new(scope: Scope, order_column: &'static str) -> Self {
        let mut f = Self {
            clause: String::with_capacity(256),
            params: Vec::with_capacity(8),
            order_column,
        };
        f.push("o.org_id = ");
        f.bind(Box::new(scope.org.0));
        f.push(" AND o.partition = ");
        f.bind(Box::new(scope.partition.as_str()));
        f
    }

    fn push(&mut self, sql: &str) {
        self.clause.push_str(sql);
    }

    /// Writes the next placeholder for `value`.
    fn bind(&mut self, value: Param) {
        self.params.push(value);
        self.clause.push('$');
        self.clause.push_str(&self.params.len().to_string());
    }

    /// `o.id IN (…)`-able subquery: objects of the scope carrying any of the tokens.
    fn tokens(&mut self, tokens: &[Token]) {
        self.push("(SELECT t.object_id FROM tokens t WHERE t.org_id = $1 AND t.partition = $2 AND t.token = ANY (");
        self.bind(Box::new(token_bytes(tokens)));
        self.push("))");
    }

    /// Writes one condition of [`SearchPlan::live_conditions`] (none is empty).
    fn condition(&mut self, condition: &Condition) {
        match condition {
            Condition::Tokens(tokens) => {
                // Not `o.id IN (subquery)`: without statistics (a new or freshly loaded
                // database) PostgreSQL may plan that as a walk over every object of the kind
                // probing the tokens of each, minutes at a million customers. An array built
                // first, from the tokens' primary key, then read through the objects' primary
                // key, is the right plan whatever the statistics say.
                self.push("o.id = ANY (ARRAY");
                self.tokens(tokens);
                self.push(")");
            }
            Condition::Ids(v) => {
                self.push("o.id = ANY (");
                self.bind(Box::new(uuids(v)));
                self.push(")");
            }
            Condition::CustomerIds(v) => {
                self.push("o.customer_id = ANY (");
                self.bind(Box::new(uuids(v)));
                self.push(")");
            }
            Condition::ParentIds(v) => {
                self.push("o.parent_id = ANY (");
                self.bind(Box::new(uuids(v)));
                self.push(")");
            }
            Condition::States {
                states,
                active_since,
            } => {
                // An active request untouched since the cutoff is closed for every reader,
                // whether or not the sweep has written it yet.
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
                    self.bind(Box::new(ms(active_since)));
                    self.push("))");
                }
                self.push(")");
            }
            Condition::MediaTypes(v) => {
                self.push("o.media_type = ANY (");
                self.bind(Box::new(
                    v.iter()
                        .map(|m| m.as_str().to_owned())
                        .collect::<Vec<String>>(),
                ));
                self.push(")");
            }
        }
    }

    /// The filter of a search, or `None` when the plan cannot match anything
    /// ([`SearchPlan::live_conditions`]).
    pub(crate) fn search(scope: Scope, plan: &SearchPlan) -> Option<Self> {
        let conditions = plan.live_conditions()?;
        let mut f = Self::new(scope, "last_updated");
        f.push(" AND o.kind = ");
        f.bind(Box::new(plan.kind.as_str()));
        for b in plan.time_bounds() {
            f.push(&format!(
                " AND o.{} {} ",
                b.field,
                if b.lower { ">=" } else { "<=" }
            ));
            f.bind(Box::new(ms(&b.at)));
        }
        if !plan.not_exists.is_empty() {
            f.push(" AND o.id NOT IN ");
            f.tokens(&plan.not_exists);
        }
        if !conditions.is_empty() {
            let joiner = if plan.match_all { " AND " } else { " OR " };
            f.push(" AND (");
            for (i, c) in conditions.into_iter().enumerate() {
                if i > 0 {
                    f.push(joiner);
                }
                f.condition(c);
            }
            f.push(")");
        }
        Some(f)
    }

    /// The filter of a timeline.
    pub(crate) fn timeline(scope: Scope, query: &TimelineQuery) -> Self {
        let mut f = Self::new(scope, "created");
        f.push(" AND o.customer_id = ");
        f.bind(Box::new(query.customer_id.0));
        match query.media_type {
            Some(media) => {
                f.push(" AND o.kind = 'activity' AND o.media_type = ");
                f.bind(Box::new(media.as_str()));
            }
            None => f.push(" AND o.kind IN ('request', 'activity', 'detail')"),
        }
        f
    }

    /// One page of `columns` (which must include `o.id` and the order column), newest
    /// first, strictly after `after`, at most `limit` rows, plus the total of all matches
    /// as the last column. The page is fetched one row long, to learn whether another
    /// follows. The total is counted only when the page does not tell it: after a cursor,
    /// or when more rows follow. An empty page still yields one row, of NULLs but for the
    /// total.
    pub(crate) fn page(
        self,
        columns: &str,
        after: Option<PagePosition>,
        limit: usize,
    ) -> Statement {
        let Self {
            clause,
            mut params,
            order_column: order,
        } = self;
        let mut bind = |value: Param| {
            params.push(value);
            format!("${}", params.len())
        };
        let cursor = match after {
            Some(p) => format!(
                " AND (o.{order}, o.id) < ({}, {})",
                bind(Box::new(ms(&p.time))),
                bind(Box::new(p.id.0))
            ),
            None => String::new(),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX - 1);
        let fetch = bind(Box::new(limit + 1));
        let count_all = format!("(SELECT count(*) FROM objects o WHERE {clause})");
        let total = if after.is_some() {
            count_all
        } else {
            format!(
                "CASE WHEN (SELECT count(*) FROM page) > {} THEN {count_all} ELSE (SELECT count(*) FROM page) END",
                bind(Box::new(limit))
            )
        };
        let sql = format!(
            "WITH page AS (
                 SELECT {columns} FROM objects o WHERE {clause}{cursor}
                 ORDER BY o.{order} DESC, o.id DESC LIMIT {fetch}
             )
             SELECT p.*, c.total FROM (SELECT {total} AS total) c LEFT JOIN page p ON true
             ORDER BY p.{order} DESC, p.id DESC"
        );
        Statement { sql, params }
    }
}
