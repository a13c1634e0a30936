//! `contextd customers|requests|activities|details …`, `contextd timeline` and
//! `contextd flush`: context objects through the SDK.
//!
//! `--field NAME=VALUE` values are text, except that a value that reads as a number or a
//! boolean is sent as one when the dictionary says the field is an integer, long, double or
//! boolean (the field is looked up once per run, and only for such values): a phone number
//! of digits stays a string.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use contextd_client::proto::dictionary::DataType;
use contextd_client::proto::object::{
    DetailType, MediaType, ObjectInput, ObjectPatch, SearchResult, State,
};
use contextd_client::proto::{ContextObject, Kind, ObjectId};
use contextd_client::{Client, Error as SdkError, Search};
use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::{json, Value};

use super::exit::usage;
use super::output;
use super::{name_value, ClientArgs};

/// How often `flush` asks how far the job got.
const FLUSH_POLL: Duration = Duration::from_millis(200);
/// Width of the summary column of `timeline`.
const SUMMARY_CHARS: usize = 60;
/// Data values shown per row by `search`.
const SEARCH_VALUES: usize = 3;

/// `contextd <kind> …`.
#[derive(Subcommand)]
pub enum ObjectCommand {
    /// Create one (the kind's base field set unless --fieldset is given); prints it.
    Create(CreateArgs),
    /// Read one by id.
    Get {
        /// The object's id.
        id: ObjectId,
    },
    /// Merge-patch one: the given --field values (and --unset ones) change, other values
    /// stay; --tag replaces the tags.
    Update(UpdateArgs),
    /// Delete one (lab partition only; linked objects keep their links).
    Delete {
        /// The object's id.
        id: ObjectId,
    },
    /// Search by field values and special keys, newest lastUpdated first (one page).
    Search(SearchArgs),
}

/// Values and links of a new object.
#[derive(Args)]
pub struct CreateArgs {
    /// A data value, NAME=VALUE (repeatable).
    #[arg(long = "field", value_name = "NAME=VALUE", value_parser = name_value)]
    fields: Vec<(String, String)>,
    /// A field set the values draw from (repeatable; default the kind's base set:
    /// cisco.base.customer, cisco.base.request, cisco.base.pod or cisco.base.comment).
    #[arg(long = "fieldset", value_name = "NAME")]
    fieldsets: Vec<String>,
    /// The customer it belongs to (required for requests).
    #[arg(long, value_name = "ID")]
    customer: Option<ObjectId>,
    /// The request (of an activity) or request/activity (of a detail) it hangs under.
    #[arg(long, value_name = "ID")]
    parent: Option<ObjectId>,
    /// The channel of an activity: voice chat email sms social video web mobile event.
    #[arg(long)]
    media_type: Option<MediaType>,
    /// The kind of a detail: comment or feedback.
    #[arg(long)]
    detail_type: Option<DetailType>,
    /// A tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// active (the default) or closed.
    #[arg(long)]
    state: Option<State>,
}

/// What an update changes.
#[derive(Args)]
pub struct UpdateArgs {
    /// The object's id.
    id: ObjectId,
    /// A data value to set, NAME=VALUE (repeatable).
    #[arg(long = "field", value_name = "NAME=VALUE", value_parser = name_value)]
    fields: Vec<(String, String)>,
    /// A data field to remove (repeatable).
    #[arg(long = "unset", value_name = "NAME")]
    unset: Vec<String>,
    /// The tags, replacing the current ones (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// The field sets, replacing the current ones (repeatable).
    #[arg(long = "fieldset", value_name = "NAME")]
    fieldsets: Vec<String>,
    /// active or closed.
    #[arg(long)]
    state: Option<State>,
    /// Move it to this customer.
    #[arg(long, value_name = "ID")]
    customer: Option<ObjectId>,
    /// Move it under this parent.
    #[arg(long, value_name = "ID")]
    parent: Option<ObjectId>,
    /// Apply only if the stored version is N (sent as If-Match; exit status 4 if not).
    #[arg(long, value_name = "N")]
    version: Option<i64>,
}

/// Search terms.
#[derive(Args)]
pub struct SearchArgs {
    /// A field value to match, NAME=VALUE (repeatable; values of one name are OR-ed).
    /// Phone fields match on digits only.
    #[arg(long = "field", value_name = "NAME=VALUE", value_parser = name_value)]
    fields: Vec<(String, String)>,
    /// Match objects of which any term matches (default: all must).
    #[arg(long)]
    any: bool,
    /// Only objects of this customer.
    #[arg(long, value_name = "ID")]
    customer: Option<ObjectId>,
    /// Only objects under this parent.
    #[arg(long, value_name = "ID")]
    parent: Option<ObjectId>,
    /// Only objects with this tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Only active or closed objects.
    #[arg(long)]
    state: Option<State>,
    /// Only activities of this channel.
    #[arg(long)]
    media_type: Option<MediaType>,
    /// Page size (at most 200).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Continue after a previous page (its nextCursor).
    #[arg(long)]
    cursor: Option<String>,
}

/// `contextd timeline ID`.
#[derive(Args)]
pub struct TimelineArgs {
    /// The customer's id.
    customer: ObjectId,
    /// The most entries shown, following pages as needed.
    #[arg(long, default_value_t = 100, value_name = "N")]
    limit: usize,
    /// Only activities of this channel.
    #[arg(long)]
    media_type: Option<MediaType>,
}

/// `contextd flush KIND`.
#[derive(Args)]
pub struct FlushArgs {
    /// customers, requests, activities or details.
    #[arg(value_parser = kind)]
    kind: Kind,
}

fn kind(text: &str) -> Result<Kind, String> {
    Kind::from_path(text)
        .ok_or_else(|| format!("'{text}' is not one of customers, requests, activities, details"))
}

/// The field set a new object of `kind` draws from unless told otherwise.
fn base_fieldset(kind: Kind) -> &'static str {
    match kind {
        Kind::Customer => "cisco.base.customer",
        Kind::Request => "cisco.base.request",
        Kind::Activity => "cisco.base.pod",
        Kind::Detail => "cisco.base.comment",
    }
}

/// Runs one `contextd <kind> …` command.
pub async fn run(args: &ClientArgs, kind: Kind, command: ObjectCommand) -> anyhow::Result<()> {
    let client = args.connect()?;
    let out = args.output();
    match command {
        ObjectCommand::Create(create) => {
            let input = create.input(kind, &mut FieldTypes::new(&client)).await?;
            let object = client.create(kind, &input).await?;
            out.emit(&object, || output::object(&object))
        }
        ObjectCommand::Get { id } => {
            let object = client.get(kind, id).await?;
            out.emit(&object, || output::object(&object))
        }
        ObjectCommand::Update(update) => {
            let patch = update.patch(&mut FieldTypes::new(&client)).await?;
            let object = client
                .patch(kind, update.id, &patch, update.version)
                .await?;
            out.emit(&object, || output::object(&object))
        }
        ObjectCommand::Delete { id } => {
            client.delete(kind, id).await?;
            let done = json!({"id": id, "type": kind, "deleted": true});
            out.emit(&done, || format!("deleted {kind} {id}"))
        }
        ObjectCommand::Search(search) => {
            let request = search.build(&mut FieldTypes::new(&client)).await?;
            let page = client.search(kind, &request.build()).await?;
            out.emit(&page, || search_table(&page))
        }
    }
}

impl CreateArgs {
    async fn input(self, kind: Kind, types: &mut FieldTypes<'_>) -> anyhow::Result<ObjectInput> {
        let mut data = std::collections::BTreeMap::new();
        for (name, text) in self.fields {
            let value = types.value(&name, &text).await?;
            data.insert(name, value);
        }
        let fieldsets = if self.fieldsets.is_empty() {
            vec![base_fieldset(kind).to_owned()]
        } else {
            self.fieldsets
        };
        Ok(ObjectInput {
            customer_id: self.customer.map(|id| id.to_string()),
            parent_id: self.parent.map(|id| id.to_string()),
            state: self.state.map(|s| s.to_string()),
            media_type: self.media_type.map(|m| m.to_string()),
            detail_type: self.detail_type.map(|d| d.to_string()),
            fieldsets,
            data,
            tags: self.tags,
            ..ObjectInput::default()
        })
    }
}

impl UpdateArgs {
    async fn patch(&self, types: &mut FieldTypes<'_>) -> anyhow::Result<ObjectPatch> {
        let mut patch = ObjectPatch::new();
        let mut data = serde_json::Map::new();
        for (name, text) in &self.fields {
            data.insert(name.clone(), types.value(name, text).await?);
        }
        for name in &self.unset {
            data.insert(name.clone(), Value::Null);
        }
        if !data.is_empty() {
            patch.insert("data".into(), Value::Object(data));
        }
        if !self.tags.is_empty() {
            patch.insert("tags".into(), json!(self.tags));
        }
        if !self.fieldsets.is_empty() {
            patch.insert("fieldsets".into(), json!(self.fieldsets));
        }
        if let Some(state) = self.state {
            patch.insert("state".into(), json!(state));
        }
        if let Some(customer) = self.customer {
            patch.insert("customerId".into(), json!(customer));
        }
        if let Some(parent) = self.parent {
            patch.insert("parentId".into(), json!(parent));
        }
        if patch.is_empty() {
            return usage(
                "nothing to update: give --field, --unset, --tag, --fieldset, --state, \
                 --customer or --parent",
            );
        }
        Ok(patch)
    }
}

impl SearchArgs {
    async fn build(self, types: &mut FieldTypes<'_>) -> anyhow::Result<Search> {
        let mut search = if self.any {
            Search::any()
        } else {
            Search::all()
        };
        for (name, text) in self.fields {
            let value = types.value(&name, &text).await?;
            search = search.term(name, value);
        }
        let specials = [
            ("customerId", self.customer.map(|id| id.to_string())),
            ("parentId", self.parent.map(|id| id.to_string())),
            ("state", self.state.map(|s| s.to_string())),
            ("mediaType", self.media_type.map(|m| m.to_string())),
        ];
        for (key, value) in specials {
            if let Some(value) = value {
                search = search.term(key, value);
            }
        }
        for tag in self.tags {
            search = search.term("tags", tag);
        }
        if let Some(limit) = self.limit {
            search = search.limit(limit);
        }
        if let Some(cursor) = self.cursor {
            search = search.cursor(cursor);
        }
        Ok(search)
    }
}

/// The dictionary types of the fields named on the command line, looked up as needed.
struct FieldTypes<'a> {
    client: &'a Client,
    known: HashMap<String, Option<DataType>>,
}

impl<'a> FieldTypes<'a> {
    fn new(client: &'a Client) -> Self {
        Self {
            client,
            known: HashMap::new(),
        }
    }

    /// The JSON value `text` stands for in field `name`.
    async fn value(&mut self, name: &str, text: &str) -> anyhow::Result<Value> {
        if !looks_typed(text) {
            return Ok(Value::String(text.to_owned()));
        }
        let data_type = match self.known.get(name) {
            Some(t) => *t,
            None => {
                let t = match self.client.field(name).await {
                    Ok(field) => Some(field.data_type),
                    // Not a field: a special key, or a mistake the server will name.
                    Err(SdkError::NotFound { .. }) => None,
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot look up field {name}"))
                    }
                };
                self.known.insert(name.to_owned(), t);
                t
            }
        };
        Ok(typed(data_type, text))
    }
}

/// Whether `text` reads as a number or a boolean.
fn looks_typed(text: &str) -> bool {
    let t = text.trim();
    t == "true"
        || t == "false"
        || (!t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'))
            && t.parse::<f64>().is_ok())
}

/// `text` as a value of `data_type`; text when it isn't one (the server says what's wrong).
fn typed(data_type: Option<DataType>, text: &str) -> Value {
    let t = text.trim();
    let parsed = match data_type {
        Some(DataType::Integer | DataType::Long) => t.parse::<i64>().ok().map(Value::from),
        Some(DataType::Double) => t
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        Some(DataType::Boolean) => t.parse::<bool>().ok().map(Value::Bool),
        _ => None,
    };
    parsed.unwrap_or_else(|| Value::String(text.to_owned()))
}

/// A page of search results as a table: id, last update, a few data values.
fn search_table(page: &SearchResult) -> String {
    let items = page.items.as_deref().unwrap_or_default();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|o| {
            let values: Vec<String> = o
                .data
                .iter()
                .take(SEARCH_VALUES)
                .map(|(k, v)| format!("{k}={}", output::cut(&output::text(v), 30)))
                .collect();
            vec![
                o.id.to_string(),
                output::time(&o.last_updated),
                values.join("  "),
            ]
        })
        .collect();
    let mut text = output::table(&["ID", "LAST UPDATED", "DATA"], &rows);
    text.push_str(&format!("\n{} of {} shown", items.len(), page.total));
    if let Some(cursor) = &page.next_cursor {
        text.push_str(&format!("; more with --cursor {cursor}"));
    }
    text
}

/// Runs `contextd timeline ID`.
pub async fn timeline(args: &ClientArgs, timeline: TimelineArgs) -> anyhow::Result<()> {
    let client = args.connect()?;
    let items: Vec<ContextObject> = client
        .timeline_stream(timeline.customer, timeline.media_type)
        .take(timeline.limit)
        .try_collect()
        .await?;
    args.output().emit(&items, || timeline_table(&items))
}

/// The journey as a table: time, channel, request, summary.
fn timeline_table(items: &[ContextObject]) -> String {
    let by_id: HashMap<ObjectId, &ContextObject> = items.iter().map(|o| (o.id, o)).collect();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|o| {
            let channel = match o.media_type {
                Some(m) => m.to_string(),
                None => o.kind.to_string(),
            };
            vec![
                output::time(&o.created),
                channel,
                request_label(o, &by_id),
                output::cut(&summary(o), SUMMARY_CHARS),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no entries".to_owned();
    }
    output::table(&["TIME", "CHANNEL", "REQUEST", "SUMMARY"], &rows)
}

/// The request an entry belongs to: its title if the request is on the page, else its
/// short id; empty for an entry outside any request.
fn request_label(o: &ContextObject, by_id: &HashMap<ObjectId, &ContextObject>) -> String {
    let request = match o.kind {
        Kind::Request => Some(o.id),
        Kind::Customer => None,
        Kind::Activity => o.parent_id,
        // A detail hangs under a request or under an activity of one.
        Kind::Detail => o.parent_id.map(|p| match by_id.get(&p) {
            Some(parent) if parent.kind == Kind::Activity => parent.parent_id.unwrap_or(p),
            _ => p,
        }),
    };
    let Some(request) = request else {
        return String::new();
    };
    by_id
        .get(&request)
        .and_then(|r| r.data.get("Context_Title"))
        .map(|title| output::cut(&output::text(title), 24))
        .unwrap_or_else(|| output::short_id(&request))
}

/// The text that says most about an entry.
fn summary(o: &ContextObject) -> String {
    [
        "Context_Notes",
        "Context_Comment",
        "Context_Title",
        "Context_Description",
    ]
    .iter()
    .find_map(|k| o.data.get(*k))
    .map(output::text)
    .unwrap_or_default()
}

/// Runs `contextd flush KIND`: starts the job and follows it to the end.
pub async fn flush(args: &ClientArgs, flush: FlushArgs) -> anyhow::Result<()> {
    let client = args.connect()?;
    let out = args.output();
    let kind = flush.kind;
    let bar = output::progress(out, None);
    let done = client
        .flush_and_wait(kind, FLUSH_POLL, |s| {
            bar.set_message(format!("flushing {}: {} deleted", kind.plural(), s.flushed))
        })
        .await;
    bar.finish_and_clear();
    let done = done?;
    out.emit(&done, || {
        format!("flushed {} {}", done.flushed, kind.plural())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_numbers_and_booleans_look_typed() {
        for t in ["3", "-2", "1.5", "1e3", "true", "false", "15550100"] {
            assert!(looks_typed(t), "{t}");
        }
        for t in ["", "+1 555 0100", "NaN", "inf", "Ada", "True", "1-2-3"] {
            assert!(!looks_typed(t), "{t}");
        }
    }

    #[test]
    fn values_follow_the_dictionary_type() {
        assert_eq!(typed(Some(DataType::Integer), "3"), json!(3));
        assert_eq!(typed(Some(DataType::Double), "1.5"), json!(1.5));
        assert_eq!(typed(Some(DataType::Boolean), "true"), json!(true));
        assert_eq!(typed(Some(DataType::String), "15550100"), json!("15550100"));
        assert_eq!(typed(None, "3"), json!("3"));
        assert_eq!(typed(Some(DataType::Integer), "1.5"), json!("1.5"));
    }
}
