//! Log lines on stderr, set up once per process by the binary.

use std::io::IsTerminal;

use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber: log lines filtered by `VIGIL_LOG`
/// (default `info`) and, with a tracer, vigil's spans exported as traces
/// (whatever `VIGIL_LOG` says). Called once, before anything logs.
///
/// Text is coloured only on a terminal, and never with `NO_COLOR` set
/// (no-color.org): escape codes in a file or a log shipper are noise.
pub fn init(format: LogFormat, tracer: Option<opentelemetry_sdk::trace::Tracer>) {
    let directives = filter_directives(std::env::var("VIGIL_LOG").ok().as_deref());
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("VIGIL_LOG={directives:?} is not a valid filter ({e}); logging at info");
        tracing_subscriber::EnvFilter::new("info")
    });
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    let traces = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("vigil", tracing::Level::INFO),
            )
    });
    tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(traces)
        .init();
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// `VIGIL_LOG` as the filter means it: a bare level is vigil's own
/// (`debug` shows vigil's debug lines, not h2's and hyper's frame by
/// frame), dependencies stay at `info` unless named (`debug,h2=debug`),
/// and a level quieter than `info` quiets everything.
pub fn filter_directives(vigil_log: Option<&str>) -> String {
    let Some(spec) = vigil_log.map(str::trim).filter(|s| !s.is_empty()) else {
        return "info".to_owned();
    };
    let mut global = "info";
    let mut directives = Vec::new();
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive.to_ascii_lowercase();
        match LEVELS.iter().position(|known| *known == level) {
            Some(rank) => {
                if rank < 3 {
                    global = LEVELS[rank];
                }
                directives.push(format!("vigil={level}"));
            }
            None => directives.push(directive.to_owned()),
        }
    }
    std::iter::once(global.to_owned())
        .chain(directives)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::filter_directives;

    #[test]
    fn a_bare_level_is_vigils_own() {
        assert_eq!(filter_directives(None), "info");
        assert_eq!(filter_directives(Some("debug")), "info,vigil=debug");
        assert_eq!(
            filter_directives(Some("debug,h2=debug")),
            "info,vigil=debug,h2=debug"
        );
        assert_eq!(filter_directives(Some("warn")), "warn,vigil=warn");
        assert_eq!(
            filter_directives(Some("vigil::audit=trace")),
            "info,vigil::audit=trace"
        );
    }
}
