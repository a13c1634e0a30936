//! "Test connection", as the original tools offered it: a connectionData checked step by step
//! — decoding, the proxy, reachability, each partition's credential — with the step that failed
//! named ([`Client::test_connection`]).

use std::fmt;
use std::time::{Duration, Instant};

use contextd_proto::Partition;
use serde::{Serialize, Serializer};

use crate::client::Client;
use crate::connection::{Connection, Credential};
use crate::error::Error;
use crate::settings::{redact_userinfo, Settings};

/// One check of [`Client::test_connection`], in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionCheck {
    /// The connectionData decodes: base64 of the JSON, a usable `serviceUrl`, both credential
    /// sets present.
    ConnectionData,
    /// The proxy, when one is set, accepts a TCP connection within the timeout.
    Proxy,
    /// The service answers `GET /v1/ping` (through the proxy, when one is set).
    Reachability,
    /// The production credential (`credentials`) is exchanged for a token, which `whoami`
    /// places in the production partition of the connectionData's organization.
    ProductionCredentials,
    /// The same for the lab credential (`credentialsLabMode`) and the lab partition.
    LabCredentials,
}

impl ConnectionCheck {
    /// Every check, in the order they run.
    pub const ALL: [ConnectionCheck; 5] = [
        ConnectionCheck::ConnectionData,
        ConnectionCheck::Proxy,
        ConnectionCheck::Reachability,
        ConnectionCheck::ProductionCredentials,
        ConnectionCheck::LabCredentials,
    ];

    /// The name reports use: `connectionData`, `proxy`, `reachability`,
    /// `credentials (production)`, `credentials (lab)`.
    ///
    /// ```
    /// use contextd_client::ConnectionCheck;
    ///
    /// assert_eq!(ConnectionCheck::ProductionCredentials.name(), "credentials (production)");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            ConnectionCheck::ConnectionData => "connectionData",
            ConnectionCheck::Proxy => "proxy",
            ConnectionCheck::Reachability => "reachability",
            ConnectionCheck::ProductionCredentials => "credentials (production)",
            ConnectionCheck::LabCredentials => "credentials (lab)",
        }
    }
}

impl fmt::Display for ConnectionCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for ConnectionCheck {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// How a check went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepOutcome {
    /// It passed.
    Ok,
    /// It failed; the checks after it were skipped.
    Failed,
    /// It was not run: nothing to check (no proxy), or an earlier check failed.
    Skipped,
}

/// One check's result. Serialized as `{"step", "outcome", "message", "latencyMs"?,
/// "errorKind"?}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStep {
    /// Which check.
    pub step: ConnectionCheck,
    /// How it went.
    pub outcome: StepOutcome,
    /// What was found, for a person: the proxy or service URL, the partition reached, or what
    /// failed and what to do. Never a secret.
    pub message: String,
    /// How long the check took, ms (not for a skipped check).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// The failure's [`Error::kind`] (`unreachable`, `unauthorized`, …), when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
    /// The failure, typed, when it failed (not serialized).
    #[serde(skip)]
    pub error: Option<Error>,
}

/// What [`Client::test_connection`] found: every check in order, each `ok`, `failed` or
/// `skipped`. Serialized (`--json` of the CLI) as `{"ok", "serviceUrl"?, "proxy"?, "steps":
/// […]}`; the proxy URL without its credentials.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionReport {
    /// Whether every check that ran passed.
    pub ok: bool,
    /// The connectionData's `serviceUrl`, when it decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_url: Option<String>,
    /// The proxy tried, credentials redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Every check, in order ([`ConnectionCheck::ALL`]).
    pub steps: Vec<ConnectionStep>,
}

impl ConnectionReport {
    /// The check that failed, if one did.
    pub fn failed_step(&self) -> Option<&ConnectionStep> {
        self.steps.iter().find(|s| s.outcome == StepOutcome::Failed)
    }

    /// The failure of the check that failed, taken out of the report (its step keeps its
    /// message and error kind).
    pub fn take_error(&mut self) -> Option<Error> {
        self.steps.iter_mut().find_map(|s| s.error.take())
    }

    fn new(proxy: Option<String>) -> Self {
        Self {
            ok: true,
            service_url: None,
            proxy,
            steps: Vec::new(),
        }
    }

    fn passed(&mut self, step: ConnectionCheck, started: Instant, message: String) {
        self.steps.push(ConnectionStep {
            step,
            outcome: StepOutcome::Ok,
            message,
            latency_ms: Some(millis(started.elapsed())),
            error_kind: None,
            error: None,
        });
    }

    fn failed(&mut self, step: ConnectionCheck, started: Instant, message: String, error: Error) {
        self.ok = false;
        self.steps.push(ConnectionStep {
            step,
            outcome: StepOutcome::Failed,
            message,
            latency_ms: Some(millis(started.elapsed())),
            error_kind: Some(error.kind()),
            error: Some(error),
        });
    }

    fn skipped(&mut self, step: ConnectionCheck, message: &str) {
        self.steps.push(ConnectionStep {
            step,
            outcome: StepOutcome::Skipped,
            message: message.to_owned(),
            latency_ms: None,
            error_kind: None,
            error: None,
        });
    }

    /// Marks every check not run as skipped.
    fn finish(mut self) -> Self {
        for check in ConnectionCheck::ALL {
            if !self.steps.iter().any(|s| s.step == check) {
                self.skipped(check, "an earlier check failed");
            }
        }
        self
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64 / 100.0).round() / 10.0
}

impl Client {
    /// "Test connection": checks a connectionData the way a component would use it, in order,
    /// stopping at the first failure (the checks after it are `skipped`):
    ///
    /// 1. `connectionData` — it decodes (base64 of the JSON, a usable `serviceUrl`, both
    ///    credential sets);
    /// 2. `proxy` — when [`Settings::proxy`] is set: a TCP connection to the proxy's host and
    ///    port within [`Settings::timeout`] (`skipped` without a proxy);
    /// 3. `reachability` — `GET /v1/ping` at the `serviceUrl`, through the proxy;
    /// 4. `credentials (production)` — the production credential is exchanged for a token at
    ///    `POST /v1/token`, and `whoami` with it answers the production partition of the
    ///    connectionData's organization;
    /// 5. `credentials (lab)` — the same with the lab credential and partition.
    ///
    /// Each step says `ok`, `failed` or `skipped`, with a message and its latency; a failed
    /// one keeps the typed [`Error`] ([`ConnectionReport::take_error`]): an
    /// [`Error::InvalidConnectionData`] for the first step, [`Error::Unreachable`] or
    /// [`Error::Timeout`] when the proxy or the service can't be reached (a proxy answering
    /// 502/503/504 counts as not reaching the service), [`Error::Unauthorized`] when a
    /// credential is refused or reaches the wrong partition or organization. `settings` give
    /// the timeout of each step and the proxy; their lab mode does not matter (both partitions
    /// are checked). No secret is ever put in the report.
    ///
    /// ```no_run
    /// use contextd_client::{Client, Settings, StepOutcome};
    ///
    /// # async fn demo(data: &str) {
    /// let settings = Settings::voice().with_proxy("http://proxy.example.com:3128");
    /// let report = Client::test_connection(data, settings).await;
    /// for step in &report.steps {
    ///     let mark = match step.outcome {
    ///         StepOutcome::Ok => "✓",
    ///         StepOutcome::Failed => "✗",
    ///         StepOutcome::Skipped => "-",
    ///     };
    ///     println!("{mark} {}  {}", step.step, step.message);
    /// }
    /// if let Some(failed) = report.failed_step() {
    ///     eprintln!("the {} check failed", failed.step);
    /// }
    /// # }
    /// ```
    pub async fn test_connection(data: &str, settings: Settings) -> ConnectionReport {
        let mut report = ConnectionReport::new(settings.proxy().map(redact_userinfo));

        // 1. The connectionData itself.
        let started = Instant::now();
        let decoded = crate::connection::decode_connection_data(data).and_then(|decoded| {
            // Both credential sets and the URL, as a client would take them.
            Connection::from_connection_data(data, &settings.clone().with_lab_mode(false))?;
            let lab =
                Connection::from_connection_data(data, &settings.clone().with_lab_mode(true))?;
            Ok((decoded, lab.base_url))
        });
        let (decoded, base_url) = match decoded {
            Ok(found) => found,
            Err(e) => {
                let message = match &e {
                    Error::InvalidConnectionData(why) => {
                        format!("it can't be used: {why}; paste it whole, or register the component again")
                    }
                    other => other.to_string(),
                };
                report.failed(ConnectionCheck::ConnectionData, started, message, e);
                return report.finish();
            }
        };
        report.service_url = Some(base_url.clone());
        report.passed(
            ConnectionCheck::ConnectionData,
            started,
            format!(
                "service {}, organization {}",
                redact_userinfo(&base_url),
                decoded.org_id
            ),
        );

        // 2. The proxy.
        match settings.proxy() {
            None => report.skipped(ConnectionCheck::Proxy, "no proxy configured"),
            Some(proxy) => {
                let started = Instant::now();
                match check_proxy(proxy, &base_url, settings.timeout()).await {
                    Ok(shown) => report.passed(ConnectionCheck::Proxy, started, shown),
                    Err((message, e)) => {
                        report.failed(ConnectionCheck::Proxy, started, message, e);
                        return report.finish();
                    }
                }
            }
        }

        // 3. The service, through the proxy.
        let started = Instant::now();
        let probe = Client::build(
            Connection {
                base_url: base_url.clone(),
                credential: Credential::None,
                data: None,
            },
            settings.clone(),
        );
        let pinged = match probe {
            Ok(probe) => probe.ping().await.map_err(|e| match e {
                Error::Server {
                    status: status @ (502..=504),
                    code: None,
                    ..
                } if settings.proxy().is_some() => Error::Unreachable {
                    url: base_url.clone(),
                    reason: format!(
                        "the proxy answered HTTP {status}: it could not reach the service"
                    ),
                },
                other => other,
            }),
            Err(e) => Err(e),
        };
        match pinged {
            Ok(_) => report.passed(
                ConnectionCheck::Reachability,
                started,
                redact_userinfo(&base_url),
            ),
            Err(e) => {
                let message = e.to_string();
                report.failed(ConnectionCheck::Reachability, started, message, e);
                return report.finish();
            }
        }

        // 4, 5. Each partition's credential.
        for (check, partition) in [
            (
                ConnectionCheck::ProductionCredentials,
                Partition::Production,
            ),
            (ConnectionCheck::LabCredentials, Partition::Lab),
        ] {
            let started = Instant::now();
            let settings = settings.clone().with_lab_mode(partition == Partition::Lab);
            match check_credential(data, settings, partition, &decoded.org_id.to_string()).await {
                Ok(message) => report.passed(check, started, message),
                Err((message, e)) => {
                    report.failed(check, started, message, e);
                    return report.finish();
                }
            }
        }
        report.finish()
    }
}

/// A TCP connection to the proxy within `timeout`: the proxy URL as shown (credentials
/// redacted), or what failed (an error about reaching `service` through it).
async fn check_proxy(
    proxy: &str,
    service: &str,
    timeout: Duration,
) -> Result<String, (String, Error)> {
    // The original tools took `host:port`; a URL without a scheme is an HTTP proxy.
    let text = if proxy.contains("://") {
        proxy.trim().to_owned()
    } else {
        format!("http://{}", proxy.trim())
    };
    let shown = redact_userinfo(&text);
    let unusable = |why: String| {
        let message = format!("the proxy URL '{shown}' can't be used: {why}");
        (message.clone(), Error::InvalidSettings(message))
    };
    if let Err(e) = reqwest::Proxy::all(text.as_str()) {
        return Err(unusable(e.to_string()));
    }
    let url = url::Url::parse(&text).map_err(|e| unusable(e.to_string()))?;
    let host = match url.host() {
        Some(url::Host::Domain(name)) => name.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(unusable("it has no host".into())),
    };
    let port = url
        .port_or_known_default()
        .or(matches!(url.scheme(), "socks5" | "socks5h").then_some(1080))
        .ok_or_else(|| unusable("it has no port".into()))?;
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port)))
        .await
    {
        Ok(Ok(_)) => Ok(shown),
        Ok(Err(e)) => Err((
            format!("cannot connect to the proxy {shown}: {e}; check the proxy URL and that the proxy runs"),
            Error::Unreachable {
                url: service.to_owned(),
                reason: format!("cannot connect to the proxy {shown}: {e}"),
            },
        )),
        Err(_) => Err((
            format!(
                "the proxy {shown} did not accept a connection within {} ms; check the proxy URL and the network",
                timeout.as_millis()
            ),
            Error::Timeout {
                operation: "proxy.connect".into(),
                after: timeout,
            },
        )),
    }
}

/// One partition's credential: exchanged for a token, and `whoami` with it in `partition` of
/// organization `org`. What was found, or what failed.
async fn check_credential(
    data: &str,
    settings: Settings,
    partition: Partition,
    org: &str,
) -> Result<String, (String, Error)> {
    let failed = |e: Error| (e.to_string(), e);
    let connection = Connection::from_connection_data(data, &settings).map_err(failed)?;
    let client = Client::build(connection, settings).map_err(failed)?;
    let lifetime = client.renew_token().await.map_err(|e| match e {
        Error::Unauthorized { .. } => (
            "the credential was refused at /v1/token: the connector was revoked, or its secret \
             was rotated past its grace period; register the component again"
                .to_owned(),
            e,
        ),
        other => failed(other),
    })?;
    let me = client.whoami().await.map_err(failed)?;
    let wrong = |what: String| {
        let message = format!(
            "{what}; the connectionData is not this service's: register the component again"
        );
        (message.clone(), Error::Unauthorized { detail: message })
    };
    if me.partition != partition {
        return Err(wrong(format!(
            "the {partition} credential works in the {} partition",
            me.partition
        )));
    }
    if !me.org_id.eq_ignore_ascii_case(org) {
        return Err(wrong(format!(
            "the {partition} credential belongs to another organization ({})",
            me.org_id
        )));
    }
    Ok(format!(
        "token issued ({} s), partition {}, role {}",
        lifetime.as_secs(),
        me.partition,
        me.role
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_garbage_string_fails_the_first_check_and_skips_the_rest() {
        let report = Client::test_connection("garbage!", Settings::default()).await;
        assert!(!report.ok);
        let failed = report.failed_step().expect("a failed step");
        assert_eq!(failed.step, ConnectionCheck::ConnectionData);
        assert_eq!(failed.error_kind, Some("invalidConnectionData"));
        assert_eq!(report.steps.len(), 5);
        assert!(report.steps[1..]
            .iter()
            .all(|s| s.outcome == StepOutcome::Skipped && s.latency_ms.is_none()));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["steps"][0]["step"], "connectionData");
        assert_eq!(json["steps"][0]["outcome"], "failed");
        assert_eq!(json["steps"][4]["step"], "credentials (lab)");
        assert_eq!(json["ok"], false);
    }

    #[tokio::test]
    async fn a_closed_proxy_port_fails_the_proxy_check_without_showing_its_password() {
        use base64::Engine as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let data = serde_json::json!({
            "serviceUrl": "http://127.0.0.1:9",
            "orgId": "0190b5a6-0000-7000-8000-000000000000",
            "credentials": {"clientId": "p", "clientSecret": "prod-secret"},
            "credentialsLabMode": {"clientId": "l", "clientSecret": "lab-secret"},
        });
        let data = base64::engine::general_purpose::STANDARD.encode(data.to_string());
        let settings =
            Settings::default().with_proxy(format!("http://user:pw-secret@127.0.0.1:{port}"));
        let mut report = Client::test_connection(&data, settings).await;
        let failed = report.failed_step().expect("a failed step");
        assert_eq!(failed.step, ConnectionCheck::Proxy);
        assert_eq!(failed.error_kind, Some("unreachable"));
        let text = serde_json::to_string(&report).unwrap();
        for secret in ["pw-secret", "prod-secret", "lab-secret"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(report.steps[0].outcome, StepOutcome::Ok);
        assert!(matches!(
            report.take_error(),
            Some(Error::Unreachable { .. })
        ));

        // `host:port`, as the original tools took it, is an HTTP proxy.
        let bare = Settings::default().with_proxy(format!("127.0.0.1:{port}"));
        let report = Client::test_connection(&data, bare).await;
        assert_eq!(
            report.failed_step().map(|s| s.step),
            Some(ConnectionCheck::Proxy)
        );
    }
}
