//! How a client command ends: one exit status per kind of failure, from one table, and one
//! line on standard error saying what went wrong and what to do about it.

use std::fmt;
use std::process::ExitCode;

use contextd_client::Error as SdkError;

/// Every exit status of the client commands, with what it means (shown by `--help` too).
pub const EXIT_CODES: &[(u8, &str)] = &[
    (0, "success"),
    (1, "other failure: the server failed, rate limiting, an answer not understood"),
    (2, "usage: bad arguments, or a configuration that can't be used (no credential, a bad config file, URL or connectionData)"),
    (3, "not found"),
    (4, "conflict (any 409: a stale --version, a duplicate, a closed request, an entry in use)"),
    (5, "invalid input: validation, bad request, too large"),
    (6, "unauthorized or forbidden (the token, its role or its partition; a connectionData credential refused)"),
    (7, "timeout, or the server could not be reached"),
];

const OTHER: u8 = 1;
const USAGE: u8 = 2;
const NOT_FOUND: u8 = 3;
const CONFLICT: u8 = 4;
const INVALID: u8 = 5;
const DENIED: u8 = 6;
const UNREACHABLE: u8 = 7;

/// The long-help text listing [`EXIT_CODES`].
pub fn help() -> String {
    let mut text = String::from("Exit status of the client commands:\n");
    for (code, meaning) in EXIT_CODES {
        text.push_str(&format!("  {code}  {meaning}\n"));
    }
    text.push_str(
        "On failure, standard error gets one line: `error: <what went wrong>; <what to do>`.",
    );
    text
}

/// A command line or configuration that can't be used (exit status 2, like clap's own).
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Something named on the command line that isn't there, found out on this side (exit
/// status 3, like the server's not-found).
#[derive(Debug)]
pub struct Missing(pub String);

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Missing {}

/// A failure already explained in words of this side, with the SDK error whose kind sets the
/// exit status (its own message is not repeated).
#[derive(Debug)]
pub struct Explained {
    /// What went wrong and what to do.
    pub message: String,
    /// The SDK error behind it.
    pub cause: SdkError,
}

impl fmt::Display for Explained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Explained {}

/// `Err(Usage(..))` as an `anyhow` error.
pub fn usage<T>(message: impl Into<String>) -> anyhow::Result<T> {
    Err(Usage(message.into()).into())
}

/// The exit status of a finished command; prints the error line on failure.
pub fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", line(&e));
            ExitCode::from(code(&e))
        }
    }
}

/// The exit status for an error, by the SDK error's kind where there is one.
pub fn code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<Usage>()) {
        return USAGE;
    }
    if e.chain().any(|c| c.is::<Missing>()) {
        return NOT_FOUND;
    }
    match sdk_error(e) {
        Some(sdk) => sdk_code(sdk),
        None => OTHER,
    }
}

fn sdk_code(e: &SdkError) -> u8 {
    match e {
        SdkError::NotFound { .. } => NOT_FOUND,
        SdkError::Conflict { .. } => CONFLICT,
        SdkError::Validation { .. } | SdkError::BadRequest { .. } | SdkError::TooLarge { .. } => {
            INVALID
        }
        SdkError::Unauthorized { .. } | SdkError::Forbidden { .. } | SdkError::NotRegistered => {
            DENIED
        }
        SdkError::Timeout { .. } | SdkError::Unreachable { .. } => UNREACHABLE,
        SdkError::InvalidConnectionData(_) | SdkError::InvalidSettings(_) => USAGE,
        // RateLimited, Server, Protocol, and whatever the SDK adds later.
        _ => OTHER,
    }
}

fn sdk_error(e: &anyhow::Error) -> Option<&SdkError> {
    e.chain().find_map(|c| {
        c.downcast_ref::<SdkError>()
            .or_else(|| c.downcast_ref::<Explained>().map(|x| &x.cause))
    })
}

/// The error as one line: its contexts and causes joined by `: `, then the HTTP status when
/// the server answered one.
pub fn line(e: &anyhow::Error) -> String {
    let mut text = format!("{e:#}");
    if let Some(status) = sdk_error(e).and_then(http_status) {
        let reason = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or_default();
        text.push_str(&format!(" (HTTP {status} {reason})"));
    }
    text.replace(['\r', '\n'], " ").trim_end().to_owned()
}

/// The status of the answer an SDK error stands for, when it stands for one.
fn http_status(e: &SdkError) -> Option<u16> {
    match e {
        SdkError::Server { status, .. } => Some(*status),
        SdkError::TooLarge { .. } => Some(413),
        SdkError::Timeout { .. }
        | SdkError::Unreachable { .. }
        | SdkError::Protocol(_)
        | SdkError::InvalidConnectionData(_)
        | SdkError::InvalidSettings(_) => None,
        other => other.code().map(|c| c.status()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_status() {
        let cases = [
            (SdkError::NotFound { detail: "x".into() }, NOT_FOUND),
            (
                SdkError::Conflict {
                    code: contextd_client::proto::ErrorCode::InUse,
                    detail: "x".into(),
                    current_version: None,
                },
                CONFLICT,
            ),
            (
                SdkError::Validation {
                    detail: "x".into(),
                    errors: vec![],
                },
                INVALID,
            ),
            (SdkError::TooLarge { detail: "x".into() }, INVALID),
            (SdkError::Forbidden { detail: "x".into() }, DENIED),
            (SdkError::Unauthorized { detail: "x".into() }, DENIED),
            (SdkError::NotRegistered, DENIED),
            (
                SdkError::Timeout {
                    operation: "proxy.connect".into(),
                    after: std::time::Duration::from_millis(10),
                },
                UNREACHABLE,
            ),
            (SdkError::InvalidConnectionData("x".into()), USAGE),
            (
                SdkError::Unreachable {
                    url: "http://x".into(),
                    reason: "refused".into(),
                },
                UNREACHABLE,
            ),
            (SdkError::InvalidSettings("x".into()), USAGE),
            (SdkError::Protocol("x".into()), OTHER),
        ];
        for (error, expected) in cases {
            let kind = error.kind();
            let e = anyhow::Error::new(error).context("while doing something");
            assert_eq!(code(&e), expected, "{kind}");
        }
        assert_eq!(code(&anyhow::anyhow!("plain")), OTHER);
        let explained = anyhow::Error::new(Explained {
            message: "said here".into(),
            cause: SdkError::Unauthorized {
                detail: "not repeated".into(),
            },
        });
        assert_eq!(code(&explained), DENIED);
        assert_eq!(line(&explained), "said here (HTTP 401 Unauthorized)");
        assert_eq!(code(&Usage("bad".into()).into()), USAGE);
        assert!(EXIT_CODES.iter().map(|(c, _)| *c).eq(0..=7));
    }

    #[test]
    fn the_line_is_one_line_with_the_status() {
        let e = anyhow::Error::new(SdkError::NotFound {
            detail: "no such\ncustomer".into(),
        });
        let text = line(&e);
        assert!(!text.contains('\n'), "{text}");
        assert!(text.ends_with("(HTTP 404 Not Found)"), "{text}");
    }
}
