//! `contextd fields|fieldsets list|get|create|update|delete`: the organization's dictionary
//! through the SDK. `create` builds the entry from flags or takes a JSON body from a file;
//! `update` reads the entry, applies the flags given, and writes it back whole.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use contextd_client::proto::dictionary::{Classification, DataType, EnumValue, Field, FieldSet};
use serde_json::json;

use super::exit::usage;
use super::output;
use super::{name_value, read_json, ClientArgs};

/// `contextd fields …`.
#[derive(Subcommand)]
pub enum FieldCommand {
    /// List every field, built-in and custom.
    List,
    /// Show one field.
    Get {
        /// The field's id.
        id: String,
    },
    /// Create a custom field from flags (--data-type and --classification required) or
    /// from a JSON body (--from-file).
    Create(FieldArgs),
    /// Change a custom field: the flags given replace those properties (dataType and
    /// classification can't change once data uses it).
    Update(FieldArgs),
    /// Delete an unused custom field.
    Delete {
        /// The field's id.
        id: String,
    },
}

/// The properties of a field.
#[derive(Args)]
pub struct FieldArgs {
    /// The field's id (`[A-Za-z][A-Za-z0-9_.]*`); with --from-file, overrides the file's.
    #[arg(required_unless_present = "from_file")]
    id: Option<String>,
    /// string, integer, long, double, boolean or date.
    #[arg(long, value_parser = data_type)]
    data_type: Option<DataType>,
    /// UNENCRYPTED, ENCRYPTED or PII.
    #[arg(long, value_parser = classification)]
    classification: Option<Classification>,
    /// Whether the field can be searched (`--searchable` alone means true).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    searchable: Option<bool>,
    /// The longest value accepted, in characters.
    #[arg(long, value_name = "N")]
    max_length: Option<u32>,
    /// What the field holds.
    #[arg(long)]
    description: Option<String>,
    /// A label in a locale, LOCALE=LABEL (repeatable; en_US=Tier).
    #[arg(long = "translation", value_name = "LOCALE=LABEL", value_parser = name_value)]
    translations: Vec<(String, String)>,
    /// An allowed value (repeatable; replaces the list).
    #[arg(long = "enum-value", value_name = "VALUE")]
    enum_values: Vec<String>,
    /// The whole field as JSON (`-` for standard input) instead of flags.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["data_type", "classification", "searchable", "max_length", "description", "translations", "enum_values"])]
    from_file: Option<PathBuf>,
}

/// `contextd fieldsets …`.
#[derive(Subcommand)]
pub enum FieldSetCommand {
    /// List every field set, built-in and custom.
    List,
    /// Show one field set.
    Get {
        /// The field set's id.
        id: String,
    },
    /// Create a custom field set from flags (--field, repeatable) or from a JSON body
    /// (--from-file).
    Create(FieldSetArgs),
    /// Change a custom field set: the flags given replace those properties.
    Update(FieldSetArgs),
    /// Delete an unused custom field set.
    Delete {
        /// The field set's id.
        id: String,
    },
}

/// The properties of a field set.
#[derive(Args)]
pub struct FieldSetArgs {
    /// The field set's id; with --from-file, overrides the file's.
    #[arg(required_unless_present = "from_file")]
    id: Option<String>,
    /// A field of the set (repeatable; replaces the list).
    #[arg(long = "field", value_name = "ID")]
    fields: Vec<String>,
    /// A field kept for old data but no longer offered (repeatable; replaces the list).
    #[arg(long = "inactive-field", value_name = "ID")]
    inactive_fields: Vec<String>,
    /// What the set is for.
    #[arg(long)]
    description: Option<String>,
    /// The whole field set as JSON (`-` for standard input) instead of flags.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["fields", "inactive_fields", "description"])]
    from_file: Option<PathBuf>,
}

fn data_type(text: &str) -> Result<DataType, String> {
    serde_json::from_value(json!(text.to_ascii_lowercase()))
        .map_err(|_| format!("'{text}' is not one of string, integer, long, double, boolean, date"))
}

fn classification(text: &str) -> Result<Classification, String> {
    serde_json::from_value(json!(text.to_ascii_uppercase()))
        .map_err(|_| format!("'{text}' is not one of UNENCRYPTED, ENCRYPTED, PII"))
}

/// Runs one `contextd fields …` command.
pub async fn fields(args: &ClientArgs, command: FieldCommand) -> anyhow::Result<()> {
    let client = args.connect()?;
    let out = args.output();
    match command {
        FieldCommand::List => {
            let fields = client.fields().await?;
            out.emit(&fields, || field_table(&fields))
        }
        FieldCommand::Get { id } => {
            let field = client.field(&id).await?;
            out.emit(&field, || field_lines(&field))
        }
        FieldCommand::Create(flags) => {
            let field = match flags.from_file.as_deref() {
                Some(path) => with_id(read_json::<Field>(path)?, flags.id),
                None => flags.new_field()?,
            };
            let field = client.create_field(&field).await?;
            out.emit(&field, || format!("created field\n{}", field_lines(&field)))
        }
        FieldCommand::Update(flags) => {
            let field = match flags.from_file.as_deref() {
                Some(path) => with_id(read_json::<Field>(path)?, flags.id),
                None => {
                    let id = flags.id.clone().unwrap_or_default();
                    flags.apply(client.field(&id).await?)
                }
            };
            let field = client.update_field(&field).await?;
            out.emit(&field, || format!("updated field\n{}", field_lines(&field)))
        }
        FieldCommand::Delete { id } => {
            client.delete_field(&id).await?;
            out.emit(&json!({"id": id, "deleted": true}), || {
                format!("deleted field {id}")
            })
        }
    }
}

fn with_id(mut field: Field, id: Option<String>) -> Field {
    if let Some(id) = id {
        field.id = id;
    }
    field
}

impl FieldArgs {
    /// A new field from the flags alone.
    fn new_field(self) -> anyhow::Result<Field> {
        let (Some(data_type), Some(classification)) = (self.data_type, self.classification) else {
            return usage("a new field needs --data-type and --classification (or --from-file)");
        };
        let template = Field::new(
            self.id.clone().unwrap_or_default(),
            data_type,
            classification,
        );
        Ok(self.apply(template))
    }

    /// `field` with the properties the flags give.
    fn apply(self, mut field: Field) -> Field {
        if let Some(t) = self.data_type {
            field.data_type = t;
        }
        if let Some(c) = self.classification {
            field.classification = c;
        }
        if let Some(s) = self.searchable {
            field.searchable = s;
        }
        if let Some(n) = self.max_length {
            field.max_length = Some(n);
        }
        if let Some(d) = self.description {
            field.description = d;
        }
        field.translations.extend(self.translations);
        if !self.enum_values.is_empty() {
            let values = self.enum_values.into_iter();
            field.enum_values = Some(
                values
                    .map(|value| EnumValue {
                        value,
                        active: true,
                    })
                    .collect(),
            );
        }
        field
    }
}

fn wire_text<T: serde::Serialize>(value: &T) -> String {
    output::text(&serde_json::to_value(value).unwrap_or_default())
}

fn field_table(fields: &[Field]) -> String {
    let rows: Vec<Vec<String>> = fields
        .iter()
        .map(|f| {
            vec![
                f.id.clone(),
                wire_text(&f.data_type),
                wire_text(&f.classification),
                yes_no(f.searchable),
                if f.base { "base" } else { "custom" }.to_owned(),
                output::cut(&f.description, 50),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "TYPE",
            "CLASSIFICATION",
            "SEARCHABLE",
            "ORIGIN",
            "DESCRIPTION",
        ],
        &rows,
    )
}

fn field_lines(f: &Field) -> String {
    let mut rows = vec![
        ("id".to_owned(), f.id.clone()),
        ("dataType".to_owned(), wire_text(&f.data_type)),
        ("classification".to_owned(), wire_text(&f.classification)),
        ("searchable".to_owned(), yes_no(f.searchable)),
        ("base".to_owned(), yes_no(f.base)),
        ("description".to_owned(), f.description.clone()),
    ];
    if let Some(n) = f.max_length {
        rows.push(("maxLength".to_owned(), n.to_string()));
    }
    if let Some(values) = &f.enum_values {
        let values: Vec<String> = values
            .iter()
            .map(|v| match v.active {
                true => v.value.clone(),
                false => format!("{} (inactive)", v.value),
            })
            .collect();
        rows.push(("enumValues".to_owned(), values.join(", ")));
    }
    for (locale, label) in &f.translations {
        rows.push((format!("translation {locale}"), label.clone()));
    }
    output::pairs(&rows)
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// Runs one `contextd fieldsets …` command.
pub async fn fieldsets(args: &ClientArgs, command: FieldSetCommand) -> anyhow::Result<()> {
    let client = args.connect()?;
    let out = args.output();
    match command {
        FieldSetCommand::List => {
            let sets = client.fieldsets().await?;
            out.emit(&sets, || fieldset_table(&sets))
        }
        FieldSetCommand::Get { id } => {
            let set = client.fieldset(&id).await?;
            out.emit(&set, || fieldset_lines(&set))
        }
        FieldSetCommand::Create(flags) => {
            let set = match flags.from_file.as_deref() {
                Some(path) => set_with_id(read_json::<FieldSet>(path)?, flags.id),
                None => flags.apply(FieldSet {
                    id: String::new(),
                    description: String::new(),
                    fields: Vec::new(),
                    inactive_fields: Vec::new(),
                    base: false,
                    last_updated: None,
                }),
            };
            let set = client.create_fieldset(&set).await?;
            out.emit(&set, || {
                format!("created field set\n{}", fieldset_lines(&set))
            })
        }
        FieldSetCommand::Update(flags) => {
            let set = match flags.from_file.as_deref() {
                Some(path) => set_with_id(read_json::<FieldSet>(path)?, flags.id),
                None => {
                    let id = flags.id.clone().unwrap_or_default();
                    flags.apply(client.fieldset(&id).await?)
                }
            };
            let set = client.update_fieldset(&set).await?;
            out.emit(&set, || {
                format!("updated field set\n{}", fieldset_lines(&set))
            })
        }
        FieldSetCommand::Delete { id } => {
            client.delete_fieldset(&id).await?;
            out.emit(&json!({"id": id, "deleted": true}), || {
                format!("deleted field set {id}")
            })
        }
    }
}

fn set_with_id(mut set: FieldSet, id: Option<String>) -> FieldSet {
    if let Some(id) = id {
        set.id = id;
    }
    set
}

impl FieldSetArgs {
    fn apply(self, mut set: FieldSet) -> FieldSet {
        if let Some(id) = self.id {
            set.id = id;
        }
        if !self.fields.is_empty() {
            set.fields = self.fields;
        }
        if !self.inactive_fields.is_empty() {
            set.inactive_fields = self.inactive_fields;
        }
        if let Some(d) = self.description {
            set.description = d;
        }
        set
    }
}

fn fieldset_table(sets: &[FieldSet]) -> String {
    let rows: Vec<Vec<String>> = sets
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                if s.base { "base" } else { "custom" }.to_owned(),
                output::cut(&s.fields.join(", "), 60),
            ]
        })
        .collect();
    output::table(&["ID", "ORIGIN", "FIELDS"], &rows)
}

fn fieldset_lines(s: &FieldSet) -> String {
    let mut rows = vec![
        ("id".to_owned(), s.id.clone()),
        ("base".to_owned(), yes_no(s.base)),
        ("description".to_owned(), s.description.clone()),
        ("fields".to_owned(), s.fields.join(", ")),
    ];
    if !s.inactive_fields.is_empty() {
        rows.push(("inactiveFields".to_owned(), s.inactive_fields.join(", ")));
    }
    output::pairs(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enumerations_read_in_any_case() {
        assert_eq!(data_type("Integer"), Ok(DataType::Integer));
        assert_eq!(classification("pii"), Ok(Classification::Pii));
        assert!(data_type("text").is_err());
    }
}
