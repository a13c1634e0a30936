//! Realistic, deterministic benchmark data: customer `n` always gets the same name, phones,
//! emails and address, so runs can be repeated and phone numbers never collide across loads.

use std::collections::BTreeMap;

use contextd_proto::object::{ObjectInput, SearchRequest};
use serde_json::{json, Value};

const FIRST: &[&str] = &[
    "Ada", "Erik", "Ola", "Kira", "Mateo", "Sofia", "Liam", "Amara", "Noah", "Yuki", "Chloé",
    "José", "Priya", "Lars", "Fatima", "Oskar", "Zoë", "Mohammed", "Ines", "Hiroshi", "Grace",
    "Björn", "Aisha", "Tomás", "Emma", "Raj", "Léa", "Dmitri", "Nora", "Kwame", "Sven", "Maja",
];
const LAST: &[&str] = &[
    "Andersen",
    "García",
    "Nguyen",
    "Okafor",
    "Smith",
    "Müller",
    "Rossi",
    "Kowalski",
    "Tanaka",
    "Haddad",
    "O'Brien",
    "Fernández",
    "Johansson",
    "Dubois",
    "Patel",
    "Kim",
    "Novák",
    "Silva",
    "Jensen",
    "van der Berg",
    "Ivanova",
    "Mensah",
    "Schmidt",
    "Lindqvist",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Oslo", "", "NO"),
    ("Austin", "TX", "US"),
    ("Lyon", "", "FR"),
    ("Toronto", "ON", "CA"),
    ("São Paulo", "SP", "BR"),
    ("Denver", "CO", "US"),
    ("München", "BY", "DE"),
    ("Raleigh", "NC", "US"),
    ("Kraków", "", "PL"),
    ("Osaka", "", "JP"),
];
const STREETS: &[&str] = &[
    "Main Street",
    "Storgata",
    "Rue de la République",
    "Elm Avenue",
    "Hauptstraße",
    "Ocean Drive",
];
const LOCALES: &[&str] = &[
    "en_US", "nb_NO", "fr_FR", "de_DE", "es_MX", "pt_BR", "ja_JP",
];
const DOMAINS: &[&str] = &["example.com", "example.org", "example.net", "mail.example"];
/// Every activity media type (README, "API overview"), in the order activities of a customer take them.
pub const MEDIA_TYPES: &[&str] = &[
    "event", "web", "chat", "voice", "sms", "email", "social", "video", "mobile",
];
const NOTES: &[&str] = &[
    "Customer reports a fault code on the dashboard; asked for a service slot.",
    "Browsed the service-center page for opening hours.",
    "Chat: booked a diagnosis for Tuesday 10:00, loan bike requested.",
    "Called about the appointment; IVR matched the caller number.",
    "SMS: proposes Thursday instead, after 15:00.",
    "Agent confirmed Thursday 15:30 by SMS.",
    "Email with the invoice and warranty terms sent.",
    "Left a review on social media, 4 stars, mentions quick service.",
    "Video call to show the noise from the rear wheel.",
    "Opened the mobile app and checked the repair status.",
];

/// A small integer hash, so that values vary without a random generator.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn pick<T: Copy>(list: &[T], n: u64, salt: u64) -> T {
    // `list` is never empty: every list above is a non-empty constant.
    list[(mix(n ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) % list.len() as u64) as usize]
}

/// The 11 digits of customer `n`'s phone of a kind (`0` mobile, `1` home, `2` work): the
/// country code 1, an area code, and seven digits. Mobiles are unique for n < 8·10⁹.
pub fn phone_digits(n: u64, kind: u64) -> String {
    let area = 200 + (n / 10_000_000 + kind * 97) % 800;
    format!("1{area:03}{:07}", (n + kind * 3_333_331) % 10_000_000)
}

/// Ways people write one number (each keeps every digit, so they all match each other).
pub const PHONE_STYLES: usize = 5;

/// `digits` (from [`phone_digits`]) written in style `style`.
pub fn format_phone(digits: &str, style: usize) -> String {
    let (a, b, c) = (&digits[1..4], &digits[4..7], &digits[7..11]);
    match style % PHONE_STYLES {
        0 => format!("+1 ({a}) {b}-{c}"),
        1 => format!("1.{a}.{b}.{c}"),
        2 => digits.to_owned(),
        3 => format!("+1 {a} {b} {c}"),
        _ => format!("1-{a}-{b}-{c}"),
    }
}

/// A different way of writing the same number than `stored` (for lookups).
pub fn other_format(stored: &str, salt: usize) -> String {
    let digits: String = stored.chars().filter(char::is_ascii_digit).collect();
    if digits.len() != 11 {
        return digits;
    }
    let style = (0..PHONE_STYLES)
        .find(|s| format_phone(&digits, *s) == stored)
        .unwrap_or(0);
    format_phone(&digits, style + 1 + salt % (PHONE_STYLES - 1))
}

fn email_local(first: &str, last: &str, n: u64) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_lowercase()
    };
    format!("{}.{}{n}", clean(first), clean(last))
}

/// An object drawing on one field set, with these values (a JSON object).
fn object(fieldset: &str, data: Value) -> ObjectInput {
    let data: BTreeMap<String, Value> = match data {
        Value::Object(map) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    ObjectInput {
        fieldsets: vec![fieldset.to_owned()],
        data,
        ..ObjectInput::default()
    }
}

/// The lookup of a customer by a phone number (the `lookup` scenario).
pub fn lookup(phone: &str) -> SearchRequest {
    SearchRequest {
        terms: BTreeMap::from([("Context_Mobile_Phone".to_owned(), json!([phone]))]),
        ..SearchRequest::default()
    }
}

/// Customer `n` with its mobile number as stored.
pub fn customer(n: u64) -> (ObjectInput, String) {
    let first = pick(FIRST, n, 1);
    let last = pick(LAST, n, 2);
    let (city, state, country) = pick(CITIES, n, 3);
    let mobile = format_phone(&phone_digits(n, 0), n as usize);
    // Home and work numbers written in the local 10-digit forms people also use.
    let home = phone_digits(n, 1);
    let work = phone_digits(n, 2);
    let mut data = json!({
        "Context_First_Name": first,
        "Context_Last_Name": last,
        "Context_Mobile_Phone": mobile,
        "Context_Home_Phone": format!("{}.{}.{}", &home[1..4], &home[4..7], &home[7..]),
        "Context_Home_Email": format!("{}@{}", email_local(first, last, n), pick(DOMAINS, n, 4)),
        "Context_Street_Address_1": format!("{} {}", 1 + mix(n) % 240, pick(STREETS, n, 5)),
        "Context_City": city,
        "Context_Country": country,
        "Context_ZIP": format!("{:05}", mix(n ^ 6) % 100_000),
        "Context_Customer_External_ID": format!("CRM-{n:09}"),
        "Context_Preferred_Language": pick(LOCALES, n, 7),
    });
    if n.is_multiple_of(3) {
        data["Context_Work_Phone"] =
            json!(format!("({}) {}-{}", &work[1..4], &work[4..7], &work[7..]));
        data["Context_Work_Email"] = json!(format!("{}@corp.example", email_local(first, last, n)));
    }
    if !state.is_empty() {
        data["Context_State"] = json!(state);
    }
    let mut body = object("cisco.base.customer", data);
    if n.is_multiple_of(10) {
        body.tags = vec!["vip".to_owned()];
    }
    (body, mobile)
}

/// Request `k` of customer `n`.
pub fn request(customer_id: &str, n: u64, k: u64) -> ObjectInput {
    let titles = [
        "Service appointment",
        "Warranty claim",
        "Billing question",
        "Delivery delay",
    ];
    ObjectInput {
        customer_id: Some(customer_id.to_owned()),
        ..object(
            "cisco.base.request",
            json!({
                "Context_Title": pick(&titles, n, k + 10),
                "Context_Description": format!("Case {k} of customer {n}: {}", pick(NOTES, n, k + 11)),
            }),
        )
    }
}

/// Activity `k` of customer `n` (media type `MEDIA_TYPES[k % 9]`), inside `parent` if given.
pub fn activity(customer_id: &str, parent: Option<&str>, n: u64, k: u64) -> ObjectInput {
    let media = MEDIA_TYPES[(k % MEDIA_TYPES.len() as u64) as usize];
    let mut data = json!({"Context_Notes": NOTES[(k % NOTES.len() as u64) as usize]});
    match media {
        "voice" | "sms" => {
            data["Context_POD_Source_Phone"] = json!(format_phone(&phone_digits(n, 0), k as usize))
        }
        "email" => {
            data["Context_POD_Source_Email"] = json!(format!("customer{n}@example.com"));
            data["Context_POD_Source_Cust_Name"] =
                json!(format!("{} {}", pick(FIRST, n, 1), pick(LAST, n, 2)));
        }
        "web" | "mobile" => {
            data["Context_POD_Activity_Link"] =
                json!(format!("https://service.example.com/visit/{n}/{k}"))
        }
        _ => {}
    }
    let mut body = ObjectInput {
        customer_id: Some(customer_id.to_owned()),
        parent_id: parent.map(str::to_owned),
        media_type: Some(media.to_owned()),
        ..object("cisco.base.pod", data)
    };
    if k.is_multiple_of(7) {
        body.tags = vec!["followup".to_owned()];
    }
    body
}

/// The request activity `k` of a customer belongs to: about half of the activities belong to
/// one of its `requests` in turn; the rest (and all, without requests) to the customer only.
pub fn activity_parent(k: u64, requests: &[String]) -> Option<&str> {
    (k.is_multiple_of(2) && !requests.is_empty())
        .then(|| requests[(k / 2) as usize % requests.len()].as_str())
}

/// Detail `d` of customer `n`: feedback on its first activity, and comments on its requests
/// (every other one when it has both); `None` when it has neither.
pub fn detail(
    n: u64,
    d: u64,
    first_activity: Option<&str>,
    requests: &[String],
) -> Option<ObjectInput> {
    Some(match (first_activity, requests.is_empty()) {
        (Some(a), true) => feedback(a, n + d),
        (Some(a), false) if d % 2 == 1 => feedback(a, n + d),
        (_, false) => comment(&requests[d as usize % requests.len()], n + d),
        (None, true) => return None,
    })
}

/// A comment detail on a request or activity.
pub fn comment(parent_id: &str, n: u64) -> ObjectInput {
    ObjectInput {
        parent_id: Some(parent_id.to_owned()),
        detail_type: Some("comment".to_owned()),
        ..object(
            "cisco.base.comment",
            json!({
                "Context_Comment": format!("Internal note {n}: customer prefers SMS."),
                "Context_Visible": n.is_multiple_of(2),
                "Context_DisplayName": "Agent Smith",
            }),
        )
    }
}

/// A feedback detail on an activity.
pub fn feedback(parent_id: &str, n: u64) -> ObjectInput {
    ObjectInput {
        parent_id: Some(parent_id.to_owned()),
        detail_type: Some("feedback".to_owned()),
        ..object(
            "cisco.base.rating",
            json!({
                "cccRatingComments": "Quick and friendly.",
                "cccRatingPoints": 1 + mix(n) % 5,
            }),
        )
    }
}

/// The body of an ingested activity (the `ingest` scenario).
pub fn ingest(customer_id: &str, k: u64) -> ObjectInput {
    let media = MEDIA_TYPES[(k % MEDIA_TYPES.len() as u64) as usize];
    ObjectInput {
        customer_id: Some(customer_id.to_owned()),
        media_type: Some(media.to_owned()),
        ..object(
            "cisco.base.pod",
            json!({"Context_Notes": NOTES[(k % NOTES.len() as u64) as usize]}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phone_style_keeps_the_digits_and_lookups_use_another_style() {
        for n in [0, 1, 42, 9_999_999, 10_000_000, 123_456_789] {
            let digits = phone_digits(n, 0);
            assert_eq!(digits.len(), 11);
            for style in 0..PHONE_STYLES {
                let written = format_phone(&digits, style);
                let back: String = written.chars().filter(char::is_ascii_digit).collect();
                assert_eq!(back, digits);
                for salt in 0..8 {
                    let other = other_format(&written, salt);
                    assert_ne!(other, written);
                    assert_eq!(
                        other
                            .chars()
                            .filter(char::is_ascii_digit)
                            .collect::<String>(),
                        digits
                    );
                }
            }
        }
        assert_ne!(phone_digits(1, 0), phone_digits(2, 0));
        assert_ne!(phone_digits(1, 0), phone_digits(10_000_001, 0));
    }
}
