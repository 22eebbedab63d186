//! Progress bars for hashing a file and for transfers: indicatif computes
//! and formats them (bytes, rate, time left); they are drawn in the
//! console's status rows above the prompt ([`StatusRows`]), never straight
//! onto the terminal, so they do not garble the line being typed or the
//! lines printed above it. Off a terminal there is no bar at all.
//!
//! The bridge is a [`TermLike`] that keeps the one line indicatif draws and
//! hands it to its status row at each flush. Owns no transfer: callers
//! count the bytes.

use std::fmt;
use std::io;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

use super::console::StatusRows;
use super::i18n::{self, Lang};

/// How many times a second a bar is redrawn at most.
const REFRESH_HZ: u8 = 8;

/// One progress bar, or nothing when not on a terminal. Dropping it removes
/// its row.
pub struct TransferBar {
    /// The bar; hidden off a terminal.
    bar: ProgressBar,
}

impl TransferBar {
    /// A bar for `total` bytes labelled `label` (already safe to print) in
    /// a new status row of `rows`; hidden when `rows` is `None`.
    pub fn new(rows: Option<&StatusRows>, total: u64, label: &str, lang: Lang) -> TransferBar {
        let Some(rows) = rows else {
            return TransferBar::hidden();
        };
        let row = RowTerm {
            rows: rows.clone(),
            row: rows.row(),
            line: Mutex::new(String::new()),
        };
        let target = ProgressDrawTarget::term_like_with_hz(Box::new(row), REFRESH_HZ);
        let bar = ProgressBar::with_draw_target(Some(total), target);
        if let Ok(style) = ProgressStyle::with_template(i18n::bar_template(lang)) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_string());
        TransferBar { bar }
    }

    /// A bar that draws nothing.
    pub fn hidden() -> TransferBar {
        TransferBar {
            bar: ProgressBar::hidden(),
        }
    }

    /// `bytes` more are done.
    pub fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
}

impl Drop for TransferBar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// What indicatif draws on: one status row.
struct RowTerm {
    /// Where the row is drawn.
    rows: StatusRows,
    /// Which row.
    row: u64,
    /// The line being drawn since the last `\r` or clear.
    line: Mutex<String>,
}

impl fmt::Debug for RowTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowTerm")
            .field("row", &self.row)
            .finish_non_exhaustive()
    }
}

impl RowTerm {
    fn with_line(&self, change: impl FnOnce(&mut String)) {
        let mut line = self.line.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut line);
    }
}

impl TermLike for RowTerm {
    fn width(&self) -> u16 {
        self.rows.width().saturating_sub(1).max(20)
    }

    fn height(&self) -> u16 {
        1
    }

    fn move_cursor_up(&self, _: usize) -> io::Result<()> {
        Ok(())
    }

    fn move_cursor_down(&self, _: usize) -> io::Result<()> {
        Ok(())
    }

    fn move_cursor_right(&self, _: usize) -> io::Result<()> {
        Ok(())
    }

    fn move_cursor_left(&self, _: usize) -> io::Result<()> {
        Ok(())
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        self.with_line(|line| s.clone_into(line));
        Ok(())
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        self.with_line(|line| match s.rsplit_once('\r') {
            Some((_, after)) => after.clone_into(line),
            None => line.push_str(s),
        });
        Ok(())
    }

    fn clear_line(&self) -> io::Result<()> {
        self.with_line(String::clear);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        let text = {
            let line = self.line.lock().unwrap_or_else(|p| p.into_inner());
            let text = line.trim_end();
            (!text.is_empty()).then(|| text.to_string())
        };
        self.rows.set(self.row, text);
        Ok(())
    }
}

impl Drop for RowTerm {
    fn drop(&mut self) {
        self.rows.set(self.row, None);
    }
}
