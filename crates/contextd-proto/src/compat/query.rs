//! Search through the compatibility API: the `q` language and the paging and sorting
//! parameters of `GET /context/v1/{type}?q=…` and `GET /dictionary/{entity}/v1/search?q=…`.
//!
//! `q` is one of:
//!
//! - `type:<type>` alone: every object of that type;
//! - `id:*`: everything (what the dictionary console sends);
//! - `Field:value` terms joined by ` AND ` or by ` OR ` — one kind of joiner per query: a
//!   query mixing ` AND ` and ` OR ` is refused, as there are no parentheses to say which
//!   binds first. A value runs to the next ` AND `/` OR ` (upper case, one space either side)
//!   or the end, so it may contain spaces (`Context_Title:Service appointment`); a value
//!   wholly in double quotes loses them. Keys `id`, `customerId`, `parentId`, `state`,
//!   `tags`, `mediaType` and `contributor` are the native search's special keys; values of
//!   `id`, `customerId` and `parentId` may be references, and `customerRefUrl` /
//!   `parentRefUrl` are other names of `customerId` / `parentId`. A `type:` term among
//!   others restricts the type (whatever the joiner); `id:*` among AND-ed terms adds
//!   nothing, among OR-ed terms it matches everything. A value `*` is refused for other keys.
//!
//! The caller URL-decodes the query string once; a `%3A` or `%2A` still left in `q` (sent
//! encoded twice) reads as `:` or `*`, so literal and percent-encoded `:`/`*` are the same.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{id_from_ref, CompatType};
use crate::error::FieldError;
use crate::ids::ParseError;
use crate::object::{ContextObject, Match, SearchRequest};
use crate::truncate;

/// Default `maxEntries`.
pub const DEFAULT_MAX_ENTRIES: usize = 50;
/// Largest `maxEntries` of an object search.
pub const MAX_ENTRIES: usize = 200;
/// Largest `maxEntries` of a dictionary search.
pub const DICTIONARY_MAX_ENTRIES: usize = 1500;
/// Largest `startIndex + maxEntries`: how deep a search may page (the native search returns
/// at most this many ids at once).
pub const MAX_WINDOW: usize = 100_000;
/// Longest key accepted in a term (the dictionary's limit on field ids).
const MAX_KEY_CHARS: usize = 100;

const AND: &str = " AND ";
const OR: &str = " OR ";

/// One `Key:value` term, keys and values trimmed and normalized (references read as ids,
/// `customerRefUrl`/`parentRefUrl` renamed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// A field id or a special key.
    pub key: String,
    /// The value, as text.
    pub value: String,
}

/// Terms joined by one kind of joiner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terms {
    /// `all` for ` AND `, `any` for ` OR ` (a single term is `all`).
    pub match_mode: Match,
    /// The terms, in query order, without `type:` ones; never empty.
    pub terms: Vec<Term>,
    /// The type a `type:` term named, if any.
    pub type_filter: Option<CompatType>,
}

/// A parsed `q`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// `id:*` (or no `q`): everything of the path's type.
    All,
    /// `type:<type>` alone: every object of that type.
    AllOfType(CompatType),
    /// `Field:value` terms.
    Terms(Terms),
}

/// Which dictionary entries a dictionary search names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdFilter {
    /// Every entry (`id:*`).
    All,
    /// Entries whose id is one of these (case-sensitive); a pattern ending in `*` matches the
    /// ids it prefixes (`id:cisco.base.*`).
    Ids(Vec<String>),
}

impl IdFilter {
    /// Whether an entry of this id is named.
    pub fn matches(&self, id: &str) -> bool {
        match self {
            IdFilter::All => true,
            IdFilter::Ids(ids) => ids.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => id.starts_with(prefix),
                None => p == id,
            }),
        }
    }
}

impl Query {
    /// The type the query restricts to, if it names one.
    pub fn type_filter(&self) -> Option<CompatType> {
        match self {
            Query::All => None,
            Query::AllOfType(t) => Some(*t),
            Query::Terms(t) => t.type_filter,
        }
    }

    /// The native search of this query, `limit` results a page. Every value of a key is
    /// OR-ed, keys combine by `match`. The type filter is not part of it: the server searches
    /// the filter's kind (and refuses or answers nothing when it is not the path's), and
    /// keeps only work items for `workitem` (or only other activities for `activity`/`pod`),
    /// which the native search can't express.
    pub fn to_search(&self, limit: usize) -> SearchRequest {
        let mut request = SearchRequest {
            limit: Some(limit),
            ..SearchRequest::default()
        };
        if let Query::Terms(t) = self {
            request.match_mode = t.match_mode;
            let mut terms: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for term in &t.terms {
                let values = terms.entry(term.key.clone()).or_default();
                let v = Value::from(term.value.clone());
                if !values.contains(&v) {
                    values.push(v);
                }
            }
            request.terms = terms
                .into_iter()
                .map(|(k, v)| (k, Value::Array(v)))
                .collect();
        }
        request
    }

    /// The entries a dictionary search names: `id:*` is all of them, `id:a OR id:b` those.
    /// Any other key, or `type:`, is refused (the dictionary is searched by id only).
    pub fn id_filter(&self) -> Result<IdFilter, ParseError> {
        match self {
            Query::All => Ok(IdFilter::All),
            Query::AllOfType(_) => Err(ParseError(
                "the dictionary is searched by id only (id:* or id:a OR id:b)".to_owned(),
            )),
            Query::Terms(t) => {
                if t.type_filter.is_some() {
                    return Err(ParseError(
                        "the dictionary is searched by id only (id:* or id:a OR id:b)".to_owned(),
                    ));
                }
                let mut ids = Vec::new();
                for term in &t.terms {
                    if term.key != "id" {
                        return Err(ParseError(format!(
                            "the dictionary is searched by id only, not by '{}'",
                            truncate(&term.key, 100)
                        )));
                    }
                    if !ids.contains(&term.value) {
                        ids.push(term.value.clone());
                    }
                }
                Ok(IdFilter::Ids(ids))
            }
        }
    }
}

/// Parses `q`; the error says what is wrong and where.
pub fn parse_q(q: &str) -> Result<Query, ParseError> {
    let q = decode_reserved(q);
    let q = q.trim();
    if q.is_empty() {
        return Err(ParseError(
            "q is empty; expected Field:value terms, type:<type> or id:*".to_owned(),
        ));
    }
    let dangling = [AND, OR]
        .iter()
        .any(|j| q.ends_with(j.trim_end()) || q.starts_with(j.trim_start()));
    if dangling {
        return Err(ParseError(
            "q starts or ends with AND/OR; expected a Field:value term there".to_owned(),
        ));
    }
    let (parts, joiner) = split_terms(q)?;
    let match_mode = joiner.unwrap_or(Match::All);
    let mut type_filter: Option<CompatType> = None;
    let mut everything = false;
    let mut terms: Vec<Term> = Vec::new();
    for part in parts {
        let (key, value) = parse_term(part)?;
        match key {
            "type" => {
                let t = value.to_ascii_lowercase().parse::<CompatType>()?;
                match type_filter {
                    Some(prev) if !prev.same_as(t) => {
                        return Err(ParseError(format!(
                            "q names two types, '{prev}' and '{t}'; search one type at a time"
                        )))
                    }
                    Some(_) => {}
                    None => type_filter = Some(t),
                }
            }
            "id" if value == "*" => everything = true,
            _ if value == "*" => {
                return Err(ParseError(format!(
                    "'{}:*': a wildcard is accepted only as id:*",
                    truncate(key, 100)
                )))
            }
            _ => {
                let (key, value) = normalize(key, value);
                if match_mode == Match::All {
                    if let Some(other) = terms
                        .iter()
                        .find(|t| t.key == key && t.value.to_lowercase() != value.to_lowercase())
                    {
                        return Err(ParseError(format!(
                            "'{}' is given two values ('{}', '{}') joined by AND; one key can \
                             only require one value — join them with OR",
                            truncate(&key, 100),
                            truncate(&other.value, 64),
                            truncate(&value, 64)
                        )));
                    }
                }
                terms.push(Term { key, value });
            }
        }
    }
    let everything = everything && (match_mode == Match::Any || terms.is_empty());
    Ok(match (everything || terms.is_empty(), type_filter) {
        (true, Some(t)) => Query::AllOfType(t),
        (true, None) => Query::All,
        (false, type_filter) => Query::Terms(Terms {
            match_mode,
            terms,
            type_filter,
        }),
    })
}

/// `%3A`/`%2A` (any case) as `:`/`*`.
fn decode_reserved(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    let mut rest = q;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        match after.get(..3).map(str::to_ascii_uppercase).as_deref() {
            Some("%3A") => out.push(':'),
            Some("%2A") => out.push('*'),
            _ => {
                out.push('%');
                rest = &after[1..];
                continue;
            }
        }
        rest = &after[3..];
    }
    out.push_str(rest);
    out
}

/// The terms of `q` and the joiner between them (`None` for a single term).
fn split_terms(q: &str) -> Result<(Vec<&str>, Option<Match>), ParseError> {
    let mut parts = Vec::new();
    let mut joiner = None;
    let mut rest = q;
    loop {
        let next = [(AND, Match::All), (OR, Match::Any)]
            .into_iter()
            .filter_map(|(text, m)| rest.find(text).map(|i| (i, text, m)))
            .min_by_key(|(i, _, _)| *i);
        let Some((i, text, m)) = next else {
            parts.push(rest);
            break;
        };
        match joiner {
            Some(j) if j != m => {
                return Err(ParseError(
                    "q mixes AND and OR; join all terms with AND or all with OR".to_owned(),
                ))
            }
            _ => joiner = Some(m),
        }
        parts.push(&rest[..i]);
        rest = &rest[i + text.len()..];
    }
    Ok((parts, joiner))
}

/// One term's key and value, trimmed, the value unquoted.
fn parse_term(part: &str) -> Result<(&str, &str), ParseError> {
    let part = part.trim();
    if part.is_empty() {
        return Err(ParseError(
            "q has an empty term (a joiner at the start or end, or two in a row)".to_owned(),
        ));
    }
    let Some((key, value)) = part.split_once(':') else {
        return Err(ParseError(format!(
            "'{}' is not a Field:value term",
            truncate(part, 64)
        )));
    };
    let key = key.trim();
    let key_ok = key.len() <= MAX_KEY_CHARS
        && key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !key_ok {
        return Err(ParseError(format!(
            "'{}' is not a field id or search key",
            truncate(key, 64)
        )));
    }
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    if value.is_empty() {
        return Err(ParseError(format!("'{key}:' has no value")));
    }
    Ok((key, value))
}

/// References read as ids, `…RefUrl` keys renamed.
fn normalize(key: &str, value: &str) -> (String, String) {
    let key = match key {
        "customerRefUrl" => "customerId",
        "parentRefUrl" => "parentId",
        k => k,
    };
    let value = match key {
        "id" | "customerId" | "parentId" => id_from_ref(value).unwrap_or(value),
        _ => value,
    };
    (key.to_owned(), value.to_owned())
}

/// The query string of a search as sent, every parameter optional and kept as text so that
/// [`SearchParams::new`] can say what is wrong with it. Other parameters are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct RawSearchParams {
    /// The query (see the module documentation); absent or blank means everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Results to skip (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_index: Option<String>,
    /// Results to answer (default 50; at most 200, 1500 for the dictionary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<String>,
    /// `lastUpdated` (default) or `created`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorted_by: Option<String>,
    /// `desc` (default) or `asc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_order: Option<String>,
}

/// What results are sorted by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortBy {
    /// Last write (the default).
    #[default]
    LastUpdated,
    /// Creation time.
    Created,
}

/// Which end first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    /// Newest first (the default).
    #[default]
    Desc,
    /// Oldest first.
    Asc,
}

/// A search's query and page, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchParams {
    /// The parsed `q`.
    pub query: Query,
    /// Results skipped.
    pub start_index: usize,
    /// Results answered at most.
    pub max_entries: usize,
    /// Sort key.
    pub sorted_by: SortBy,
    /// Sort direction.
    pub sort_order: SortOrder,
}

impl SearchParams {
    /// Validates a search's parameters, `maxEntries` being at most `max_entries_cap`
    /// ([`MAX_ENTRIES`] for objects, [`DICTIONARY_MAX_ENTRIES`] for the dictionary). Every
    /// problem is reported, each naming its parameter; names and values of `sortedBy` and
    /// `sortOrder` are read in any case.
    pub fn new(raw: &RawSearchParams, max_entries_cap: usize) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let present = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let query = match present(&raw.q) {
            None => Query::All,
            Some(q) => parse_q(&q).unwrap_or_else(|e| {
                errors.push(FieldError::new("q", e.0));
                Query::All
            }),
        };
        let start_index = match present(&raw.start_index) {
            None => 0,
            Some(s) => s.parse::<usize>().unwrap_or_else(|_| {
                errors.push(FieldError::new(
                    "startIndex",
                    format!(
                        "'{}' is not a whole number of results to skip (0 or more)",
                        truncate(&s, 32)
                    ),
                ));
                0
            }),
        };
        let max_entries = match present(&raw.max_entries) {
            None => DEFAULT_MAX_ENTRIES.min(max_entries_cap),
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=max_entries_cap).contains(&n) => n,
                _ => {
                    errors.push(FieldError::new(
                        "maxEntries",
                        format!(
                            "'{}' is not a number of results from 1 to {max_entries_cap}",
                            truncate(&s, 32)
                        ),
                    ));
                    DEFAULT_MAX_ENTRIES
                }
            },
        };
        if start_index.saturating_add(max_entries) > MAX_WINDOW {
            errors.push(FieldError::new(
                "startIndex",
                format!("startIndex + maxEntries may be at most {MAX_WINDOW}; narrow the query"),
            ));
        }
        let sorted_by = match present(&raw.sorted_by).map(|s| s.to_ascii_lowercase()) {
            None => SortBy::LastUpdated,
            Some(s) if s == "lastupdated" => SortBy::LastUpdated,
            Some(s) if s == "created" => SortBy::Created,
            Some(s) => {
                errors.push(FieldError::new(
                    "sortedBy",
                    format!("'{}' is not lastUpdated or created", truncate(&s, 32)),
                ));
                SortBy::LastUpdated
            }
        };
        let sort_order = match present(&raw.sort_order).map(|s| s.to_ascii_lowercase()) {
            None => SortOrder::Desc,
            Some(s) if s == "desc" => SortOrder::Desc,
            Some(s) if s == "asc" => SortOrder::Asc,
            Some(s) => {
                errors.push(FieldError::new(
                    "sortOrder",
                    format!("'{}' is not desc or asc", truncate(&s, 32)),
                ));
                SortOrder::Desc
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            query,
            start_index,
            max_entries,
            sorted_by,
            sort_order,
        })
    }

    /// How many results, in order, the answer is cut from: `startIndex + maxEntries`.
    pub fn window(&self) -> usize {
        self.start_index + self.max_entries
    }

    /// The page of `items` (in any order): sorted by [`SortBy`] in [`SortOrder`] (ties by
    /// id), then `startIndex` skipped and `maxEntries` kept.
    pub fn arrange(&self, mut items: Vec<ContextObject>) -> Vec<ContextObject> {
        let key = |o: &ContextObject| -> (DateTime<Utc>, crate::ids::ObjectId) {
            match self.sorted_by {
                SortBy::LastUpdated => (o.last_updated, o.id),
                SortBy::Created => (o.created, o.id),
            }
        };
        items.sort_by_key(key);
        if self.sort_order == SortOrder::Desc {
            items.reverse();
        }
        self.page(items)
    }

    /// `items` (already in order) with `startIndex` skipped and `maxEntries` kept.
    pub fn page<T>(&self, items: Vec<T>) -> Vec<T> {
        items
            .into_iter()
            .skip(self.start_index)
            .take(self.max_entries)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn terms(q: &str) -> Terms {
        match parse_q(q).unwrap() {
            Query::Terms(t) => t,
            other => panic!("{q}: {other:?}"),
        }
    }

    fn term(key: &str, value: &str) -> Term {
        Term {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    fn err(q: &str) -> String {
        parse_q(q).unwrap_err().0
    }

    #[test]
    fn a_value_may_contain_spaces() {
        let t = terms("Context_Title:Service appointment");
        assert_eq!(t.terms, [term("Context_Title", "Service appointment")]);
        assert_eq!(t.match_mode, Match::All);
        let t = terms("Context_Title:Service appointment AND Context_Description:new  date ");
        assert_eq!(
            t.terms,
            [
                term("Context_Title", "Service appointment"),
                term("Context_Description", "new  date")
            ]
        );
        // Lower-case words are part of the value.
        let t = terms("Context_Title:salt and pepper or else");
        assert_eq!(t.terms, [term("Context_Title", "salt and pepper or else")]);
        // A value may hold colons.
        let t = terms("Context_Notes:at 10:30 sharp");
        assert_eq!(t.terms, [term("Context_Notes", "at 10:30 sharp")]);
        // Quotes around a whole value are dropped.
        let t = terms("Context_Title:\"Service appointment\"");
        assert_eq!(t.terms, [term("Context_Title", "Service appointment")]);
    }

    #[test]
    fn type_alone_lists_a_type() {
        assert_eq!(
            parse_q("type:customer"),
            Ok(Query::AllOfType(CompatType::Customer))
        );
        assert_eq!(parse_q(" type:POD "), Ok(Query::AllOfType(CompatType::Pod)));
        assert_eq!(
            parse_q("type%3Aworkitem"),
            Ok(Query::AllOfType(CompatType::Workitem))
        );
        assert_eq!(
            parse_q("type:request AND id:*"),
            Ok(Query::AllOfType(CompatType::Request))
        );
        assert!(err("type:thing").contains("unknown type 'thing'"));
        assert!(err("type:customer AND type:request").contains("two types"));
        assert_eq!(
            parse_q("type:pod AND type:activity"),
            Ok(Query::AllOfType(CompatType::Pod))
        );
    }

    #[test]
    fn a_type_among_terms_is_a_filter() {
        let t = terms("Context_First_Name:Jane AND Context_Last_Name:Doe AND type:customer");
        assert_eq!(t.type_filter, Some(CompatType::Customer));
        assert_eq!(
            t.terms,
            [
                term("Context_First_Name", "Jane"),
                term("Context_Last_Name", "Doe")
            ]
        );
        let t = terms("type:request OR Context_Title:A OR Context_Title:B");
        assert_eq!(t.type_filter, Some(CompatType::Request));
        assert_eq!(t.match_mode, Match::Any);
        assert_eq!(
            parse_q("type:request").unwrap().type_filter(),
            Some(CompatType::Request)
        );
        assert_eq!(parse_q("id:*").unwrap().type_filter(), None);
    }

    #[test]
    fn ids_joined_by_or() {
        let t = terms("id:a OR id:b");
        assert_eq!(t.match_mode, Match::Any);
        assert_eq!(t.terms, [term("id", "a"), term("id", "b")]);
        let s = parse_q("id:a OR id:b").unwrap().to_search(50);
        assert_eq!(s.match_mode, Match::Any);
        assert_eq!(
            s.terms,
            BTreeMap::from([("id".to_owned(), json!(["a", "b"]))])
        );
        assert_eq!(s.limit, Some(50));
    }

    #[test]
    fn and_and_or_may_not_be_mixed() {
        let e = err("a:1 AND b:2 OR c:3");
        assert!(e.contains("mixes AND and OR"), "{e}");
        assert!(err("a:1 OR b:2 AND c:3").contains("mixes AND and OR"));
    }

    #[test]
    fn percent_encoded_colon_and_star_are_literal_ones() {
        assert_eq!(parse_q("id%3A*"), Ok(Query::All));
        assert_eq!(parse_q("id:%2A"), Ok(Query::All));
        assert_eq!(parse_q("id%3a%2a"), Ok(Query::All));
        assert_eq!(
            terms("Context_Title%3AService appointment").terms,
            [term("Context_Title", "Service appointment")]
        );
        // Other escapes are left alone.
        assert_eq!(
            terms("Context_Notes:100%25 sure %").terms,
            [term("Context_Notes", "100%25 sure %")]
        );
        assert_eq!(decode_reserved("%3"), "%3");
        assert_eq!(decode_reserved("é%3Aé"), "é:é");
    }

    #[test]
    fn id_star_means_everything() {
        assert_eq!(parse_q("id:*"), Ok(Query::All));
        assert_eq!(parse_q("id:* OR id:a"), Ok(Query::All));
        // Among AND-ed terms it adds nothing.
        assert_eq!(
            terms("id:* AND Context_First_Name:John").terms,
            [term("Context_First_Name", "John")]
        );
        let e = err("Context_First_Name:*");
        assert!(e.contains("only as id:*"), "{e}");
        let s = Query::All.to_search(200);
        assert!(s.terms.is_empty());
        assert_eq!(s.match_mode, Match::All);
        assert_eq!(s.limit, Some(200));
    }

    #[test]
    fn special_keys_map_to_native_search() {
        let c = "0191d2a0-0000-7000-8000-00000000000c";
        let q = format!(
            "customerId:{c} AND state:active AND tags:vip AND mediaType:voice AND \
             contributor:agent-1 AND parentId:https://x.example/context/v1/request/r1?x=y"
        );
        let s = parse_q(&q).unwrap().to_search(10);
        assert_eq!(s.match_mode, Match::All);
        assert_eq!(
            serde_json::to_value(&s.terms).unwrap(),
            json!({
                "customerId": [c],
                "state": ["active"],
                "tags": ["vip"],
                "mediaType": ["voice"],
                "contributor": ["agent-1"],
                "parentId": ["r1"],
            })
        );
        let t = terms(&format!(
            "customerRefUrl:/context/v1/customer/{c} OR parentRefUrl:p OR id:/context/v1/pod/i"
        ));
        assert_eq!(
            t.terms,
            [
                term("customerId", c),
                term("parentId", "p"),
                term("id", "i")
            ]
        );
    }

    #[test]
    fn one_key_can_require_only_one_value() {
        let e = err("tags:a AND tags:b");
        assert!(
            e.contains("'tags' is given two values") && e.contains("OR"),
            "{e}"
        );
        // The same value twice is harmless, and collapses.
        let s = parse_q("tags:a AND tags:A").unwrap().to_search(1);
        assert_eq!(s.terms["tags"], json!(["a", "A"]));
        let s = parse_q("tags:a OR tags:a").unwrap().to_search(1);
        assert_eq!(s.terms["tags"], json!(["a"]));
    }

    #[test]
    fn malformed_queries_say_what_is_wrong() {
        assert!(err("").contains("q is empty"));
        assert!(err("   ").contains("q is empty"));
        assert!(err("John").contains("not a Field:value term"));
        assert!(err("a:1 AND ").contains("ends with AND/OR"));
        assert!(err("OR a:1").contains("starts or ends"));
        assert!(err("a:1 OR").contains("starts or ends"));
        assert!(err("a:1 AND  AND b:2").contains("empty term"));
        assert!(err("Context_First_Name:").contains("has no value"));
        assert!(err("Context_First_Name:\"\"").contains("has no value"));
        assert!(err(":John").contains("not a field id"));
        assert!(err("1abc:John").contains("not a field id"));
        assert!(err("a b:John").contains("not a field id"));
        assert!(err(&format!("{}:x", "a".repeat(101))).contains("not a field id"));
    }

    #[test]
    fn dictionary_searches_name_ids() {
        let f = |q: &str| parse_q(q).unwrap().id_filter();
        assert_eq!(f("id:*"), Ok(IdFilter::All));
        assert_eq!(
            f("id:a OR id:b OR id:a"),
            Ok(IdFilter::Ids(vec!["a".into(), "b".into()]))
        );
        assert!(f("description:x").unwrap_err().0.contains("by id only"));
        assert!(f("type:customer").is_err());
        assert!(f("id:a AND type:customer").is_err());
        let ids = f("id:cisco.base.* OR id:Mine").unwrap();
        assert!(ids.matches("cisco.base.customer"));
        assert!(ids.matches("Mine"));
        assert!(!ids.matches("mine"));
        assert!(!ids.matches("Other"));
        assert!(IdFilter::All.matches("anything"));
    }

    fn raw(pairs: &[(&str, &str)]) -> RawSearchParams {
        let map: serde_json::Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        serde_json::from_value(Value::Object(map)).unwrap()
    }

    #[test]
    fn paging_and_sorting_default() {
        let p = SearchParams::new(&raw(&[("q", "type:customer")]), MAX_ENTRIES).unwrap();
        assert_eq!(p.query, Query::AllOfType(CompatType::Customer));
        assert_eq!(
            (p.start_index, p.max_entries, p.sorted_by, p.sort_order),
            (0, 50, SortBy::LastUpdated, SortOrder::Desc)
        );
        assert_eq!(p.window(), 50);
        // No q (or a blank one): everything.
        let p = SearchParams::new(&raw(&[("q", " ")]), MAX_ENTRIES).unwrap();
        assert_eq!(p.query, Query::All);
        let p = SearchParams::new(&RawSearchParams::default(), MAX_ENTRIES).unwrap();
        assert_eq!(p.query, Query::All);
        // Unknown parameters are ignored.
        assert!(SearchParams::new(&raw(&[("trackingId", "x")]), MAX_ENTRIES).is_ok());
    }

    #[test]
    fn paging_and_sorting_are_read_and_limited() {
        let p = SearchParams::new(
            &raw(&[
                ("q", "Context_Title:Service appointment"),
                ("startIndex", "10"),
                ("maxEntries", "200"),
                ("sortedBy", "created"),
                ("sortOrder", "ASC"),
            ]),
            MAX_ENTRIES,
        )
        .unwrap();
        assert_eq!(
            (p.start_index, p.max_entries, p.sorted_by, p.sort_order),
            (10, 200, SortBy::Created, SortOrder::Asc)
        );
        assert_eq!(p.window(), 210);
        let p = SearchParams::new(&raw(&[("sortedBy", "lastUpdated")]), MAX_ENTRIES).unwrap();
        assert_eq!(p.sorted_by, SortBy::LastUpdated);

        let e = SearchParams::new(&raw(&[("maxEntries", "201")]), MAX_ENTRIES).unwrap_err();
        assert_eq!(e[0].field, "maxEntries");
        assert!(e[0].message.contains("from 1 to 200"), "{}", e[0].message);
        let p = SearchParams::new(
            &raw(&[("q", "id:*"), ("maxEntries", "1500")]),
            DICTIONARY_MAX_ENTRIES,
        )
        .unwrap();
        assert_eq!(p.max_entries, 1500);
        assert!(
            SearchParams::new(&raw(&[("maxEntries", "1501")]), DICTIONARY_MAX_ENTRIES).is_err()
        );

        let e = SearchParams::new(
            &raw(&[
                ("q", "a:1 AND b:2 OR c:3"),
                ("startIndex", "-1"),
                ("maxEntries", "0"),
                ("sortedBy", "name"),
                ("sortOrder", "up"),
            ]),
            MAX_ENTRIES,
        )
        .unwrap_err();
        let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["q", "startIndex", "maxEntries", "sortedBy", "sortOrder"]
        );
        assert!(e[0].message.contains("mixes AND and OR"));

        let e = SearchParams::new(&raw(&[("startIndex", "99990")]), MAX_ENTRIES).unwrap_err();
        assert!(e[0].message.contains("at most 100000"));
    }

    fn obj(n: u8, created: i64, updated: i64) -> ContextObject {
        let t = |ms| DateTime::from_timestamp_millis(ms).unwrap();
        ContextObject {
            id: crate::ids::ObjectId::parse(&format!("0191d2a0-0000-7000-8000-0000000000{n:02x}"))
                .unwrap(),
            kind: crate::object::Kind::Customer,
            customer_id: None,
            parent_id: None,
            state: crate::object::State::Active,
            media_type: None,
            detail_type: None,
            fieldsets: vec![],
            data: BTreeMap::new(),
            tags: vec![],
            contributors: vec![],
            withheld: vec![],
            created: t(created),
            last_updated: t(updated),
            version: 1,
        }
    }

    #[test]
    fn results_are_sorted_and_paged() {
        let items = vec![
            obj(1, 100, 500),
            obj(2, 200, 300),
            obj(3, 300, 400),
            obj(4, 300, 400),
        ];
        let order = |pairs: &[(&str, &str)]| -> Vec<u8> {
            SearchParams::new(&raw(pairs), MAX_ENTRIES)
                .unwrap()
                .arrange(items.clone())
                .iter()
                .map(|o| o.id.0.as_bytes()[15])
                .collect()
        };
        assert_eq!(order(&[]), [1, 4, 3, 2]);
        assert_eq!(order(&[("sortOrder", "asc")]), [2, 3, 4, 1]);
        assert_eq!(order(&[("sortedBy", "created")]), [4, 3, 2, 1]);
        assert_eq!(
            order(&[("sortedBy", "created"), ("sortOrder", "asc")]),
            [1, 2, 3, 4]
        );
        assert_eq!(order(&[("startIndex", "1"), ("maxEntries", "2")]), [4, 3]);
        assert_eq!(order(&[("startIndex", "9")]), Vec::<u8>::new());
    }
}
