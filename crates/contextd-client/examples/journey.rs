//! The acceptance journey of DESIGN.md §1, replayed through the SDK as its components would
//! write it: a customer's motorcycle reports a fault, he browses the service page, chats, calls
//! (the IVR finds him by his caller number and his open request), proposes a new date by SMS
//! (the agent desktop pops it up live), the agent confirms, and the request is closed. Every
//! step is one SDK call; the journey ends with the customer's whole timeline.
//!
//! ```text
//! cargo run -p contextd-client --example journey -- --connection-data "$DATA" --lab
//! CONTEXTD_CONNECTION_DATA="$DATA" cargo run -p contextd-client --example journey
//! ```
//!
//! `DATA` is a connector's connectionData (from `/register`, or the admin console). With
//! `--lab` the journey is written with its lab credentials into the lab partition, else with
//! its production credentials. Each run creates a customer of its own (a name with a random
//! suffix) with the same mobile number, so runs against one server don't mix their journeys.
//!
//! The server's integration tests include this file as a module and assert on what [`run`]
//! returns. There `cfg(test)` is set, so [`main`] and its arguments, which need `clap`, are
//! left out.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use contextd_client::proto::events::{EventFilter, EventType};
use contextd_client::proto::object::{ContributorType, MediaType, ObjectInput, ObjectPatch, State};
use contextd_client::proto::{time, ContextObject, Kind, ObjectId};
use contextd_client::{Client, EventStream, Search};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The customer's mobile number, as the CRM stored it.
const MOBILE: &str = "+1 (555) 010-0001";
/// The same number as the IVR gets it from the network: phones match on digits only.
const CALLER_NUMBER: &str = "1 555 010 0001";
/// How long the agent desktop may take to see the customer's SMS.
const POP_WAIT: Duration = Duration::from_secs(5);
/// The base field sets the journey writes.
const CUSTOMER_FIELDS: &str = "cisco.base.customer";
const REQUEST_FIELDS: &str = "cisco.base.request";
const POD_FIELDS: &str = "cisco.base.pod";
/// The tag of the agent's reply.
const AGENT_REPLY_TAG: &str = "agent-reply";
/// The fields shown as an entry's text on the timeline, first present first.
const TEXT_FIELDS: [&str; 4] = [
    "Context_Notes",
    "Context_Title",
    "Context_POD_Activity_Link",
    "Context_POD_Source_Phone",
];

/// Any failure of the journey: an SDK error, a write to the output, or a step that found
/// nothing.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the journey wrote and found, for a caller (or a test) to check.
#[derive(Clone, Debug)]
pub struct Journey {
    /// The customer (the CRM's record).
    pub customer: ObjectId,
    /// The bike's fault report (`event` activity).
    pub iot_event: ObjectId,
    /// The visit of the service-center page (`web` activity).
    pub web_visit: ObjectId,
    /// The request "Service appointment".
    pub request: ObjectId,
    /// The chat in the request.
    pub chat: ObjectId,
    /// The customer the IVR's lookup by caller number found.
    pub ivr_found_customer: ObjectId,
    /// The open request the IVR found for that customer.
    pub ivr_found_request: ObjectId,
    /// The call (`voice` activity); its id travels with the call as `POD.ID`.
    pub voice: ObjectId,
    /// The customer's SMS proposing a new date.
    pub sms_proposal: ObjectId,
    /// From the return of the SMS's create call to the agent desktop's subscriber receiving
    /// its `object.created` event (zero if the event came first); `None` if it did not come
    /// within 5 s.
    pub sms_seen_by_subscriber: Option<Duration>,
    /// The agent's SMS confirming the date.
    pub sms_confirmation: ObjectId,
    /// Who wrote the confirmation, as the server recorded it.
    pub sms_confirmation_contributor: ContributorType,
    /// The request's state once closed.
    pub request_state_at_end: State,
    /// The customer's whole timeline at the end, newest first.
    pub timeline: Vec<ContextObject>,
}

/// Replays the journey with `client`, printing one line per step to `out` and then the
/// timeline, newest first.
pub async fn run(client: &Client, out: &mut dyn Write) -> Result<Journey, BoxError> {
    // Before the call: the CRM's record, the bike, the web, the chat.
    let customer = create_customer(client, out).await?;
    let iot_event = create_iot_event(client, out, customer).await?;
    let web_visit = create_web_visit(client, out, customer).await?;
    let (request, chat) = open_request_with_chat(client, out, customer).await?;

    // The agent desktop listens before anything it must pop up is written.
    let mut desktop = ScreenPop::subscribe(client, out, customer).await?;

    // The call: the IVR finds the customer and his open request, and the call is logged.
    let (ivr_found_customer, ivr_found_request) = ivr_lookup(client, out).await?;
    let voice = create_voice(client, out, ivr_found_customer, ivr_found_request).await?;

    // The SMS exchange, and the bike picked up.
    let (sms_proposal, sms_seen_by_subscriber) =
        create_sms_proposal(client, out, &mut desktop, customer, request).await?;
    let confirmation = create_sms_confirmation(client, out, customer, request).await?;
    let request_state_at_end = close_request(client, out, request).await?;

    let timeline = read_timeline(client, out, customer).await?;
    Ok(Journey {
        customer,
        iot_event,
        web_visit,
        request,
        chat,
        ivr_found_customer,
        ivr_found_request,
        voice,
        sms_proposal,
        sms_seen_by_subscriber,
        sms_confirmation: confirmation.id,
        sms_confirmation_contributor: confirmation.contributor,
        request_state_at_end,
        timeline,
    })
}

/// Step 1: the customer as the CRM knows him, with a name unique to this run.
async fn create_customer(client: &Client, out: &mut dyn Write) -> Result<ObjectId, BoxError> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let suffix = &run_id[..8];
    let last_name = format!("Lind-{suffix}");
    let email = format!("erik.lind.{suffix}@example.com");
    let input = ObjectInput {
        fieldsets: vec![CUSTOMER_FIELDS.to_owned()],
        data: values([
            ("Context_First_Name", "Erik"),
            ("Context_Last_Name", last_name.as_str()),
            ("Context_Mobile_Phone", MOBILE),
            ("Context_Home_Email", email.as_str()),
        ]),
        ..ObjectInput::default()
    };
    let customer = client.create(Kind::Customer, &input).await?;
    let who = format!("Erik {last_name}, {MOBILE}");
    step(
        out,
        "1",
        "CRM record",
        format!("{}  ({who})", entry(&customer)),
    )?;
    Ok(customer.id)
}

/// Step 2: the bike's fault, written by a backend; no request yet.
async fn create_iot_event(
    client: &Client,
    out: &mut dyn Write,
    customer: ObjectId,
) -> Result<ObjectId, BoxError> {
    let input = ObjectInput {
        tags: vec!["iot".to_owned(), "fault".to_owned()],
        ..activity(
            MediaType::Event,
            customer,
            [("Context_Notes", "ECU fault code P0301")],
        )
    };
    let event = client.create(Kind::Activity, &input).await?;
    step(out, "2", "IoT event", entry(&event))?;
    Ok(event.id)
}

/// Step 3: he browses the service-center page.
async fn create_web_visit(
    client: &Client,
    out: &mut dyn Write,
    customer: ObjectId,
) -> Result<ObjectId, BoxError> {
    let link = [(
        "Context_POD_Activity_Link",
        "https://dealer.example/service",
    )];
    let visit = client
        .create(Kind::Activity, &activity(MediaType::Web, customer, link))
        .await?;
    step(out, "3", "Web visit", entry(&visit))?;
    Ok(visit.id)
}

/// Step 4: the chat server opens the request "Service appointment" and logs the chat in it.
async fn open_request_with_chat(
    client: &Client,
    out: &mut dyn Write,
    customer: ObjectId,
) -> Result<(ObjectId, ObjectId), BoxError> {
    let input = ObjectInput {
        customer_id: Some(customer.to_string()),
        fieldsets: vec![REQUEST_FIELDS.to_owned()],
        data: values([("Context_Title", "Service appointment")]),
        ..ObjectInput::default()
    };
    let request = client.create(Kind::Request, &input).await?;
    step(out, "4a", "New request", entry(&request))?;
    let input = ObjectInput {
        parent_id: Some(request.id.to_string()),
        ..activity(
            MediaType::Chat,
            customer,
            [("Context_Notes", "Booked for Tuesday")],
        )
    };
    let chat = client.create(Kind::Activity, &input).await?;
    step(out, "4b", "Chat in the request", entry(&chat))?;
    Ok((request.id, chat.id))
}

/// Step 5 (the agent desktop): a subscription to the customer's new objects, and the moment
/// the first SMS among them arrived.
struct ScreenPop {
    /// When the first `sms` activity's event arrived, or the error that ended the stream.
    arrived: oneshot::Receiver<contextd_client::Result<Instant>>,
    /// The task reading the stream; aborted (closing the stream) when this is dropped.
    reader: JoinHandle<()>,
}

impl ScreenPop {
    /// Subscribes to the `object.created` events of `customer`. Once this returns the server
    /// holds the subscription, so no later write can be missed.
    async fn subscribe(
        client: &Client,
        out: &mut dyn Write,
        customer: ObjectId,
    ) -> Result<ScreenPop, BoxError> {
        let filter = EventFilter {
            customer_id: Some(customer),
            types: vec![EventType::Created],
            ..EventFilter::default()
        };
        let mut events = client.events(filter, None);
        events.connected().await?;
        let (tx, arrived) = oneshot::channel();
        let desktop = ScreenPop {
            arrived,
            reader: tokio::spawn(first_sms(events, tx)),
        };
        let what = format!("object.created events of customer {customer}");
        step(out, "5", "Desktop subscribed", what)?;
        Ok(desktop)
    }

    /// How long after `created_at` the SMS arrived (zero if before), waiting up to
    /// [`POP_WAIT`]; `None` if it did not arrive in time. An error that ended the stream
    /// (a credential refused) is returned.
    async fn seen_after(&mut self, created_at: Instant) -> Result<Option<Duration>, BoxError> {
        match tokio::time::timeout(POP_WAIT, &mut self.arrived).await {
            Ok(Ok(Ok(at))) => Ok(Some(at.saturating_duration_since(created_at))),
            Ok(Ok(Err(stream_ended))) => Err(stream_ended.into()),
            // The stream ended without an error, or the wait ran out.
            Ok(Err(_)) | Err(_) => Ok(None),
        }
    }
}

impl Drop for ScreenPop {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Reads `events` until an `sms` activity was created, and reports when it arrived.
async fn first_sms(
    mut events: EventStream,
    arrived: oneshot::Sender<contextd_client::Result<Instant>>,
) {
    while let Some(event) = events.next().await {
        match event {
            Ok(e) if e.object_type == Kind::Activity && e.media_type == Some(MediaType::Sms) => {
                let _ = arrived.send(Ok(Instant::now()));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                let _ = arrived.send(Err(e));
                return;
            }
        }
    }
}

/// Step 6: the IVR finds the caller by his number (written differently than stored) and his
/// open request. Returns the customer and the request found.
async fn ivr_lookup(
    client: &Client,
    out: &mut dyn Write,
) -> Result<(ObjectId, ObjectId), BoxError> {
    let by_number = Search::all()
        .term("Context_Mobile_Phone", CALLER_NUMBER)
        .build();
    let callers = client.search(Kind::Customer, &by_number).await?;
    // Newest `lastUpdated` first. A number shared by several customers (as repeated runs of
    // this example make it) would make a real IVR ask the caller; here the most recently
    // updated one, this run's, is taken.
    let caller = callers
        .items
        .unwrap_or_default()
        .into_iter()
        .next()
        .ok_or_else(|| format!("the IVR found no customer with the number {CALLER_NUMBER}"))?;
    let matches = callers.total;
    step(
        out,
        "6a",
        "IVR lookup by number",
        format!("{}  ({matches} with {CALLER_NUMBER})", entry(&caller)),
    )?;

    let open = Search::all()
        .term("customerId", caller.id.to_string())
        .term("state", State::Active.as_str())
        .build();
    let request = client
        .search(Kind::Request, &open)
        .await?
        .items
        .unwrap_or_default()
        .into_iter()
        .next()
        .ok_or_else(|| format!("the IVR found no open request of customer {}", caller.id))?;
    step(out, "6b", "IVR finds open request", entry(&request))?;
    Ok((caller.id, request.id))
}

/// Step 7: the IVR logs the call in the request it found; the activity's id goes with the
/// call to the agent as `POD.ID`, and the agent desktop shows the journey from it.
async fn create_voice(
    client: &Client,
    out: &mut dyn Write,
    customer: ObjectId,
    request: ObjectId,
) -> Result<ObjectId, BoxError> {
    let input = ObjectInput {
        parent_id: Some(request.to_string()),
        ..activity(
            MediaType::Voice,
            customer,
            [("Context_POD_Source_Phone", "+15550100001")],
        )
    };
    let voice = client.create(Kind::Activity, &input).await?;
    step(out, "7", "Call routed (POD.ID)", entry(&voice))?;
    Ok(voice.id)
}

/// Step 8: the SMS gateway logs the customer's text, and the agent desktop pops it up.
/// Returns the SMS and how long after its create call returned the desktop had it.
async fn create_sms_proposal(
    client: &Client,
    out: &mut dyn Write,
    desktop: &mut ScreenPop,
    customer: ObjectId,
    request: ObjectId,
) -> Result<(ObjectId, Option<Duration>), BoxError> {
    let notes = [("Context_Notes", "Can we move it to Thursday?")];
    let input = ObjectInput {
        parent_id: Some(request.to_string()),
        ..activity(MediaType::Sms, customer, notes)
    };
    let sms = client.create(Kind::Activity, &input).await?;
    let seen = desktop.seen_after(Instant::now()).await?;
    let pop = match seen {
        Some(after) => format!("on the desktop {} ms later", after.as_millis()),
        None => format!("not on the desktop within {} s", POP_WAIT.as_secs()),
    };
    step(
        out,
        "8",
        "Customer's SMS",
        format!("{}  ({pop})", entry(&sms)),
    )?;
    Ok((sms.id, seen))
}

/// The agent's reply, and who the server says wrote it.
struct Confirmation {
    id: ObjectId,
    contributor: ContributorType,
}

/// Step 9: the agent confirms the new date by SMS.
async fn create_sms_confirmation(
    client: &Client,
    out: &mut dyn Write,
    customer: ObjectId,
    request: ObjectId,
) -> Result<Confirmation, BoxError> {
    // On the agent desktop the agent's own session writes this, so its contributor is a
    // `user`. Here the example's machine credential writes it: the tag marks it as the reply.
    let input = ObjectInput {
        parent_id: Some(request.to_string()),
        tags: vec![AGENT_REPLY_TAG.to_owned()],
        ..activity(
            MediaType::Sms,
            customer,
            [("Context_Notes", "Thursday 10:00 confirmed")],
        )
    };
    let sms = client.create(Kind::Activity, &input).await?;
    let contributor = sms
        .contributors
        .first()
        .map(|c| c.kind)
        .ok_or("the server recorded no contributor of the agent's SMS")?;
    step(
        out,
        "9",
        "Agent's SMS",
        format!("{}  (contributor: {contributor})", entry(&sms)),
    )?;
    Ok(Confirmation {
        id: sms.id,
        contributor,
    })
}

/// Step 10: the bike is picked up and the request closed (a merge patch of its state).
async fn close_request(
    client: &Client,
    out: &mut dyn Write,
    request: ObjectId,
) -> Result<State, BoxError> {
    let mut patch = ObjectPatch::new();
    patch.insert("state".to_owned(), Value::from(State::Closed.as_str()));
    let closed = client.patch(Kind::Request, request, &patch, None).await?;
    step(out, "10", "Request closed", entry(&closed))?;
    Ok(closed.state)
}

/// Step 11: the customer's whole timeline, every page, printed newest first.
async fn read_timeline(
    client: &Client,
    out: &mut dyn Write,
    customer: ObjectId,
) -> Result<Vec<ContextObject>, BoxError> {
    let timeline: Vec<ContextObject> = client.timeline_stream(customer, None).try_collect().await?;
    step(
        out,
        "11",
        "Timeline",
        format!("{} entries, newest first", timeline.len()),
    )?;
    for object in &timeline {
        writeln!(
            out,
            "     {}  {:<17} {}",
            time::format(&object.created),
            label(object),
            text(object)
        )?;
    }
    Ok(timeline)
}

/// An activity of `media_type` for `customer` with `cisco.base.pod` values.
fn activity<const N: usize>(
    media_type: MediaType,
    customer: ObjectId,
    fields: [(&str, &str); N],
) -> ObjectInput {
    ObjectInput {
        customer_id: Some(customer.to_string()),
        media_type: Some(media_type.as_str().to_owned()),
        fieldsets: vec![POD_FIELDS.to_owned()],
        data: values(fields),
        ..ObjectInput::default()
    }
}

/// String values of an object's `data`.
fn values<const N: usize>(fields: [(&str, &str); N]) -> BTreeMap<String, Value> {
    fields
        .into_iter()
        .map(|(field, value)| (field.to_owned(), Value::from(value)))
        .collect()
}

/// Prints one step: its number, what happened, and what was written or found.
fn step(
    out: &mut dyn Write,
    number: &str,
    what: &str,
    detail: impl std::fmt::Display,
) -> std::io::Result<()> {
    writeln!(out, "{:>4} {what:<24} {detail}", format!("{number}."))
}

/// An object as a step names it: `activity/sms 0190…`.
fn entry(object: &ContextObject) -> String {
    format!("{} {}", label(object), object.id)
}

/// The type of an object with its channel or state: `activity/sms`, `request (closed)`.
fn label(object: &ContextObject) -> String {
    match (object.kind, object.media_type) {
        (Kind::Activity, Some(media_type)) => format!("activity/{media_type}"),
        (Kind::Request, _) => format!("request ({})", object.state),
        (kind, _) => kind.to_string(),
    }
}

/// The first text field an object holds, for the timeline.
fn text(object: &ContextObject) -> String {
    TEXT_FIELDS
        .iter()
        .find_map(|field| object.data.get(*field))
        .map(|value| match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default()
}

/// The example's arguments.
#[cfg(not(test))]
#[derive(clap::Parser)]
#[command(about = "Replays the contextd acceptance journey (DESIGN.md §1) through the SDK")]
struct Args {
    /// A connector's connectionData (base64), as registration hands it to a component.
    #[arg(
        long,
        value_name = "DATA",
        env = "CONTEXTD_CONNECTION_DATA",
        hide_env_values = true
    )]
    connection_data: String,
    /// Write with the connectionData's lab credentials (the lab partition) instead of its
    /// production ones.
    #[arg(long)]
    lab: bool,
}

/// Parses the arguments, builds a client from the connectionData and replays the journey on
/// stdout; exits with 1 on any error.
#[cfg(not(test))]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    use clap::Parser as _;

    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    // Lab mode is a client setting: it picks the connectionData's `credentialsLabMode`.
    let settings = contextd_client::Settings::standard().with_lab_mode(args.lab);
    let journey = match Client::from_connection_data(&args.connection_data, settings) {
        Ok(client) => run(&client, &mut std::io::stdout()).await,
        Err(e) => Err(e.into()),
    };
    match journey {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("journey: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
