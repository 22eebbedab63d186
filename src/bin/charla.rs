//! `charla`: the terminal client. Parses the command line and runs
//! [`charla::client::run`].

use std::process::ExitCode;

use clap::Parser;

use charla::client::i18n::Lang;
use charla::client::{Options, exit};

/// The charla chat client: log in or register, then chat. Reads from the
/// keyboard on a terminal, or line by line from stdin when it is a pipe.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "\
In the chat (Spanish spellings in brackets): /join #room (/unirse), /part [#room] (/salir-de),
/switch #room (/cambiar), /rooms (/salas), /msg user text (/privado), /who [#room] (/quien),
/history [#room|@user] [N] (/historial), /help (/ayuda), /quit (salir). Other lines go to the current room.

Exit codes:
  0    the user left (salir, /quit, end of input)
  1    bad arguments, or the terminal or stdin failed
  2    connection error: the server could not be reached, the connection was lost, or it stopped answering
  3    server error: the server closed the session (BYE: shutting down, full, ...) or broke the protocol
  130  interrupted (Ctrl-C, SIGINT, SIGTERM, SIGHUP)"
)]
struct Args {
    /// The server's address, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:8000")]
    server: String,
    /// Language of the dialogue and messages: es (Spanish) or en (English).
    #[arg(long, value_enum, default_value_t = Lang::Es)]
    lang: Lang,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            // clap's own exit code for bad arguments is 2, which `charla`
            // keeps for connection errors; --help and --version are not errors.
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    let options = Options {
        server: args.server,
        lang: args.lang,
    };
    ExitCode::from(charla::client::run(&options))
}
