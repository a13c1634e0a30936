//! The audit segments (months) an instance knows to exist, so that an append need not ask.

use std::collections::BTreeSet;

/// The months whose segment is known to exist.
#[derive(Debug, Default)]
pub(crate) struct KnownMonths(std::sync::Mutex<BTreeSet<i32>>);

impl KnownMonths {
    /// Those of `months` not known to exist.
    pub(crate) fn unknown(&self, months: &BTreeSet<i32>) -> Vec<i32> {
        let known = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        months
            .iter()
            .filter(|m| !known.contains(m))
            .copied()
            .collect()
    }

    /// Forgets a month whose segment was dropped.
    pub(crate) fn forget(&self, month: i32) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&month);
    }

    /// Records months whose segment exists (learned from a committed transaction only: a
    /// segment made by one rolled back does not exist).
    pub(crate) fn learn(&self, months: Vec<i32>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(months);
    }
}
