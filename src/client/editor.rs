//! The line editor of the terminal client, as a pure state machine: key
//! events in, a buffer and a cursor, and the one row of text that shows
//! them. No I/O: [`super::console`] feeds it the keys read from the terminal
//! and writes what [`LineEditor::view`] returns, so every key binding and
//! every rendering rule can be tested without a terminal.
//!
//! Keys: printable characters insert; Backspace (Ctrl-H) and Delete delete;
//! Left/Right (Ctrl-B/Ctrl-F) and Home/End (Ctrl-A/Ctrl-E) move; Ctrl-U and
//! Ctrl-K delete to the start and to the end; Ctrl-W deletes the word before
//! the cursor; Up/Down (Ctrl-P/Ctrl-N) walk the history of chat lines (never
//! of answers or passwords); Enter (or Ctrl-J, what a terminal's Enter
//! becomes when typed before raw mode) submits; Ctrl-D on an empty line is
//! the end of input, elsewhere it deletes. Ctrl-C is not the editor's: the
//! console ends the session with it at any time.
//!
//! A line longer than the terminal is as wide scrolls sideways within its
//! row, so the editor never has to follow the terminal's wrapping.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use unicode_width::UnicodeWidthChar;

use super::console::{Ask, Input, MAX_INPUT_LINE};

/// How many chat lines Up and Down can bring back.
pub const HISTORY_LIMIT: usize = 500;

/// The fewest columns the typed text keeps when a prompt is too wide for
/// the terminal (the prompt then shows only its end).
const MIN_FIELD: usize = 10;

/// What one key did to the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The line or the cursor changed: draw it again.
    Edited,
    /// Nothing changed (an unbound key, a move past the end).
    Ignored,
    /// Enter: take the line with [`LineEditor::take`].
    Submit,
    /// Ctrl-D on an empty line: the end of input.
    Eof,
}

/// The row that shows a prompt and its line: the text to write from the
/// first column, and the column to leave the cursor at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// The prompt (or its end) and the visible part of the line.
    pub text: String,
    /// The cursor's column, counted from 0.
    pub cursor: u16,
}

/// A line being typed, and the chat lines typed before it.
#[derive(Debug, Default)]
pub struct LineEditor {
    /// The line, one `char` per position.
    chars: Vec<char>,
    /// Where the next character goes: an index into `chars`.
    cursor: usize,
    /// The first character shown when the line is wider than its field.
    scroll: usize,
    /// The line's length in UTF-8 bytes, for [`MAX_INPUT_LINE`].
    bytes: usize,
    /// Set when a character did not fit under [`MAX_INPUT_LINE`]: the line
    /// is reported as [`Input::TooLong`].
    too_long: bool,
    /// Chat lines sent, oldest first.
    history: Vec<String>,
    /// The history entry shown, while walking it with Up and Down.
    browsing: Option<usize>,
    /// The line that was being typed when Up was first pressed.
    draft: Vec<char>,
}

impl LineEditor {
    /// An empty line and no history.
    pub fn new() -> LineEditor {
        LineEditor::default()
    }

    /// The line as typed so far.
    pub fn line(&self) -> String {
        self.chars.iter().collect()
    }

    /// The cursor's position, in characters from the start of the line.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Applies one key to the line being typed for `ask`.
    pub fn apply(&mut self, key: KeyEvent, ask: Ask) -> Action {
        let control = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Enter => Action::Submit,
            KeyCode::Char(c) if control && !alt => self.control(c.to_ascii_lowercase(), ask),
            KeyCode::Char(c) if !control && !alt && !c.is_control() => self.insert(c),
            KeyCode::Backspace => self.backspace(),
            KeyCode::Delete => self.delete(),
            KeyCode::Left => self.move_to(self.cursor.saturating_sub(1)),
            KeyCode::Right => self.move_to((self.cursor + 1).min(self.chars.len())),
            KeyCode::Home => self.move_to(0),
            KeyCode::End => self.move_to(self.chars.len()),
            KeyCode::Up if ask == Ask::Chat => self.older(),
            KeyCode::Down if ask == Ask::Chat => self.newer(),
            _ => Action::Ignored,
        }
    }

    /// The Ctrl bindings.
    fn control(&mut self, c: char, ask: Ask) -> Action {
        match c {
            'j' | 'm' => Action::Submit,
            'd' if self.chars.is_empty() => Action::Eof,
            'd' => self.delete(),
            'h' => self.backspace(),
            'a' => self.move_to(0),
            'e' => self.move_to(self.chars.len()),
            'b' => self.move_to(self.cursor.saturating_sub(1)),
            'f' => self.move_to((self.cursor + 1).min(self.chars.len())),
            'u' => self.remove(0, self.cursor),
            'k' => self.remove(self.cursor, self.chars.len()),
            'w' => {
                let mut start = self.cursor;
                while start > 0 && self.chars[start - 1].is_whitespace() {
                    start -= 1;
                }
                while start > 0 && !self.chars[start - 1].is_whitespace() {
                    start -= 1;
                }
                self.remove(start, self.cursor)
            }
            'p' if ask == Ask::Chat => self.older(),
            'n' if ask == Ask::Chat => self.newer(),
            _ => Action::Ignored,
        }
    }

    fn insert(&mut self, c: char) -> Action {
        // `+ 1` for the newline, counted like the server counts it.
        if self.bytes + c.len_utf8() + 1 > MAX_INPUT_LINE {
            self.too_long = true;
            return Action::Ignored;
        }
        self.chars.insert(self.cursor, c);
        self.cursor += 1;
        self.bytes += c.len_utf8();
        Action::Edited
    }

    fn backspace(&mut self) -> Action {
        if self.cursor == 0 {
            return Action::Ignored;
        }
        self.remove(self.cursor - 1, self.cursor)
    }

    fn delete(&mut self) -> Action {
        if self.cursor == self.chars.len() {
            return Action::Ignored;
        }
        self.remove(self.cursor, self.cursor + 1)
    }

    /// Removes `chars[start..end]`; the cursor stays at `start` if it was
    /// past it.
    fn remove(&mut self, start: usize, end: usize) -> Action {
        if start >= end {
            return Action::Ignored;
        }
        let removed: usize = self.chars.drain(start..end).map(char::len_utf8).sum();
        self.bytes -= removed;
        if self.cursor >= end {
            self.cursor -= end - start;
        } else if self.cursor > start {
            self.cursor = start;
        }
        Action::Edited
    }

    fn move_to(&mut self, cursor: usize) -> Action {
        if cursor == self.cursor {
            return Action::Ignored;
        }
        self.cursor = cursor;
        Action::Edited
    }

    /// Up: the previous history entry.
    fn older(&mut self) -> Action {
        let index = match self.browsing {
            None if self.history.is_empty() => return Action::Ignored,
            None => {
                self.draft = std::mem::take(&mut self.chars);
                self.history.len() - 1
            }
            Some(0) => return Action::Ignored,
            Some(index) => index - 1,
        };
        self.browsing = Some(index);
        let entry: Vec<char> = self.history[index].chars().collect();
        self.replace(entry);
        Action::Edited
    }

    /// Down: the next history entry, then the line that was being typed.
    fn newer(&mut self) -> Action {
        let Some(index) = self.browsing else {
            return Action::Ignored;
        };
        let line = if index + 1 < self.history.len() {
            self.browsing = Some(index + 1);
            self.history[index + 1].chars().collect()
        } else {
            self.browsing = None;
            std::mem::take(&mut self.draft)
        };
        self.replace(line);
        Action::Edited
    }

    /// Shows `chars` as the line, the cursor at its end.
    fn replace(&mut self, chars: Vec<char>) {
        self.bytes = chars.iter().map(|c| c.len_utf8()).sum();
        self.cursor = chars.len();
        self.chars = chars;
        self.too_long = false;
    }

    /// Takes the submitted line and starts an empty one. A chat line that is
    /// not blank goes into the history (not twice in a row); answers and
    /// passwords never do.
    pub fn take(&mut self, ask: Ask) -> Input {
        let chars = std::mem::take(&mut self.chars);
        let too_long = self.too_long;
        self.clear();
        if too_long {
            return Input::TooLong;
        }
        let line: String = chars.into_iter().collect();
        if ask == Ask::Chat && !line.trim().is_empty() && self.history.last() != Some(&line) {
            if self.history.len() == HISTORY_LIMIT {
                self.history.remove(0);
            }
            self.history.push(line.clone());
        }
        Input::Line(line)
    }

    /// Forgets the line being typed (not the history).
    pub fn clear(&mut self) {
        self.chars.clear();
        self.cursor = 0;
        self.scroll = 0;
        self.bytes = 0;
        self.too_long = false;
        self.browsing = None;
        self.draft.clear();
    }

    /// The row for `prompt` and the line on a terminal `width` columns wide.
    /// The last column is never written, so the terminal never wraps. A
    /// secret shows the prompt only. Otherwise the line scrolls sideways so
    /// the cursor is always visible, showing as much of the line as fits.
    pub fn view(&mut self, prompt: &str, secret: bool, width: u16) -> View {
        let cols = usize::from(width).saturating_sub(1).max(1);
        let keep = (cols / 2).clamp(1, MIN_FIELD);
        let (prompt, prompt_width) = tail(prompt, cols.saturating_sub(keep));
        let field = cols.saturating_sub(prompt_width).max(1);
        let mut text = prompt.to_string();
        if secret {
            return View {
                text,
                cursor: column(prompt_width),
            };
        }
        // The cursor's cell must be inside the field...
        self.scroll = self.scroll.min(self.cursor);
        let mut before: usize = self.chars[self.scroll..self.cursor].iter().map(|&c| width_of(c)).sum();
        while before >= field && self.scroll < self.cursor {
            before -= width_of(self.chars[self.scroll]);
            self.scroll += 1;
        }
        // ...and no room is left empty at the end while text is hidden at
        // the start.
        let mut shown: usize = self.chars[self.scroll..].iter().map(|&c| width_of(c)).sum();
        while self.scroll > 0 && shown + width_of(self.chars[self.scroll - 1]) < field {
            self.scroll -= 1;
            let added = width_of(self.chars[self.scroll]);
            shown += added;
            if self.scroll < self.cursor {
                before += added;
            }
        }
        let mut used = 0;
        for &c in &self.chars[self.scroll..] {
            let w = width_of(c);
            if used + w > field {
                break;
            }
            used += w;
            text.push(c);
        }
        View {
            text,
            cursor: column(prompt_width + before),
        }
    }
}

/// The columns `c` takes on a terminal (0 for combining marks).
fn width_of(c: char) -> usize {
    c.width().unwrap_or(0)
}

/// The longest end of `text` that fits in `max` columns, and its width.
fn tail(text: &str, max: usize) -> (&str, usize) {
    let mut width = 0;
    let mut start = text.len();
    for (at, c) in text.char_indices().rev() {
        let w = width_of(c);
        if width + w > max {
            break;
        }
        width += w;
        start = at;
    }
    (&text[start..], width)
}

/// A column number for the terminal (which has fewer than 65536).
fn column(col: usize) -> u16 {
    u16::try_from(col).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    /// Types `text` (each char a key) and returns the actions.
    fn type_str(editor: &mut LineEditor, text: &str, ask: Ask) -> Vec<Action> {
        text.chars().map(|c| editor.apply(key(KeyCode::Char(c)), ask)).collect()
    }

    fn line_of(input: Input) -> String {
        match input {
            Input::Line(line) => line,
            _ => panic!("expected a line"),
        }
    }

    #[test]
    fn typing_and_moving_edit_at_the_cursor() {
        let mut editor = LineEditor::new();
        type_str(&mut editor, "hla", Ask::Chat);
        editor.apply(key(KeyCode::Left), Ask::Chat);
        editor.apply(key(KeyCode::Left), Ask::Chat);
        type_str(&mut editor, "o", Ask::Chat);
        assert_eq!((editor.line().as_str(), editor.cursor()), ("hola", 2));
        editor.apply(key(KeyCode::End), Ask::Chat);
        type_str(&mut editor, " ñandú", Ask::Chat);
        editor.apply(ctrl('a'), Ask::Chat);
        assert_eq!(editor.apply(key(KeyCode::Left), Ask::Chat), Action::Ignored);
        editor.apply(key(KeyCode::Delete), Ask::Chat);
        assert_eq!(editor.line(), "ola ñandú");
        editor.apply(ctrl('e'), Ask::Chat);
        editor.apply(key(KeyCode::Backspace), Ask::Chat);
        editor.apply(ctrl('h'), Ask::Chat);
        assert_eq!((editor.line().as_str(), editor.cursor()), ("ola ñan", 7));
        assert_eq!(editor.apply(key(KeyCode::Right), Ask::Chat), Action::Ignored);
        editor.apply(key(KeyCode::Home), Ask::Chat);
        editor.apply(ctrl('f'), Ask::Chat);
        editor.apply(ctrl('d'), Ask::Chat);
        assert_eq!((editor.line().as_str(), editor.cursor()), ("oa ñan", 1));
    }

    #[test]
    fn kill_keys_delete_to_the_ends_and_words() {
        let mut editor = LineEditor::new();
        type_str(&mut editor, "uno dos  tres", Ask::Answer);
        editor.apply(ctrl('w'), Ask::Answer);
        assert_eq!(editor.line(), "uno dos  ");
        editor.apply(ctrl('w'), Ask::Answer);
        assert_eq!(editor.line(), "uno ");
        type_str(&mut editor, "cuatro", Ask::Answer);
        for _ in 0..3 {
            editor.apply(key(KeyCode::Left), Ask::Answer);
        }
        editor.apply(ctrl('k'), Ask::Answer);
        assert_eq!((editor.line().as_str(), editor.cursor()), ("uno cua", 7));
        editor.apply(ctrl('b'), Ask::Answer);
        editor.apply(ctrl('u'), Ask::Answer);
        assert_eq!((editor.line().as_str(), editor.cursor()), ("a", 0));
        assert_eq!(editor.apply(ctrl('u'), Ask::Answer), Action::Ignored);
        assert_eq!(editor.apply(ctrl('w'), Ask::Answer), Action::Ignored);
    }

    #[test]
    fn enter_submits_and_ctrl_d_ends_only_an_empty_line() {
        let mut editor = LineEditor::new();
        assert_eq!(editor.apply(ctrl('d'), Ask::Answer), Action::Eof);
        type_str(&mut editor, "x", Ask::Answer);
        assert_eq!(editor.apply(ctrl('d'), Ask::Answer), Action::Ignored);
        assert_eq!(editor.apply(key(KeyCode::Enter), Ask::Answer), Action::Submit);
        // What a terminal's Enter is when it was typed before raw mode.
        assert_eq!(editor.apply(ctrl('j'), Ask::Answer), Action::Submit);
        assert_eq!(line_of(editor.take(Ask::Answer)), "x");
        assert_eq!((editor.line().as_str(), editor.cursor()), ("", 0));
    }

    #[test]
    fn control_and_alt_characters_are_not_inserted() {
        let mut editor = LineEditor::new();
        for event in [
            ctrl('x'),
            KeyEvent::new(KeyCode::Char('b'), KeyModifiers::ALT),
            key(KeyCode::Char('\u{7}')),
            key(KeyCode::Tab),
            key(KeyCode::Esc),
            key(KeyCode::F(1)),
        ] {
            assert_eq!(editor.apply(event, Ask::Chat), Action::Ignored, "{event:?}");
        }
        // Shift only makes capitals.
        let shifted = KeyEvent::new(KeyCode::Char('Á'), KeyModifiers::SHIFT);
        assert_eq!(editor.apply(shifted, Ask::Chat), Action::Edited);
        assert_eq!(editor.line(), "Á");
    }

    #[test]
    fn history_walks_chat_lines_only_and_keeps_the_draft() {
        let mut editor = LineEditor::new();
        for line in ["uno", "dos", "dos", "  "] {
            type_str(&mut editor, line, Ask::Chat);
            editor.take(Ask::Chat);
        }
        type_str(&mut editor, "clave", Ask::Secret);
        editor.take(Ask::Secret);
        type_str(&mut editor, "ana", Ask::Answer);
        editor.take(Ask::Answer);

        type_str(&mut editor, "bor", Ask::Chat);
        editor.apply(key(KeyCode::Up), Ask::Chat);
        assert_eq!((editor.line().as_str(), editor.cursor()), ("dos", 3));
        editor.apply(key(KeyCode::Up), Ask::Chat);
        assert_eq!(editor.line(), "uno");
        assert_eq!(editor.apply(key(KeyCode::Up), Ask::Chat), Action::Ignored);
        editor.apply(ctrl('n'), Ask::Chat);
        assert_eq!(editor.line(), "dos");
        editor.apply(key(KeyCode::Down), Ask::Chat);
        assert_eq!(editor.line(), "bor");
        assert_eq!(editor.apply(key(KeyCode::Down), Ask::Chat), Action::Ignored);

        // Never at the other prompts.
        editor.clear();
        assert_eq!(editor.apply(key(KeyCode::Up), Ask::Answer), Action::Ignored);
        assert_eq!(editor.apply(ctrl('p'), Ask::Secret), Action::Ignored);
        assert_eq!(editor.line(), "");

        // An entry edited and sent is a new entry; the old one stays.
        editor.apply(ctrl('p'), Ask::Chat);
        type_str(&mut editor, "!", Ask::Chat);
        assert_eq!(line_of(editor.take(Ask::Chat)), "dos!");
        editor.apply(key(KeyCode::Up), Ask::Chat);
        assert_eq!(editor.line(), "dos!");
        editor.apply(key(KeyCode::Up), Ask::Chat);
        assert_eq!(editor.line(), "dos");
    }

    #[test]
    fn history_is_bounded() {
        let mut editor = LineEditor::new();
        for n in 0..HISTORY_LIMIT + 5 {
            type_str(&mut editor, &n.to_string(), Ask::Chat);
            editor.take(Ask::Chat);
        }
        let mut oldest = String::new();
        while editor.apply(key(KeyCode::Up), Ask::Chat) == Action::Edited {
            oldest = editor.line();
        }
        assert_eq!(oldest, "5");
    }

    #[test]
    fn a_line_over_the_limit_is_reported_too_long() {
        let mut editor = LineEditor::new();
        let actions = type_str(&mut editor, &"a".repeat(MAX_INPUT_LINE), Ask::Chat);
        assert_eq!(actions.last(), Some(&Action::Ignored));
        assert_eq!(editor.line().len(), MAX_INPUT_LINE - 1);
        assert!(matches!(editor.take(Ask::Chat), Input::TooLong));
        type_str(&mut editor, "ok", Ask::Chat);
        assert_eq!(line_of(editor.take(Ask::Chat)), "ok");
    }

    #[test]
    fn a_secret_shows_only_its_prompt() {
        let mut editor = LineEditor::new();
        type_str(&mut editor, "clave1234", Ask::Secret);
        let view = editor.view("Ingrese su contraseña: ", true, 80);
        assert_eq!(
            view,
            View {
                text: "Ingrese su contraseña: ".into(),
                cursor: 23
            }
        );
        assert_eq!(line_of(editor.take(Ask::Secret)), "clave1234");
    }

    #[test]
    fn a_short_line_shows_whole_after_its_prompt() {
        let mut editor = LineEditor::new();
        type_str(&mut editor, "hola", Ask::Chat);
        editor.apply(key(KeyCode::Left), Ask::Chat);
        let view = editor.view("> ", false, 80);
        assert_eq!(view.text, "> hola");
        assert_eq!(view.cursor, 5);
    }

    #[test]
    fn a_long_line_scrolls_within_its_row() {
        let mut editor = LineEditor::new();
        // 20 columns: 19 usable, 2 of prompt, 17 of field.
        type_str(&mut editor, "abcdefghijklmnopqrstuvwxyz", Ask::Chat);
        let view = editor.view("> ", false, 20);
        assert_eq!(view.text, "> klmnopqrstuvwxyz");
        assert_eq!(view.cursor, 18);
        // Home shows the start; the cursor stays visible wherever it goes.
        editor.apply(key(KeyCode::Home), Ask::Chat);
        let view = editor.view("> ", false, 20);
        assert_eq!((view.text.as_str(), view.cursor), ("> abcdefghijklmnopq", 2));
        for _ in 0..20 {
            editor.apply(key(KeyCode::Right), Ask::Chat);
            let view = editor.view("> ", false, 20);
            assert!(view.cursor < 19, "{view:?}");
            assert_eq!(view.text.chars().count(), 19, "{view:?}");
        }
        let view = editor.view("> ", false, 20);
        assert_eq!((view.text.as_str(), view.cursor), ("> efghijklmnopqrstu", 18));
        // Deleting at the end brings hidden text back instead of leaving a gap.
        editor.apply(key(KeyCode::End), Ask::Chat);
        for _ in 0..10 {
            editor.apply(key(KeyCode::Backspace), Ask::Chat);
        }
        let view = editor.view("> ", false, 20);
        assert_eq!((view.text.as_str(), view.cursor), ("> abcdefghijklmnop", 18));
    }

    #[test]
    fn wide_characters_count_two_columns() {
        let mut editor = LineEditor::new();
        type_str(&mut editor, "日本語のテキスト", Ask::Chat);
        let view = editor.view("> ", false, 12);
        // 11 usable columns, 9 of field: 4 wide chars and the cursor's cell.
        assert_eq!((view.text.as_str(), view.cursor), ("> テキスト", 10));
        editor.apply(key(KeyCode::Home), Ask::Chat);
        let view = editor.view("> ", false, 12);
        assert_eq!((view.text.as_str(), view.cursor), ("> 日本語の", 2));
    }

    #[test]
    fn a_prompt_wider_than_the_terminal_shows_its_end() {
        let mut editor = LineEditor::new();
        type_str(&mut editor, "ana", Ask::Answer);
        let view = editor.view("Ingrese su nombre de usuario: ", false, 21);
        // 20 usable columns, 10 kept for the line.
        assert_eq!((view.text.as_str(), view.cursor), (" usuario: ana", 13));
        // Absurdly narrow: nothing breaks.
        let view = editor.view("Ingrese: ", false, 1);
        assert_eq!((view.text.as_str(), view.cursor), ("", 0));
    }
}
