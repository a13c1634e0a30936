//! Searches as the core plans them, and what a plan means for every backend: which of its
//! conditions count, when it can match nothing, which bounds it puts on an object's times.

use chrono::{DateTime, Utc};

use super::{PagePosition, Token};
use crate::ids::ObjectId;
use crate::object::{Kind, MediaType, State};

/// One condition of a search; the values inside it are OR-ed.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// The object carries any of these tokens.
    Tokens(Vec<Token>),
    /// Its id is one of these.
    Ids(Vec<ObjectId>),
    /// Its customer is one of these.
    CustomerIds(Vec<ObjectId>),
    /// Its parent is one of these.
    ParentIds(Vec<ObjectId>),
    /// Its state is one of these, where an active request untouched since before
    /// `active_since` (the auto-close cutoff) counts as closed.
    States {
        /// Wanted states.
        states: Vec<State>,
        /// The auto-close cutoff.
        active_since: DateTime<Utc>,
    },
    /// Its media type is one of these.
    MediaTypes(Vec<MediaType>),
}

/// A search, planned by the core: every value is already normalized and hashed.
#[derive(Clone, Debug)]
pub struct SearchPlan {
    /// Which kind of object.
    pub kind: Kind,
    /// `true`: all conditions must hold; `false`: any one.
    pub match_all: bool,
    /// The conditions (none: every object of the kind).
    pub conditions: Vec<Condition>,
    /// Inclusive lower bound on `created`.
    pub created_from: Option<DateTime<Utc>>,
    /// Inclusive upper bound on `created`.
    pub created_to: Option<DateTime<Utc>>,
    /// Inclusive lower bound on `last_updated`.
    pub updated_from: Option<DateTime<Utc>>,
    /// Inclusive upper bound on `last_updated`.
    pub updated_to: Option<DateTime<Utc>>,
    /// Objects carrying any of these presence tokens are excluded.
    pub not_exists: Vec<Token>,
    /// Page size.
    pub limit: usize,
    /// Continue after this position (newest `last_updated` first, then id descending).
    pub after: Option<PagePosition>,
}

impl Condition {
    /// Whether the condition lists no value, so that it matches nothing.
    pub fn is_empty(&self) -> bool {
        match self {
            Condition::Tokens(v) => v.is_empty(),
            Condition::Ids(v) | Condition::CustomerIds(v) | Condition::ParentIds(v) => v.is_empty(),
            Condition::States { states, .. } => states.is_empty(),
            Condition::MediaTypes(v) => v.is_empty(),
        }
    }
}

/// An inclusive bound a search puts on one of an object's times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeBound {
    /// The time bounded, by its [`StoredObject`](super::StoredObject) field (and column)
    /// name: `created` or `last_updated`.
    pub field: &'static str,
    /// `true`: at or after `at`; `false`: at or before.
    pub lower: bool,
    /// The bound.
    pub at: DateTime<Utc>,
}

impl SearchPlan {
    /// The conditions a backend must test (none: every object of the kind), or `None` when
    /// the plan can match nothing and the answer is an empty page, without a query. A
    /// condition without values matches nothing: it sinks a match-all plan, and an any-of
    /// plan sinks when all its conditions are such.
    pub fn live_conditions(&self) -> Option<Vec<&Condition>> {
        let live: Vec<&Condition> = self.conditions.iter().filter(|c| !c.is_empty()).collect();
        let sunk = if self.match_all {
            live.len() < self.conditions.len()
        } else {
            live.is_empty() && !self.conditions.is_empty()
        };
        (!sunk).then_some(live)
    }

    /// The bounds on `created` and `last_updated`, in a fixed order (so that statement texts
    /// repeat).
    pub fn time_bounds(&self) -> impl Iterator<Item = TimeBound> {
        [
            ("created", true, self.created_from),
            ("created", false, self.created_to),
            ("last_updated", true, self.updated_from),
            ("last_updated", false, self.updated_to),
        ]
        .into_iter()
        .filter_map(|(field, lower, at)| at.map(|at| TimeBound { field, lower, at }))
    }
}

/// The states a [`Condition::States`] admits, each once, in a fixed order (so that statement
/// texts repeat).
pub fn wanted_states(states: &[State]) -> impl Iterator<Item = State> + '_ {
    State::ALL.iter().copied().filter(|s| states.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_millis;

    fn plan(match_all: bool, conditions: Vec<Condition>) -> SearchPlan {
        SearchPlan {
            kind: Kind::Customer,
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

    #[test]
    fn a_plan_matches_nothing_when_its_empty_conditions_decide() {
        let some = Condition::Tokens(vec![Token([1; 16])]);
        let none = Condition::Ids(Vec::new());
        for all in [true, false] {
            assert_eq!(
                plan(all, vec![]).live_conditions(),
                Some(vec![]),
                "no condition: every object of the kind"
            );
            assert_eq!(plan(all, vec![none.clone()]).live_conditions(), None);
            assert_eq!(
                plan(all, vec![some.clone()]).live_conditions(),
                Some(vec![&some])
            );
        }
        let mixed = vec![some.clone(), none.clone()];
        assert_eq!(plan(true, mixed.clone()).live_conditions(), None);
        assert_eq!(
            plan(false, mixed).live_conditions(),
            Some(vec![&some]),
            "any-of: the empty condition drops out"
        );
        let no_states = Condition::States {
            states: Vec::new(),
            active_since: from_millis(0),
        };
        assert!(no_states.is_empty());
        assert!(Condition::MediaTypes(Vec::new()).is_empty());
    }

    #[test]
    fn time_bounds_in_a_fixed_order() {
        let mut p = plan(true, vec![]);
        assert_eq!(p.time_bounds().count(), 0);
        p.updated_to = Some(from_millis(4));
        p.created_from = Some(from_millis(1));
        let bounds: Vec<_> = p
            .time_bounds()
            .map(|b| (b.field, b.lower, b.at.timestamp_millis()))
            .collect();
        assert_eq!(
            bounds,
            vec![("created", true, 1), ("last_updated", false, 4)]
        );
    }

    #[test]
    fn wanted_states_once_each_in_declaration_order() {
        let got: Vec<State> =
            wanted_states(&[State::Closed, State::Active, State::Closed]).collect();
        assert_eq!(got, vec![State::Active, State::Closed]);
        assert_eq!(wanted_states(&[]).count(), 0);
    }
}
