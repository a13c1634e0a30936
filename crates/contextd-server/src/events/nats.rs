//! The NATS JetStream publisher. (Being written.)

use std::sync::Arc;

use contextd_core::service::Context;

/// Publishes every event to JetStream until the server stops.
pub async fn run(_context: Arc<Context>, _url: String, _stream: String) {}
