//! What a registration link asks for, validated from its query (or the form fields that carry
//! it along): the callback URL and the app type (registration) or client id (deregistration).

use std::borrow::Cow;

use contextd_proto::connectors::AppType;
use url::Url;
use uuid::Uuid;

/// Longest accepted callbackUrl, in characters.
pub const MAX_CALLBACK_CHARS: usize = 2048;
/// Longest reflected piece of a refused value, in characters.
const SHOWN_CHARS: usize = 200;

/// The two flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `GET /register`: create a connector.
    Register,
    /// `GET /deregister`: revoke one.
    Deregister,
}

impl Kind {
    /// Its page, below the service's base path.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Register => "/register",
            Kind::Deregister => "/deregister",
        }
    }

    /// Its name in forms and in approval tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::Deregister => "deregister",
        }
    }

    /// From its name.
    pub fn parse(text: &str) -> Option<Self> {
        [Kind::Register, Kind::Deregister]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// What the flow acts on besides the callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The kind of component to register.
    AppType(AppType),
    /// The client id of the connector to revoke.
    ClientId(Uuid),
}

/// A validated registration or deregistration request.
#[derive(Clone, Debug)]
pub struct Flow {
    /// Where the browser goes back to.
    pub callback: Url,
    /// App type or client id.
    pub target: Target,
}

/// Query or form parameters; a repeated name is refused rather than guessed at.
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` text (a query string or a form body).
    pub fn parse(text: &[u8]) -> Self {
        Self(
            url::form_urlencoded::parse(text)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The value of `name` (an empty value counts as absent); `Err` if it is given twice.
    pub fn get(&self, name: &str) -> Result<Option<&str>, String> {
        let mut values = self.0.iter().filter(|(k, _)| k == name);
        let first = values.next().map(|(_, v)| v.as_str());
        if values.next().is_some() {
            return Err(format!("{name} is given more than once."));
        }
        Ok(first.filter(|v| !v.is_empty()))
    }
}

/// `text` cut to a length fit to show back.
pub fn shown(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((at, _)) => Cow::Owned(format!("{}…", &text[..at])),
        None => Cow::Borrowed(text),
    }
}

/// A callbackUrl: an absolute http or https URL with a host and no user name or password.
pub fn callback_url(raw: Option<&str>) -> Result<Url, String> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Err(
            "callbackUrl is missing: the link must say where to return to, as an \
                    absolute http or https URL."
                .into(),
        );
    };
    if raw.chars().nth(MAX_CALLBACK_CHARS).is_some() {
        return Err(format!(
            "callbackUrl is longer than {MAX_CALLBACK_CHARS} characters."
        ));
    }
    let not_absolute = || {
        format!(
            "callbackUrl must be an absolute http or https URL (such as \
             https://component.example.com/contextservice); “{}” is not.",
            shown(raw)
        )
    };
    let url = Url::parse(raw).map_err(|_| not_absolute())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(not_absolute());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("callbackUrl must not carry a user name or password.".into());
    }
    Ok(url)
}

fn app_type(raw: Option<&str>) -> Result<AppType, String> {
    match raw {
        None => Ok(AppType::Custom),
        Some(raw) => raw.parse().map_err(|_| {
            format!(
                "appType must be one of voice, desktop, chat, email or custom; “{}” is not.",
                shown(raw)
            )
        }),
    }
}

fn client_id(raw: Option<&str>) -> Result<Uuid, String> {
    let Some(raw) = raw else {
        return Err("clientId is missing: the link must name the connector's client id.".into());
    };
    Uuid::try_parse(raw.trim()).map_err(|_| {
        format!(
            "clientId must be a connector's client id (a UUID); “{}” is not.",
            shown(raw)
        )
    })
}

impl Flow {
    /// Validates the parameters of `kind`: every problem found, one sentence each.
    pub fn parse(kind: Kind, params: &Params) -> Result<Self, Vec<String>> {
        let callback = params.get("callbackUrl").and_then(callback_url);
        let target = match kind {
            Kind::Register => params
                .get("appType")
                .and_then(app_type)
                .map(Target::AppType),
            Kind::Deregister => params
                .get("clientId")
                .and_then(client_id)
                .map(Target::ClientId),
        };
        match (callback, target) {
            (Ok(callback), Ok(target)) => Ok(Self { callback, target }),
            (callback, target) => Err([callback.err(), target.err()]
                .into_iter()
                .flatten()
                .collect()),
        }
    }

    /// Registration or deregistration.
    pub fn kind(&self) -> Kind {
        match self.target {
            Target::AppType(_) => Kind::Register,
            Target::ClientId(_) => Kind::Deregister,
        }
    }

    /// The parameters that carry the flow: `callbackUrl`, then `appType` or `clientId`.
    pub fn params(&self) -> [(&'static str, String); 2] {
        let target = match &self.target {
            Target::AppType(t) => ("appType", t.as_str().to_owned()),
            Target::ClientId(id) => ("clientId", id.to_string()),
        };
        [("callbackUrl", self.callback.as_str().to_owned()), target]
    }

    /// The link that starts the flow (again): `{base}/register?callbackUrl=…&appType=…`.
    pub fn start_url(&self, base: &str) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.params() {
            query.append_pair(name, &value);
        }
        format!("{base}{}?{}", self.kind().path(), query.finish())
    }

    /// The callback with `name=value` added to its own query parameters.
    pub fn callback_with(&self, name: &str, value: &str) -> Url {
        let mut url = self.callback.clone();
        url.query_pairs_mut().append_pair(name, value);
        url
    }

    /// The callback's origin (`https://component.example:8443`).
    pub fn origin(&self) -> String {
        self.callback.origin().ascii_serialization()
    }

    /// The callback's host and port, as a connector name shows it.
    pub fn host(&self) -> String {
        let host = self.callback.host_str().unwrap_or_default();
        match self.callback.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kind: Kind, query: &str) -> Result<Flow, Vec<String>> {
        Flow::parse(kind, &Params::parse(query.as_bytes()))
    }

    #[test]
    fn the_callback_keeps_its_query_and_fragment_and_the_app_type_defaults_to_custom() {
        let flow = parse(
            Kind::Register,
            "callbackUrl=https%3A%2F%2Fc.example%3A8443%2Fcb%3Fx%3D1%23top",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(flow.target, Target::AppType(AppType::Custom));
        assert_eq!(flow.origin(), "https://c.example:8443");
        assert_eq!(flow.host(), "c.example:8443");
        assert_eq!(
            flow.callback_with("connectionData", "a+b/c=").as_str(),
            "https://c.example:8443/cb?x=1&connectionData=a%2Bb%2Fc%3D#top"
        );
        assert_eq!(
            flow.start_url("/ctx"),
            "/ctx/register?callbackUrl=https%3A%2F%2Fc.example%3A8443%2Fcb%3Fx%3D1%23top&appType=custom"
        );
    }

    #[test]
    fn every_problem_is_named() {
        let problems = parse(
            Kind::Deregister,
            "callbackUrl=data%3Atext%2Fhtml%2Cx&clientId=42",
        )
        .err()
        .unwrap_or_default();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("absolute http or https"));
        assert!(problems[1].contains("clientId"));
        let twice = parse(
            Kind::Register,
            "callbackUrl=http%3A%2F%2Fa&callbackUrl=http%3A%2F%2Fb",
        );
        assert!(twice.is_err_and(|p| p[0].contains("more than once")));
        let long = format!(
            "callbackUrl=http%3A%2F%2Fa%2F{}",
            "a".repeat(MAX_CALLBACK_CHARS)
        );
        assert!(parse(Kind::Register, &long).is_err_and(|p| p[0].contains("longer than")));
        assert_eq!(shown(&"é".repeat(300)).chars().count(), SHOWN_CHARS + 1);
    }
}
