//! The resource's representations: content negotiation, the XML and JSON of the registration
//! and of errors, and reading a `PUT` body.

use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::Event;
use quick_xml::Reader;

/// A representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Xml,
    Json,
}

impl Format {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Xml => "application/xml; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

/// The format an `Accept` header asks for: the acceptable one with the higher `q`, the more
/// specific on a tie (`application/json` beats `*/*`). `None` when there is no header, it names
/// neither format acceptably, or it likes both equally (`*/*`): the caller's default then.
pub(crate) fn negotiate(accept: Option<&str>) -> Option<Format> {
    let accept = accept?.trim();
    if accept.is_empty() {
        return None;
    }
    let ranges: Vec<(String, f32)> = accept.split(',').filter_map(media_range).collect();
    let xml = best_match(&ranges, &["application/xml", "text/xml"]);
    let json = best_match(&ranges, &["application/json"]);
    match (xml, json) {
        (None, None) => None,
        (Some(_), None) => Some(Format::Xml),
        (None, Some(_)) => Some(Format::Json),
        (Some(x), Some(j)) => {
            if x.0 > j.0 || (x.0 == j.0 && x.1 > j.1) {
                Some(Format::Xml)
            } else if j.0 > x.0 || (x.0 == j.0 && j.1 > x.1) {
                Some(Format::Json)
            } else {
                None
            }
        }
    }
}

/// One `type/subtype;q=…` element: lowercased type and its q (1 when absent).
fn media_range(element: &str) -> Option<(String, f32)> {
    let mut parts = element.split(';');
    let range = parts.next()?.trim().to_ascii_lowercase();
    if range.is_empty() {
        return None;
    }
    let mut q = 1.0;
    for param in parts {
        if let Some((name, value)) = param.split_once('=') {
            if name.trim().eq_ignore_ascii_case("q") {
                q = value.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0);
            }
        }
    }
    Some((range, q))
}

/// The best (q, specificity) with which `ranges` accept any of `types`; `None` when none
/// accepts them (q = 0 refuses). Specificity: 2 exact, 1 `type/*`, 0 `*/*`.
fn best_match(ranges: &[(String, f32)], types: &[&str]) -> Option<(f32, u8)> {
    let mut best: Option<(f32, u8)> = None;
    for ty in types {
        let main = ty.split('/').next().unwrap_or_default();
        // The most specific range matching this type decides its q (RFC 9110 §12.5.1).
        let mut decided: Option<(f32, u8)> = None;
        for (range, q) in ranges {
            let specificity = if range == ty {
                2
            } else if range.strip_suffix("/*") == Some(main) {
                1
            } else if range == "*/*" {
                0
            } else {
                continue;
            };
            if decided.is_none_or(|(_, s)| specificity > s) {
                decided = Some((*q, specificity));
            }
        }
        if let Some((q, s)) = decided.filter(|(q, _)| *q > 0.0) {
            if best.is_none_or(|(bq, bs)| q > bq || (q == bq && s > bs)) {
                best = Some((q, s));
            }
        }
    }
    best
}

/// The format of a `PUT` body by its `Content-Type`; by its first character when there is
/// none (`{` JSON, else XML). `Err` names an unsupported type.
pub(crate) fn body_format(content_type: Option<&str>, body: &str) -> Result<Format, String> {
    let Some(content_type) = content_type.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(if body.trim_start().starts_with('{') {
            Format::Json
        } else {
            Format::Xml
        });
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Format::Json),
        "application/xml" | "text/xml" => Ok(Format::Xml),
        e if e.ends_with("+json") => Ok(Format::Json),
        e if e.ends_with("+xml") => Ok(Format::Xml),
        _ => Err(contextd_proto::truncate(&essence, 64)),
    }
}

/// `<name>text</name>`, the text escaped.
fn element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&escape(text));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// `<contextServiceRegistration>` with the elements that have a value, in the original order.
pub(crate) fn registration_xml(
    state: &str,
    management_url: Option<&str>,
    registration_url: Option<&str>,
    deregistration_url: Option<&str>,
    ref_url: &str,
) -> String {
    let mut out = String::from("<contextServiceRegistration>");
    element(&mut out, "state", state);
    for (name, value) in [
        ("managementUrl", management_url),
        ("registrationUrl", registration_url),
        ("deregistrationUrl", deregistration_url),
    ] {
        if let Some(value) = value {
            element(&mut out, name, value);
        }
    }
    element(&mut out, "refURL", ref_url);
    out.push_str("</contextServiceRegistration>");
    out
}

/// An error in `format`: XML `<apiErrors><apiError><errorType/><errorMessage/></apiError></apiErrors>`
/// (the Unified Config style), JSON `{"errorType", "errorMessage"}` (the Context Service style).
pub(crate) fn error_body(format: Format, error_type: &str, message: &str) -> String {
    match format {
        Format::Json => {
            serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string()
        }
        Format::Xml => {
            let mut out = String::from("<apiErrors><apiError>");
            element(&mut out, "errorType", error_type);
            element(&mut out, "errorMessage", message);
            out.push_str("</apiError></apiErrors>");
            out
        }
    }
}

/// Why a `PUT` body gave no connectionData.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// The body has no connectionData (or it is `null`).
    Missing,
    /// The body is not what was expected; the text says why.
    Malformed(String),
}

/// The `connectionData` of a JSON body `{"connectionData": "…"}`; other members are ignored
/// (a client may send back what it read).
pub(crate) fn connection_data_from_json(body: &str) -> Result<String, BodyError> {
    let value: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| BodyError::Malformed(format!("the body is not valid JSON: {e}")))?;
    let serde_json::Value::Object(mut members) = value else {
        return Err(BodyError::Malformed(
            "the body must be a JSON object: {\"connectionData\": \"…\"}".into(),
        ));
    };
    match members.remove("connectionData") {
        None | Some(serde_json::Value::Null) => Err(BodyError::Missing),
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(_) => Err(BodyError::Malformed(
            "connectionData must be a string".into(),
        )),
    }
}

const ROOT: &[u8] = b"contextServiceRegistration";
const CONNECTION_DATA: &[u8] = b"connectionData";

/// The `connectionData` of an XML body
/// `<contextServiceRegistration><connectionData>…</connectionData></contextServiceRegistration>`;
/// other child elements are ignored. Entities, character references and CDATA are decoded.
pub(crate) fn connection_data_from_xml(body: &str) -> Result<String, BodyError> {
    let malformed = |e: &dyn std::fmt::Display| {
        BodyError::Malformed(format!("the body is not well-formed XML: {e}"))
    };
    let mut reader = Reader::from_str(body);
    let mut depth = 0usize;
    let mut saw_root = false;
    // Some(text) while inside <connectionData>.
    let mut inside: Option<String> = None;
    let mut found: Option<String> = None;

    loop {
        let event = reader.read_event().map_err(|e| malformed(&e))?;
        match event {
            Event::Start(e) => {
                if inside.is_some() {
                    return Err(BodyError::Malformed(
                        "connectionData must hold text, not elements".into(),
                    ));
                }
                if open(e.local_name().as_ref(), depth, &mut saw_root, &found)? {
                    inside = Some(String::new());
                }
                depth += 1;
            }
            Event::Empty(e) => {
                if inside.is_some() {
                    return Err(BodyError::Malformed(
                        "connectionData must hold text, not elements".into(),
                    ));
                }
                // `<connectionData/>` is the empty string; an empty root has no connectionData.
                if open(e.local_name().as_ref(), depth, &mut saw_root, &found)? {
                    found = Some(String::new());
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    if let Some(text) = inside.take() {
                        found = Some(text);
                    }
                }
            }
            Event::Text(t) => {
                if let Some(text) = inside.as_mut() {
                    text.push_str(&t.xml10_content().map_err(|e| malformed(&e))?);
                } else if depth == 0 && !t.decode().map_err(|e| malformed(&e))?.trim().is_empty() {
                    return Err(BodyError::Malformed(
                        "the body has text outside <contextServiceRegistration>".into(),
                    ));
                }
            }
            Event::CData(c) => {
                if let Some(text) = inside.as_mut() {
                    text.push_str(&c.xml10_content().map_err(|e| malformed(&e))?);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(text) = inside.as_mut() {
                    if let Some(ch) = r.resolve_char_ref().map_err(|e| malformed(&e))? {
                        text.push(ch);
                    } else {
                        let name = r.decode().map_err(|e| malformed(&e))?;
                        let resolved = resolve_predefined_entity(&name).ok_or_else(|| {
                            BodyError::Malformed(format!(
                                "unknown entity &{};",
                                contextd_proto::truncate(&name, 20)
                            ))
                        })?;
                        text.push_str(resolved);
                    }
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if depth != 0 {
        return Err(BodyError::Malformed(
            "the body is not well-formed XML: an element is not closed".into(),
        ));
    }
    if !saw_root {
        return Err(BodyError::Malformed(
            "the body must be <contextServiceRegistration><connectionData>…</connectionData></contextServiceRegistration>"
                .into(),
        ));
    }
    found.ok_or(BodyError::Missing)
}

/// Checks an element opening at `depth`; `true` when it is the (first) `<connectionData>`.
fn open(
    name: &[u8],
    depth: usize,
    saw_root: &mut bool,
    found: &Option<String>,
) -> Result<bool, BodyError> {
    match depth {
        0 if *saw_root => Err(BodyError::Malformed(
            "the body has more than one root element".into(),
        )),
        0 if name != ROOT => Err(BodyError::Malformed(format!(
            "the root element must be <contextServiceRegistration>, not <{}>",
            contextd_proto::truncate(&String::from_utf8_lossy(name), 40)
        ))),
        0 => {
            *saw_root = true;
            Ok(false)
        }
        1 if name == CONNECTION_DATA && found.is_some() => Err(BodyError::Malformed(
            "the body has more than one <connectionData>".into(),
        )),
        1 => Ok(name == CONNECTION_DATA),
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header_picks_the_preferred_format() {
        assert_eq!(negotiate(None), None);
        assert_eq!(negotiate(Some("")), None);
        assert_eq!(negotiate(Some("*/*")), None);
        assert_eq!(negotiate(Some("text/html")), None);
        assert_eq!(negotiate(Some("application/json")), Some(Format::Json));
        assert_eq!(negotiate(Some("Application/JSON")), Some(Format::Json));
        assert_eq!(negotiate(Some("application/xml")), Some(Format::Xml));
        assert_eq!(negotiate(Some("text/xml")), Some(Format::Xml));
        assert_eq!(
            negotiate(Some("application/json, */*;q=0.5")),
            Some(Format::Json)
        );
        assert_eq!(
            negotiate(Some("application/xml;q=0.4, application/json;q=0.9")),
            Some(Format::Json)
        );
        assert_eq!(
            negotiate(Some("application/json;q=0.4, text/xml")),
            Some(Format::Xml)
        );
        assert_eq!(negotiate(Some("application/json, */*")), Some(Format::Json));
        assert_eq!(
            negotiate(Some("application/json;q=0, */*")),
            Some(Format::Xml)
        );
        assert_eq!(negotiate(Some("text/*")), Some(Format::Xml));
    }

    #[test]
    fn body_format_by_content_type_or_first_character() {
        assert_eq!(body_format(None, " {\"a\":1}"), Ok(Format::Json));
        assert_eq!(body_format(None, "<x/>"), Ok(Format::Xml));
        assert_eq!(
            body_format(Some("application/json; charset=utf-8"), ""),
            Ok(Format::Json)
        );
        assert_eq!(body_format(Some("text/xml"), ""), Ok(Format::Xml));
        assert_eq!(
            body_format(Some("application/vnd.x+xml"), ""),
            Ok(Format::Xml)
        );
        assert_eq!(
            body_format(Some("text/plain"), ""),
            Err("text/plain".to_owned())
        );
    }

    #[test]
    fn xml_is_escaped_and_omits_absent_elements() {
        assert_eq!(
            registration_xml(
                "notRegistered",
                None,
                Some("http://a/?b=1&c=<2>"),
                None,
                "/r"
            ),
            "<contextServiceRegistration><state>notRegistered</state>\
             <registrationUrl>http://a/?b=1&amp;c=&lt;2&gt;</registrationUrl>\
             <refURL>/r</refURL></contextServiceRegistration>"
        );
        assert_eq!(
            error_body(Format::Xml, "x", "a < b"),
            "<apiErrors><apiError><errorType>x</errorType><errorMessage>a &lt; b</errorMessage></apiError></apiErrors>"
        );
    }

    #[test]
    fn xml_bodies() {
        let ok = |b: &str| connection_data_from_xml(b);
        assert_eq!(
            ok("<contextServiceRegistration><connectionData>abc</connectionData></contextServiceRegistration>"),
            Ok("abc".into())
        );
        assert_eq!(
            ok("<?xml version=\"1.0\"?>\n<contextServiceRegistration xmlns=\"urn:x\">\n  <state>registered</state>\n  <connectionData>a&amp;b&#x3C;<![CDATA[<c>]]></connectionData>\n  <refURL>/r</refURL>\n</contextServiceRegistration>\n"),
            Ok("a&b<<c>".into())
        );
        assert_eq!(
            ok("<contextServiceRegistration><connectionData/></contextServiceRegistration>"),
            Ok(String::new())
        );
        assert_eq!(
            ok("<contextServiceRegistration><connectionData></connectionData></contextServiceRegistration>"),
            Ok(String::new())
        );
        assert_eq!(
            ok("<contextServiceRegistration><state>x</state></contextServiceRegistration>"),
            Err(BodyError::Missing)
        );
        assert_eq!(ok("<contextServiceRegistration/>"), Err(BodyError::Missing));
        for bad in [
            "",
            "connectionData",
            "<other><connectionData>a</connectionData></other>",
            "<contextServiceRegistration><connectionData>a</connectionData>",
            "<contextServiceRegistration><connectionData>a</state></contextServiceRegistration>",
            "<contextServiceRegistration><connectionData><b>a</b></connectionData></contextServiceRegistration>",
            "<contextServiceRegistration><connectionData>a</connectionData><connectionData>b</connectionData></contextServiceRegistration>",
            "<contextServiceRegistration><connectionData>&nbsp;</connectionData></contextServiceRegistration>",
            "<contextServiceRegistration/><contextServiceRegistration/>",
        ] {
            assert!(
                matches!(ok(bad), Err(BodyError::Malformed(_))),
                "{bad:?} → {:?}",
                ok(bad)
            );
        }
    }

    #[test]
    fn json_bodies() {
        assert_eq!(
            connection_data_from_json(r#"{"connectionData":"abc","state":"x"}"#),
            Ok("abc".into())
        );
        assert_eq!(
            connection_data_from_json(r#"{"connectionData":""}"#),
            Ok(String::new())
        );
        assert_eq!(connection_data_from_json("{}"), Err(BodyError::Missing));
        assert_eq!(
            connection_data_from_json(r#"{"connectionData":null}"#),
            Err(BodyError::Missing)
        );
        for bad in ["", "[]", r#"{"connectionData":1}"#, "{"] {
            assert!(matches!(
                connection_data_from_json(bad),
                Err(BodyError::Malformed(_))
            ));
        }
    }
}
