//! Logging: JSON lines on stdout for production (one object per event, with
//! the request span's fields: route, request id, tenant, user), or a
//! human-readable format for local development. `RUST_LOG` filters (default
//! `info`). Handlers never log tokens, passwords, hashes, note content or
//! email addresses; `Authorization` and `Cookie` are marked sensitive.

use anyhow::bail;
use tracing_subscriber::{EnvFilter, fmt, fmt::writer::BoxMakeWriter, prelude::*};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (Cloud Logging and other collectors).
    Json,
    /// Coloured, multi-field lines for a terminal.
    Pretty,
}

impl LogFormat {
    /// `LOG_FORMAT` (`json` or `pretty`), or `default` when unset.
    pub fn from_env(default: Self) -> anyhow::Result<Self> {
        match std::env::var("LOG_FORMAT")
            .ok()
            .filter(|value| !value.is_empty())
            .as_deref()
        {
            None => Ok(default),
            Some("json") => Ok(Self::Json),
            Some("pretty") => Ok(Self::Pretty),
            Some(other) => bail!("LOG_FORMAT must be `json` or `pretty`, got {other:?}"),
        }
    }
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    /// The service's logs.
    Stdout,
    /// Commands whose stdout is their result (the operator commands print JSON).
    Stderr,
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(format: LogFormat, output: LogOutput) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let writer = match output {
        LogOutput::Stdout => BoxMakeWriter::new(std::io::stdout),
        LogOutput::Stderr => BoxMakeWriter::new(std::io::stderr),
    };
    let installed = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .with_writer(writer)
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                fmt::layer()
                    .with_ansi(output_is_terminal(output))
                    .with_writer(writer)
                    .compact(),
            )
            .try_init(),
    };
    if installed.is_err() {
        bail!("a global tracing subscriber was already installed");
    }
    Ok(())
}

/// Colours only for a person at a terminal, never into a pipe or a file.
fn output_is_terminal(output: LogOutput) -> bool {
    use std::io::IsTerminal;
    match output {
        LogOutput::Stdout => std::io::stdout().is_terminal(),
        LogOutput::Stderr => std::io::stderr().is_terminal(),
    }
}
