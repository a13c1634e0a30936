//! `contextd watch`: the live events of the partition, one line each, until Ctrl-C.

use std::io::Write as _;

use chrono::SecondsFormat;
use clap::Args;
use contextd_client::proto::events::{Event, EventFilter, EventType};
use contextd_client::proto::object::MediaType;
use contextd_client::proto::ObjectId;
use futures::StreamExt;

use super::ClientArgs;

/// `contextd watch`.
#[derive(Args)]
pub struct WatchArgs {
    /// Only events of this customer's objects.
    #[arg(long, value_name = "ID")]
    customer: Option<ObjectId>,
    /// Only these event types, comma-separated (object.created, object.updated,
    /// object.moved, object.closed, object.deleted, object.erased).
    #[arg(long, value_name = "LIST", value_parser = types)]
    types: Option<TypeList>,
    /// Only activities of this channel.
    #[arg(long, value_name = "M")]
    media_type: Option<MediaType>,
    /// Only changes made by this contributor id.
    #[arg(long, value_name = "ID")]
    contributor: Option<String>,
    /// Only activities addressed to this user name (tagged `agent:<name>`).
    #[arg(long, value_name = "NAME")]
    addressed_to: Option<String>,
    /// Start after this event id (every later event is shown) instead of from now.
    #[arg(long, value_name = "ID")]
    after: Option<u64>,
}

/// The event types of `--types`.
#[derive(Clone, Debug)]
struct TypeList(Vec<EventType>);

fn types(text: &str) -> Result<TypeList, String> {
    EventFilter::parse_types(text)
        .map(TypeList)
        .map_err(|e| e.0)
}

/// Prints each event as it comes (`--json`: one JSON object per line) until Ctrl-C, a closed
/// standard output, or a failure that reconnecting can't mend.
pub async fn watch(args: &ClientArgs, watch: WatchArgs) -> anyhow::Result<()> {
    let client = args.connect()?;
    let json = args.output().is_json();
    let filter = EventFilter {
        types: watch.types.map(|t| t.0).unwrap_or_default(),
        customer_id: watch.customer,
        contributor: watch.contributor,
        media_type: watch.media_type,
        addressed_to: watch.addressed_to,
    };
    let mut events = client.events(filter, watch.after);
    // The first connection's failure is the command's (the stream would retry some).
    events.connected().await?;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let event = tokio::select! {
            _ = &mut interrupted => return Ok(()),
            event = events.next() => event,
        };
        let Some(event) = event else {
            return Ok(());
        };
        let event = event?;
        let text = if json {
            serde_json::to_string(&event)?
        } else {
            line(&event)
        };
        if !print(&text)? {
            return Ok(());
        }
    }
}

/// One event for people: `<time> <id> <type> <objectType> <objectId> customer=<id>`.
fn line(event: &Event) -> String {
    let customer = event
        .customer_id
        .map_or_else(|| "-".to_owned(), |c| c.to_string());
    format!(
        "{} {} {} {} {} customer={customer}",
        event.time.to_rfc3339_opts(SecondsFormat::Millis, true),
        event.id,
        event.event_type,
        event.object_type,
        event.object_id,
    )
}

/// Writes a line to standard output at once; `false` when its reader went away (`| head`).
fn print(text: &str) -> anyhow::Result<bool> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contextd_client::proto::object::{Contributor, ContributorType, State};
    use contextd_client::proto::Kind;

    #[test]
    fn a_line_names_the_event_and_its_customer() {
        let customer = ObjectId::new();
        let object = ObjectId::new();
        let time = chrono::DateTime::parse_from_rfc3339("2026-03-01T10:00:00.250Z")
            .unwrap()
            .to_utc();
        let mut event = Event {
            id: 42,
            event_type: EventType::Moved,
            object_id: object,
            object_type: Kind::Request,
            customer_id: Some(customer),
            parent_id: None,
            media_type: None,
            state: State::Active,
            last_updated: time,
            contributor: Contributor {
                id: "agent".into(),
                kind: ContributorType::User,
            },
            time,
            addressed_to: None,
        };
        assert_eq!(
            line(&event),
            format!(
                "2026-03-01T10:00:00.250Z 42 object.moved request {object} customer={customer}"
            )
        );
        event.customer_id = None;
        assert!(line(&event).ends_with(" customer=-"));
        assert_eq!(types("object.created, object.closed").unwrap().0.len(), 2);
        assert!(types("object.nope").is_err());
    }
}
