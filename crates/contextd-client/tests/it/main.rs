//! The SDK against real sockets that misbehave as networks do: a peer that drops every
//! connection without answering, one that answers 503, one that never answers. The SDK's
//! behaviour against a real contextd is tested by the server crate's integration tests, which
//! drive the server through it. With the `registration` feature: the component-side registration
//! resource over HTTP.

mod network;
#[cfg(feature = "registration")]
mod registration;
