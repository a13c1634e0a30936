//! Whether a stored connectionData still authenticates: the difference between `registered`
//! and `invalid`.

use std::future::Future;

use async_trait::async_trait;

use crate::{Client, Error, Settings};

/// What a [`Validator`] found out about a connectionData.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It authenticates: the state is `registered`.
    Valid,
    /// It could not be checked (the service is unreachable, slow or failing): nothing says the
    /// credential is bad, so the state is `registered`. The reason is logged as a warning.
    Unverified(String),
    /// It does not authenticate (revoked, rotated past its grace period, malformed): the state
    /// is `invalid`. The reason is logged; it never quotes a secret.
    Invalid(String),
}

impl Verdict {
    /// Whether the state this verdict gives is `registered` ([`Verdict::Valid`] and
    /// [`Verdict::Unverified`]).
    pub fn is_registered(&self) -> bool {
        !matches!(self, Verdict::Invalid(_))
    }
}

/// Decides whether a stored connectionData still authenticates.
///
/// [`Registration`](super::Registration) asks only about a connectionData that decodes (one
/// that does not is `invalid` without asking) and remembers the verdict for a while
/// ([`Registration::verdict_ttl`](super::Registration::verdict_ttl)).
///
/// [`ServiceValidator`] asks the service. A closure `Fn(String) -> impl Future<Output =
/// Verdict>` is a validator too:
///
/// ```
/// use contextd_client::registration::{MemoryStore, Registration, Verdict};
///
/// let registration = Registration::new(MemoryStore::new(), |_data: String| async {
///     Verdict::Valid
/// });
/// # let _ = registration;
/// ```
#[async_trait]
pub trait Validator: Send + Sync + 'static {
    /// The verdict on `connection_data` (well-formed, at most 4096 bytes).
    async fn validate(&self, connection_data: &str) -> Verdict;
}

#[async_trait]
impl<F, Fut> Validator for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Verdict> + Send + 'static,
{
    async fn validate(&self, connection_data: &str) -> Verdict {
        self(connection_data.to_owned()).await
    }
}

/// The validator that asks the service: it builds a [`Client`] from the connectionData
/// ([`Client::from_connection_data`], with the given [`Settings`]) and calls
/// [`Client::whoami`].
///
/// | outcome | verdict | state |
/// | --- | --- | --- |
/// | the connectionData can't be decoded or holds an unusable URL or credential | [`Verdict::Invalid`] | `invalid` |
/// | `whoami` answers | [`Verdict::Valid`] | `registered` |
/// | `whoami` fails with [`Error::Unauthorized`] or [`Error::Forbidden`] (revoked, rotated past its grace period) | [`Verdict::Invalid`] | `invalid` |
/// | any other failure: [`Error::Timeout`], [`Error::Unreachable`], [`Error::Server`], a rate limit, an answer not understood, unusable client settings | [`Verdict::Unverified`] | `registered` |
///
/// The last row is a choice: a network outage or a failing service says nothing about the
/// credential, and answering `invalid` would invite an administrator to register the component
/// again (and so revoke a credential that works) while the service is merely down. The
/// failure is logged as a warning instead.
///
/// ```
/// use contextd_client::registration::ServiceValidator;
/// use contextd_client::Settings;
///
/// let validator = ServiceValidator::new(Settings::voice());
/// # let _ = validator;
/// ```
#[derive(Clone, Debug, Default)]
pub struct ServiceValidator {
    settings: Settings,
}

impl ServiceValidator {
    /// A validator whose clients use `settings` (timeout, proxy, lab mode: with lab mode the
    /// lab credential set is checked, else the production one).
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }
}

#[async_trait]
impl Validator for ServiceValidator {
    async fn validate(&self, connection_data: &str) -> Verdict {
        let client = match Client::from_connection_data(connection_data, self.settings.clone()) {
            Ok(client) => client,
            Err(e @ Error::InvalidConnectionData(_)) => return Verdict::Invalid(e.to_string()),
            Err(e) => return Verdict::Unverified(e.to_string()),
        };
        match client.whoami().await {
            Ok(_) => Verdict::Valid,
            Err(e @ (Error::Unauthorized { .. } | Error::Forbidden { .. })) => {
                Verdict::Invalid(e.to_string())
            }
            Err(e) => Verdict::Unverified(e.to_string()),
        }
    }
}
