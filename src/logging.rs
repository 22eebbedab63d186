//! Log setup for the binaries: `env_logger` on stderr (`RUST_LOG`, default
//! `info`), and optionally every error also appended to a file, as the
//! original lab's REST server kept its error log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// env_logger, plus a copy of error records in a file.
struct Logger {
    /// Formats and filters for stderr.
    stderr: env_logger::Logger,
    /// `--log-file`, for errors only.
    errors: Option<Mutex<File>>,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.stderr.enabled(metadata) || (metadata.level() == Level::Error && self.errors.is_some())
    }

    fn log(&self, record: &Record<'_>) {
        if self.stderr.matches(record) {
            self.stderr.log(record);
        }
        if record.level() == Level::Error
            && let Some(file) = &self.errors
        {
            let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
            let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
            // A failing log file must not take the server down.
            let _ = writeln!(file, "{now} ERROR {}: {}", record.target(), record.args());
        }
    }

    fn flush(&self) {
        self.stderr.flush();
        if let Some(file) = &self.errors {
            let _ = file.lock().unwrap_or_else(|p| p.into_inner()).flush();
        }
    }
}

/// Installs the logger. `default_level` applies when `RUST_LOG` is unset.
///
/// # Errors
/// When `error_file` cannot be opened for appending.
pub fn init(default_level: &str, error_file: Option<&Path>) -> std::io::Result<()> {
    let stderr = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level)).build();
    let errors = match error_file {
        Some(path) => Some(Mutex::new(OpenOptions::new().create(true).append(true).open(path)?)),
        None => None,
    };
    let max = if errors.is_some() {
        stderr.filter().max(LevelFilter::Error)
    } else {
        stderr.filter()
    };
    // Fails only if a logger is already set (e.g. twice in one test binary);
    // the first one stays in charge then.
    if log::set_boxed_logger(Box::new(Logger { stderr, errors })).is_ok() {
        log::set_max_level(max);
    }
    Ok(())
}
