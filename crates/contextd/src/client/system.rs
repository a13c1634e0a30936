//! `contextd status`: the server's serviceability summary (README, "Rust SDK").

use std::time::Duration;

use contextd_client::proto::system::Status;

use super::output;
use super::ClientArgs;

/// Runs `contextd status`.
pub async fn status(args: &ClientArgs) -> anyhow::Result<()> {
    let status = args.connect()?.status().await?;
    args.output().emit(&status, || status_lines(&status))
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
