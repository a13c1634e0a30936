//! `contextd export` and `contextd import`: a partition's dictionary and objects as JSON
//! Lines (`contextd_client::proto::transfer`), and back into another organization or server.
//!
//! Export (`export.rs`) pages through each kind with the native search. Import (`import.rs`)
//! reads the file once to learn its ids and where each kind's lines are, loads the
//! dictionary, then sends each kind in dependency order (customers, requests, activities,
//! details) as import batches, which keep ids and history and answer `exists` for what is
//! there already: running it again changes nothing.

mod export;
mod import;

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use contextd_client::proto::Kind;

pub use export::export;
pub use import::import;

/// The kinds in the order their links need.
const KINDS: [Kind; 4] = [Kind::Customer, Kind::Request, Kind::Activity, Kind::Detail];

/// What an export holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// Fields and field sets the organization added (the built-in ones exist everywhere).
    Dictionary,
    /// Customers.
    Customers,
    /// Requests.
    Requests,
    /// Activities.
    Activities,
    /// Details.
    Details,
}

impl Part {
    pub(super) fn kind(self) -> Option<Kind> {
        match self {
            Part::Dictionary => None,
            Part::Customers => Some(Kind::Customer),
            Part::Requests => Some(Kind::Request),
            Part::Activities => Some(Kind::Activity),
            Part::Details => Some(Kind::Detail),
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Part::Dictionary => "dictionary",
            Part::Customers => "customers",
            Part::Requests => "requests",
            Part::Activities => "activities",
            Part::Details => "details",
        }
    }
}

/// `contextd export`.
#[derive(Args)]
pub struct ExportArgs {
    /// What to export, comma-separated (default all): dictionary, customers, requests,
    /// activities, details. Always written in that order.
    #[arg(long, value_delimiter = ',', value_name = "PARTS")]
    pub(super) kinds: Vec<Part>,
}

/// `contextd import`.
#[derive(Args)]
pub struct ImportArgs {
    /// An export file (JSON Lines), or a JSON array of objects in the original product's
    /// wire shape.
    pub(super) file: PathBuf,
    /// Objects per batch (1–1000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub(super) batch_size: u16,
}
