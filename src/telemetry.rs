//! Logging, and (with the `otel` cargo feature) OpenTelemetry export.
//!
//! Logs go to stderr (with `--stdio`, stdout carries the MCP protocol),
//! filtered by `JITGATE_LOG`. Built with `--features otel` and run with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set (e.g. `http://127.0.0.1:4318`), every
//! span is also exported over OTLP/HTTP: one `call` span per tool call,
//! with the agent, tool, session and decision as attributes, and the
//! decision events inside it.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Flushes exported spans when dropped.
pub struct Guard {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("warning: OpenTelemetry export did not flush: {e}");
            }
        }
    }
}

/// Text cut to at most `max` characters, saying how many were left out, for
/// messages shown to agents and people (a downstream error, a question to
/// the end user).
pub fn cut(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_owned();
    }
    let head: String = s.chars().take(max).collect();
    format!("{head}… ({} more characters)", n - max)
}

/// Does `c` end a line or act unseen? Control characters (Unicode Cc: a
/// newline, NEL U+0085, terminal escapes), the line and paragraph
/// separators (Zl U+2028, Zp U+2029) and format characters (Cf: bidi
/// controls that reorder what follows, zero-width characters, the soft
/// hyphen, tags). A reader whose client breaks lines on any of these, or
/// who cannot see them, reads something other than what was written: a
/// forged line, or text in another order.
pub fn is_unseen(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || is_format(c)
}

/// Unicode general category Cf (format characters), as of Unicode 16.
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'
            | '\u{600}'..='\u{605}'
            | '\u{61C}'
            | '\u{6DD}'
            | '\u{70F}'
            | '\u{890}'..='\u{891}'
            | '\u{8E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// `s` with every [unseen](is_unseen) character written as a visible
/// escape (`\n`, `\u{2028}`, `\u{202e}`), for text shown to people.
pub fn escape_unseen(s: &str) -> String {
    Clean(s).to_string()
}

/// Text from agents, servers or files as it goes into a log line: every
/// [unseen](is_unseen) character (a newline or U+2028 that would start a
/// forged log line, terminal escape sequences, bidi controls) is written
/// escaped.
pub struct Clean<'a>(pub &'a str);

impl std::fmt::Display for Clean<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        for c in self.0.chars() {
            if is_unseen(c) {
                for e in c.escape_default() {
                    f.write_char(e)?;
                }
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// The usable directives of `JITGATE_LOG`, and those refused with why. A
/// bare word that is not a level would be read as a module name and silently
/// match nothing (`JITGATE_LOG=verbose`), so it is refused, loudly.
fn checked_directives(env: Option<&str>) -> (Option<String>, Vec<(String, String)>) {
    const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
    let Some(env) = env else { return (None, Vec::new()) };
    let mut kept = Vec::new();
    let mut rejected = Vec::new();
    for d in env.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !d.contains('=') && !d.contains("::") && !d.contains('[');
        if bare && !LEVELS.contains(&d.to_ascii_lowercase().as_str()) && !KNOWN_TARGETS.contains(&d) {
            rejected.push((d.to_owned(), "not a level or a module".to_owned()));
        } else if d.parse::<tracing_subscriber::filter::Directive>().is_err() {
            rejected.push((d.to_owned(), "not a valid filter".to_owned()));
        } else {
            kept.push(d);
        }
    }
    ((!kept.is_empty()).then(|| kept.join(",")), rejected)
}

/// Crates whose logs a person may want on their own (bare names allowed).
const KNOWN_TARGETS: &[&str] = &["jitgate", "rmcp", "hyper", "tower_http", "cedar_policy", "rusqlite", "postgres", "tokio_postgres", "r2d2"];

/// The filter directives for a `JITGATE_LOG` value. rmcp's own logs name
/// MCP session ids (bearer-like secrets of handshake-era sessions) and
/// whole messages at info and below, so they stay at warn unless the
/// operator names rmcp explicitly.
fn log_directives(env: Option<&str>, default_level: &str) -> String {
    match env.map(str::trim).filter(|v| !v.is_empty()) {
        None => format!("{default_level},rmcp=warn"),
        Some(v) if v.contains("rmcp") => v.to_owned(),
        Some(v) => format!("{v},rmcp=warn"),
    }
}

/// The level logged when `JITGATE_LOG` sets none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `jitgate serve --listen`: the log is the gateway's running record.
    Info,
    /// One-shot commands, and `serve --stdio`, whose stderr the MCP client
    /// that spawned it shows its own user.
    Warn,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
        }
    }
}

/// Install the subscriber. Without `JITGATE_LOG`, a gateway serving HTTP
/// logs at `info`; a gateway serving stdio and a one-shot command at
/// `warn`: what a command did is its output, and an operator's
/// `approvals approve` or `agents release` is no warning (the audit trail
/// records it either way).
pub fn init(default_level: Level) -> Guard {
    let raw = std::env::var("JITGATE_LOG").ok();
    let (directives, rejected) = checked_directives(raw.as_deref());
    let filter = tracing_subscriber::EnvFilter::new(log_directives(directives.as_deref(), default_level.as_str()));
    // Colour only for a person at a terminal; a file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let json = match std::env::var("JITGATE_LOG_FORMAT").ok().as_deref().map(str::trim) {
        None | Some("" | "text") => false,
        Some("json") => true,
        Some(other) => {
            eprintln!("warning: JITGATE_LOG_FORMAT={other:?} is not a log format; use \"text\" (default) or \"json\"");
            false
        }
    };
    // One JSON object per line for log collectors; text otherwise.
    let text_layer = (!json).then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi));
    let json_layer = json.then(|| tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_ansi(false));
    for (directive, why) in rejected {
        eprintln!("warning: JITGATE_LOG: `{directive}` ignored ({why}); use levels (error, warn, info, debug, trace) and module filters, e.g. JITGATE_LOG=debug or JITGATE_LOG=info,jitgate::gateway=debug");
    }
    let registry = tracing_subscriber::registry().with(filter).with(text_layer).with(json_layer);
    #[cfg(feature = "otel")]
    {
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
            match otel_provider() {
                Ok(provider) => {
                    use opentelemetry::trace::TracerProvider as _;
                    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("jitgate"));
                    registry.with(layer).init();
                    return Guard { provider: Some(provider) };
                }
                Err(e) => eprintln!("warning: OpenTelemetry export disabled: {e}"),
            }
        }
        registry.init();
        Guard { provider: None }
    }
    #[cfg(not(feature = "otel"))]
    {
        registry.init();
        Guard {}
    }
}

#[cfg(feature = "otel")]
fn otel_provider() -> Result<opentelemetry_sdk::trace::SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build().map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name("jitgate").build();
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder().with_resource(resource).with_batch_exporter(exporter).build())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_log_filter_that_would_match_nothing_is_refused_loudly() {
        let (kept, rejected) = super::checked_directives(Some("verbose"));
        assert_eq!((kept, rejected.len()), (None, 1));
        let (kept, rejected) = super::checked_directives(Some("debug,jitgate::gateway=trace,lots"));
        assert_eq!(kept.as_deref(), Some("debug,jitgate::gateway=trace"));
        assert_eq!(rejected[0].0, "lots");
        let (kept, rejected) = super::checked_directives(Some("jitgate=debug,info"));
        assert_eq!((kept.as_deref(), rejected.len()), (Some("jitgate=debug,info"), 0));
        assert_eq!(super::checked_directives(Some("DEBUG")).1.len(), 0);
        assert_eq!(super::checked_directives(Some("jitgate=loud")).1.len(), 1);
    }

    #[test]
    fn control_characters_are_escaped_in_log_text() {
        let forged = "read_note\n2026-11-25T10:00:00Z  WARN BREAK-GLASS GRANTED\u{1b}[31m";
        let clean = super::Clean(forged).to_string();
        assert!(!clean.contains('\n') && !clean.contains('\u{1b}'), "{clean}");
        assert!(clean.contains("read_note\\n2026"), "{clean}");
        // Line and paragraph separators, NEL and bidi controls too.
        let forged = "read_note\u{2028}WARN x\u{2029}y\u{85}z\u{202E}drowkcab\u{2066}\u{FEFF}";
        let clean = super::Clean(forged).to_string();
        assert_eq!(clean, "read_note\\u{2028}WARN x\\u{2029}y\\u{85}z\\u{202e}drowkcab\\u{2066}\\u{feff}");
        // Ordinary text, accents and other scripts are left as they are.
        assert_eq!(super::Clean("café — naïve 日本語 ok").to_string(), "café — naïve 日本語 ok");
    }

    #[test]
    fn rmcp_stays_at_warn_unless_named() {
        assert_eq!(super::log_directives(None, "info"), "info,rmcp=warn");
        assert_eq!(super::log_directives(None, "warn"), "warn,rmcp=warn");
        assert_eq!(super::log_directives(Some("debug"), "warn"), "debug,rmcp=warn");
        assert_eq!(super::log_directives(Some("debug,rmcp=debug"), "info"), "debug,rmcp=debug");
    }
}
