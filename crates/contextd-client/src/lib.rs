//! The Rust SDK of contextd: a typed async client for every endpoint of the native `/v1` API
//! (objects, search, timeline, dictionary, flush, status, users, keys, grants, audit, and the
//! live events as a reconnecting [`EventStream`]), built from a base URL and a token or from a
//! component's connectionData.
//!
//! A [`Client`] applies its [`Settings`] (README, "Rust SDK") to every call: a timeout per operation
//! (standard profile 200–15000 ms, default 1200; voice/IVR profile 1200–5000 ms, default
//! 2400; values outside are clamped and logged), retries with jittered backoff for idempotent
//! operations only and only within that timeout, an optional proxy, and lab mode. Failures
//! are typed [`Error`]s that say what to fix; every operation is counted in
//! [`Client::stats_summary`], and [`Client::report_every`] logs a status line and a
//! statistics summary every 30 minutes on the wall clock (:00 and :30). The wire types are those of [`contextd_proto`], re-exported as
//! [`proto`], so the SDK, the server and the CLI cannot drift apart.
//!
//! A client built from a connectionData takes a new one without a restart
//! ([`Client::set_connection_data`], or [`Client::follow`] on the registration resource's
//! changes), tells a status listener where it stands ([`Client::connection_state`],
//! [`ConnectionState`]), and [`Client::test_connection`] checks a connectionData step by step
//! as the original tools' "Test connection" did.
//!
//! With the `registration` feature (on by default) the SDK also ships the `registration` module: the
//! registration resource a component exposes (`GET`/`PUT …/contextservice`), as an axum router,
//! with the storage of the component's connectionData.
//!
//! The SDK never puts a secret (token, client secret, proxy password) in a `Debug` output, an
//! error message or a log line, and never logs a request or answer body.
//!
//! # Example: a caller's journey
//!
//! ```no_run
//! use contextd_client::proto::object::ObjectInput;
//! use contextd_client::proto::Kind;
//! use contextd_client::{Client, Search, Settings};
//! use futures::TryStreamExt;
//! use serde_json::json;
//!
//! # #[tokio::main]
//! # async fn main() -> contextd_client::Result<()> {
//! let client = Client::new("http://127.0.0.1:8080", "ctx_…", Settings::default())?;
//!
//! // A new customer…
//! let customer = client
//!     .create(
//!         Kind::Customer,
//!         &ObjectInput {
//!             fieldsets: vec!["cisco.base.customer".into()],
//!             data: [
//!                 ("Context_First_Name".to_owned(), json!("Ada")),
//!                 ("Context_Mobile_Phone".to_owned(), json!("+1 (555) 010-0001")),
//!             ]
//!             .into(),
//!             ..Default::default()
//!         },
//!     )
//!     .await?;
//!
//! // …found again by the caller number (phones match on digits only)…
//! let found = client
//!     .search(Kind::Customer, &Search::all().term("Context_Mobile_Phone", "15550100001").build())
//!     .await?;
//! assert!(found.items.unwrap_or_default().iter().any(|c| c.id == customer.id));
//!
//! // …and the whole journey, newest first.
//! let journey: Vec<_> = client.timeline_stream(customer.id, None).try_collect().await?;
//! println!("{} entries; stats: {}", journey.len(), client.stats_summary());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![warn(rustdoc::broken_intra_doc_links)]

mod client;
mod connection;
mod diagnose;
mod error;
mod events;
#[cfg(feature = "registration")]
pub mod registration;
mod report;
mod search;
mod settings;
mod state;
pub mod webhooks;

pub use client::Client;
pub use connection::decode_connection_data;
pub use contextd_proto as proto;
/// Per-operation statistics and the report schedule: the log targets of the status line and
/// the statistics summary ([`stats::STATUS_TAG`], [`stats::STATS_TAG`]) and the boundary
/// arithmetic of [`Client::report_every`] ([`stats::next_boundary`]).
pub use contextd_stats as stats;
pub use diagnose::{ConnectionCheck, ConnectionReport, ConnectionStep, StepOutcome};
pub use error::{Error, Result};
pub use events::EventStream;
pub use search::Search;
pub use settings::{Profile, Settings};
pub use state::ConnectionState;
