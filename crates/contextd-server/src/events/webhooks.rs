//! The webhook dispatcher. (Being written.)

use crate::AppState;

use super::EventsConfig;

/// Delivers events to the registered webhooks until the server stops.
pub async fn run(_state: AppState, _config: EventsConfig) {}
