//! The in-process hub: one task tails the outbox and fans events out to the Server-Sent
//! Events subscribers of this instance. (Being written.)

use std::sync::Arc;

/// Fans outbox events out to this instance's subscribers.
pub struct Hub {}

impl Hub {
    /// A hub with `buffer` events of room per subscriber.
    pub fn new(_buffer: usize) -> Self {
        Self {}
    }

    /// Tails the outbox until the server stops.
    pub async fn run(self: Arc<Self>) {}
}
