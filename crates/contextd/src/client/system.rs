//! `contextd status`: the server's serviceability summary (README, "Rust SDK"), and with a
//! connectionData the original tools' "test connection" first.

use std::time::Duration;

use anyhow::Context as _;
use contextd_client::proto::system::Status;
use contextd_client::{Client, ConnectionReport, Settings, StepOutcome};
use serde::Serialize;

use super::output;
use super::{exit, ClientArgs, Target};

/// The long help of `contextd status`: the connection test, then the exit statuses.
pub fn status_help() -> String {
    format!(
        "With a token, the server's status.\n\n\
         With a connectionData and no token (--connection-data, CONTEXTD_CONNECTION_DATA or a \
         config file), a connection test runs first, as the original tools' \"Test connection\" \
         did, stopping at the first step that fails:\n  \
         connectionData            it decodes (base64 JSON, service URL, both credential sets)\n  \
         proxy                     with --proxy: a TCP connection to the proxy\n  \
         reachability              GET /v1/ping at the service URL (through the proxy)\n  \
         credentials (production)  a token for the production credential; whoami says production\n  \
         credentials (lab)         the same for the lab credential\n\
         Each step prints as `✓ NAME  DETAIL  N ms`, `✗ NAME  WHAT FAILED` or `- NAME  skipped`; \
         when all pass, the status of the partition --lab selects follows. --json prints \
         {{\"ok\", \"serviceUrl\", \"proxy\", \"steps\": [{{\"step\", \"outcome\", \"message\", \
         \"latencyMs\", \"errorKind\"}}], \"status\"}}. A failed step exits with its kind's \
         status: 2 an unusable connectionData or proxy URL, 6 a refused credential, 7 a \
         proxy or service that can't be reached.\n\n{}",
        exit::help()
    )
}

/// Runs `contextd status`.
pub async fn status(args: &ClientArgs) -> anyhow::Result<()> {
    let (target, settings) = args.target()?;
    if let Target::ConnectionData(data) = target {
        return test_connection(args, &data, settings).await;
    }
    let status = args.connect()?.status().await?;
    args.output().emit(&status, || status_lines(&status))
}

/// What `status --json` prints after a connection test.
#[derive(Serialize)]
struct Tested<'a> {
    #[serde(flatten)]
    report: &'a ConnectionReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a Status>,
}

/// The connection test, then the status of the partition the settings select.
async fn test_connection(args: &ClientArgs, data: &str, settings: Settings) -> anyhow::Result<()> {
    let mut report = Client::test_connection(data, settings.clone()).await;
    let status = if report.ok {
        let client = Client::from_connection_data(data, settings)?;
        Some(client.status().await)
    } else {
        None
    };
    let shown = status.as_ref().and_then(|s| s.as_ref().ok());
    let tested = Tested {
        report: &report,
        status: shown,
    };
    args.output().emit(&tested, || {
        let mut text = report_lines(&report);
        if let Some(status) = shown {
            text.push_str("\n\n");
            text.push_str(&status_lines(status));
        }
        text
    })?;
    if let Some(failed) = report.failed_step() {
        let message = format!(
            "the connection test failed at '{}': {}",
            failed.step, failed.message
        );
        return Err(match report.take_error() {
            Some(cause) => exit::Explained { message, cause }.into(),
            None => anyhow::anyhow!(message),
        });
    }
    match status {
        Some(Err(e)) => Err(e).context("the connection test passed, but the status failed"),
        _ => Ok(()),
    }
}

/// One line per step: `✓ proxy  http://…  3 ms`, names aligned.
fn report_lines(report: &ConnectionReport) -> String {
    let width = report
        .steps
        .iter()
        .map(|s| s.step.name().chars().count())
        .max()
        .unwrap_or(0);
    let lines: Vec<String> = report
        .steps
        .iter()
        .map(|s| {
            let mark = match s.outcome {
                StepOutcome::Ok => "✓",
                StepOutcome::Failed => "✗",
                StepOutcome::Skipped => "-",
            };
            let name = s.step.name();
            let pad = " ".repeat(width - name.chars().count());
            let mut line = format!("{mark} {name}{pad}  ");
            if s.outcome == StepOutcome::Skipped {
                line.push_str("skipped: ");
            }
            line.push_str(&s.message.replace(['\r', '\n'], " "));
            if let (StepOutcome::Ok, Some(ms)) = (s.outcome, s.latency_ms) {
                line.push_str(&format!("  {ms:.0} ms"));
            }
            line
        })
        .collect();
    lines.join("\n")
}

fn status_lines(s: &Status) -> String {
    let uptime = humantime::format_duration(Duration::from_secs(s.uptime_seconds));
    let mut rows = vec![
        ("status".to_owned(), s.status.clone()),
        ("version".to_owned(), s.version.clone()),
        ("partition".to_owned(), s.partition.to_string()),
        ("uptime".to_owned(), uptime.to_string()),
    ];
    for d in &s.dependencies {
        let reach = if d.reachable {
            "reachable"
        } else {
            "UNREACHABLE"
        };
        rows.push((
            d.name.clone(),
            format!("{}, {reach}, {:.1} ms", d.backend, d.latency_ms),
        ));
    }
    if let Some(e) = &s.encryption {
        let mut text = format!(
            "data key version {} ({}); {} customer keys and {} objects pending",
            e.data_key_version, e.state, e.pending_customer_keys, e.pending_objects
        );
        if let Some(error) = &e.error {
            text.push_str(&format!("; error: {error}"));
        }
        rows.push(("encryption".to_owned(), text));
    }
    output::pairs(&rows)
}
