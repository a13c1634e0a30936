//! The connection state a client reports to its listeners ([`Client::connection_state`]).
//!
//! [`Client::connection_state`]: crate::Client::connection_state

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a client stands with the service, as the outcomes of its calls show it: the
/// `registered` / `unregistered` / `unreachable` / `invalid` of the original SDK's status
/// listener.
///
/// | state | entered when |
/// | --- | --- |
/// | `Registered` | a call with the credential succeeded, or a token was issued for it; also the state of a client that holds a credential not tried yet (just built, or given a new connectionData) |
/// | `Unregistered` | the client holds no connectionData ([`Client::set_connection_data`] with `None`: the component was deregistered), or was built without a token |
/// | `Unreachable` | a call (or a token exchange) got no answer: the connection failed, or the timeout ran out before an answer |
/// | `Invalid` | the token endpoint refused the connectionData's credential (`401 invalid_client`: the connector was revoked, or its secret rotated past its grace period), a bearer token was refused with 401, or a connectionData the client was told to follow can't be used |
///
/// Other failures (a 404, a validation error, a 503) say nothing about the connection and
/// leave the state as it is. Outcomes of calls that started before a new connectionData was
/// set are not counted.
///
/// [`Client::set_connection_data`]: crate::Client::set_connection_data
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConnectionState {
    /// The credential works, or has not been tried yet.
    Registered,
    /// There is no credential to connect with.
    Unregistered,
    /// The service (or the proxy) did not answer.
    Unreachable,
    /// The credential is refused: register the component again.
    Invalid,
}

impl ConnectionState {
    /// The lowercase name: `registered`, `unregistered`, `unreachable`, `invalid`.
    ///
    /// ```
    /// use contextd_client::ConnectionState;
    ///
    /// assert_eq!(ConnectionState::Unreachable.as_str(), "unreachable");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Registered => "registered",
            ConnectionState::Unregistered => "unregistered",
            ConnectionState::Unreachable => "unreachable",
            ConnectionState::Invalid => "invalid",
        }
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
