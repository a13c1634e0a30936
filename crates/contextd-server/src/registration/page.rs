//! The pages of the browser registration: plain HTML, no script, every reflected value
//! escaped, served with a strict Content-Security-Policy and never cached.

use std::fmt::Write as _;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use contextd_proto::connectors::ConnectorView;

use super::flow::{Flow, Kind};

/// The policy of every page; approval pages add the callback's origin to `form-action`,
/// because browsers check the redirect that follows a form submission against it.
const CSP: &str = "default-src 'none'; style-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// `text` safe inside HTML text and double- or single-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Adds the headers every registration response carries (unless a page set its own policy).
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed: [(HeaderName, &str); 5] = [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ];
    for (name, value) in fixed {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

/// A page on its way out.
pub struct Page {
    status: StatusCode,
    title: String,
    body: String,
    /// The origin an approval form's redirect goes to.
    form_origin: Option<String>,
    base: String,
    headers: HeaderMap,
}

impl Page {
    fn new(base: &str, status: StatusCode, title: &str, body: String) -> Self {
        Self {
            status,
            title: title.to_owned(),
            body,
            form_origin: None,
            base: base.to_owned(),
            headers: HeaderMap::new(),
        }
    }

    /// With the `Retry-After` of a refusal, if it has one.
    pub fn with_retry_after(mut self, retry_after: Option<HeaderValue>) -> Self {
        if let Some(v) = retry_after {
            self.headers.insert(header::RETRY_AFTER, v);
        }
        self
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let html = format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title} · contextd</title>\n\
             <link rel=\"stylesheet\" href=\"{base}/register/style.css\">\n</head>\n<body>\n\
             <main>\n<h1>{title}</h1>\n{body}</main>\n</body>\n</html>\n",
            title = escape(&self.title),
            base = escape(&self.base),
            body = self.body,
        );
        let mut response = (self.status, html).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        if let Some(origin) = self.form_origin {
            let csp = CSP.replace(
                "form-action 'self'",
                &format!("form-action 'self' {origin}"),
            );
            if let Ok(v) = HeaderValue::from_str(&csp) {
                headers.insert(header::CONTENT_SECURITY_POLICY, v);
            }
        }
        headers.extend(self.headers);
        response
    }
}

/// A 303 to `location`.
pub fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => failure(
            "",
            StatusCode::INTERNAL_SERVER_ERROR,
            "The redirect is invalid.",
        )
        .into_response(),
    }
}

fn hidden(out: &mut String, name: &str, value: &str) {
    let _ = writeln!(
        out,
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        escape(name),
        escape(value)
    );
}

fn cancel_link(flow: &Flow) -> String {
    format!(
        "<a class=\"cancel\" href=\"{}\">Cancel</a>",
        escape(flow.callback_with("error", "access_denied").as_str())
    )
}

fn what(flow: &Flow) -> String {
    let origin = format!(
        "<strong class=\"origin\">{}</strong>",
        escape(&flow.origin())
    );
    match flow.kind() {
        Kind::Register => format!("The component at {origin} asks to be registered."),
        Kind::Deregister => format!("The component at {origin} asks to be deregistered."),
    }
}

/// 400: the link itself is wrong; nothing to go back to.
pub fn invalid(base: &str, problems: &[String]) -> Page {
    let mut body = String::from("<ul class=\"error\">\n");
    for p in problems {
        let _ = writeln!(body, "<li>{}</li>", escape(p));
    }
    body.push_str("</ul>\n<p>Ask the component's administrator for a new registration link.</p>\n");
    Page::new(
        base,
        StatusCode::BAD_REQUEST,
        "This registration link is not valid",
        body,
    )
}

/// What a sign-in form was filled with, shown again after a refusal (never the password).
#[derive(Default)]
pub struct SignInValues<'a> {
    /// Organization name.
    pub org: &'a str,
    /// User name.
    pub name: &'a str,
}

fn sign_in_form(base: &str, flow: &Flow, values: &SignInValues<'_>) -> String {
    let mut form = format!(
        "<form method=\"post\" action=\"{}/register/sign-in\">\n",
        escape(base)
    );
    hidden(&mut form, "flow", flow.kind().as_str());
    for (name, value) in flow.params() {
        hidden(&mut form, name, &value);
    }
    let _ = write!(
        form,
        "<label>Organization <input name=\"org\" required autocomplete=\"organization\" value=\"{}\"></label>\n\
         <label>User name <input name=\"name\" required autocomplete=\"username\" value=\"{}\"></label>\n\
         <label>Password <input name=\"password\" type=\"password\" required autocomplete=\"current-password\"></label>\n\
         <p class=\"actions\"><button type=\"submit\">Sign in</button> {}</p>\n</form>\n",
        escape(values.org),
        escape(values.name),
        cancel_link(flow),
    );
    form
}

/// The sign-in page (200), or it again after a refusal with `error` and its status.
pub fn sign_in(
    base: &str,
    flow: &Flow,
    values: &SignInValues<'_>,
    error: Option<(StatusCode, &str)>,
) -> Page {
    let mut body = format!("<p>{}</p>\n", what(flow));
    body.push_str(
        "<p>Sign in as an administrator of your organization's production partition to \
         approve it.</p>\n",
    );
    if let Some((_, message)) = error {
        let _ = writeln!(body, "<p class=\"error\">{}</p>", escape(message));
    }
    body.push_str(&sign_in_form(base, flow, values));
    let status = error.map_or(StatusCode::OK, |(status, _)| status);
    Page::new(base, status, "Sign in to approve", body)
}

/// 403: signed in, but not as a production admin; the sign-in form again.
pub fn needs_production_admin(base: &str, flow: &Flow, signed_in_as: &str) -> Page {
    let body = format!(
        "<p class=\"error\">A production administrator is needed. You are signed in as {}.</p>\n\
         <p>Connectors carry production credentials: only an administrator of the production \
         partition can approve this. {}</p>\n{}",
        escape(signed_in_as),
        what(flow),
        sign_in_form(base, flow, &SignInValues::default()),
    );
    Page::new(
        base,
        StatusCode::FORBIDDEN,
        "A production administrator is needed",
        body,
    )
}

fn expires_in(ttl: Duration) -> String {
    match ttl.as_secs() {
        s if s >= 120 => format!("{} minutes", s / 60),
        1 => "1 second".to_owned(),
        s => format!("{s} seconds"),
    }
}

fn approval_form(base: &str, flow: &Flow, token: &str, button: &str, ttl: Duration) -> String {
    let mut form = format!(
        "<form method=\"post\" action=\"{}{}/approve\">\n",
        escape(base),
        flow.kind().path()
    );
    for (name, value) in flow.params() {
        hidden(&mut form, name, &value);
    }
    hidden(&mut form, "approval", token);
    let _ = write!(
        form,
        "<p class=\"actions\"><button type=\"submit\">{}</button> {}</p>\n</form>\n\
         <p class=\"note\">This page is valid for {} and only in this browser session.</p>\n",
        escape(button),
        cancel_link(flow),
        expires_in(ttl),
    );
    form
}

fn row(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", escape(label), escape(value));
}

/// 200: what will be registered, and the approval form.
pub fn approve_register(
    base: &str,
    flow: &Flow,
    org: &str,
    app_type: &str,
    token: &str,
    ttl: Duration,
) -> Page {
    let mut body = format!(
        "<p class=\"origin\">{}</p>\n<p>asks to connect to contextd as a <strong>{}</strong> \
         component of the organization <strong>{}</strong>. Approving creates a connector \
         and sends its credentials (production and lab) to this address:</p>\n<dl>\n",
        escape(&flow.origin()),
        escape(app_type),
        escape(org),
    );
    row(&mut body, "Returns to", flow.callback.as_str());
    row(&mut body, "App type", app_type);
    row(&mut body, "Organization", org);
    body.push_str("</dl>\n");
    body.push_str(&approval_form(base, flow, token, "Approve", ttl));
    let mut page = Page::new(base, StatusCode::OK, "Register this component?", body);
    page.form_origin = Some(flow.origin());
    page
}

/// 200: the connector that will be revoked, and the approval form.
pub fn approve_deregister(
    base: &str,
    flow: &Flow,
    org: &str,
    connector: &ConnectorView,
    token: &str,
    ttl: Duration,
) -> Page {
    let mut body = format!(
        "<p class=\"origin\">{}</p>\n<p>asks to be deregistered. Revoking stops its \
         credentials and tokens at once.</p>\n<dl>\n",
        escape(&flow.origin()),
    );
    row(&mut body, "Connector", &connector.name);
    row(&mut body, "App type", connector.app_type.as_str());
    row(&mut body, "Organization", org);
    row(&mut body, "Returns to", flow.callback.as_str());
    body.push_str("</dl>\n");
    body.push_str(&approval_form(base, flow, token, "Revoke", ttl));
    let title = format!("Revoke connector {}?", connector.name);
    let mut page = Page::new(base, StatusCode::OK, &title, body);
    page.form_origin = Some(flow.origin());
    page
}

/// 403: the approval is expired, of another session, or for something else.
pub fn expired(base: &str, flow: &Flow) -> Page {
    let body = format!(
        "<p class=\"error\">This approval expired or is not yours; start again.</p>\n\
         <p><a href=\"{}\">Start again</a> {}</p>\n",
        escape(&flow.start_url(base)),
        cancel_link(flow),
    );
    Page::new(
        base,
        StatusCode::FORBIDDEN,
        "This approval expired or is not yours",
        body,
    )
}

/// 403: a form sent from another site.
pub fn cross_site(base: &str) -> Page {
    let body = "<p class=\"error\">This form was sent from another site and was refused. \
                Open the registration link again.</p>\n"
        .to_owned();
    Page::new(base, StatusCode::FORBIDDEN, "Refused", body)
}

/// 404: no connector of the admin's organization has the client id.
pub fn unknown_connector(base: &str, flow: &Flow, client_id: &str) -> Page {
    let body = format!(
        "<p class=\"error\">No connector of your organization has the client id {}.</p>\n\
         <p><a href=\"{}\">Return to the component</a></p>\n",
        escape(client_id),
        escape(flow.callback_with("error", "not_found").as_str()),
    );
    Page::new(base, StatusCode::NOT_FOUND, "Unknown connector", body)
}

/// Any other refusal or failure, with a message fit for anyone to read.
pub fn failure(base: &str, status: StatusCode, message: &str) -> Page {
    let body = format!("<p class=\"error\">{}</p>\n", escape(message));
    let title = status.canonical_reason().unwrap_or("Error");
    Page::new(base, status, title, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_text_and_both_quotes() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(escape("plain – ünïcode"), "plain – ünïcode");
        assert_eq!(escape("&amp;"), "&amp;amp;");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn ttl_reads_naturally() {
        assert_eq!(expires_in(Duration::from_secs(600)), "10 minutes");
        assert_eq!(expires_in(Duration::from_secs(1)), "1 second");
        assert_eq!(expires_in(Duration::from_secs(90)), "90 seconds");
    }
}
