//! `charla`: the terminal client. Parses the command line and runs
//! [`charla::client::run`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use charla::client::i18n::{Lang, Text};
use charla::client::share::ShareAddr;
use charla::client::{Options, RECONNECT_FOR, exit, tls};

/// The charla chat client: log in or register, then chat. Reads from the
/// keyboard on a terminal, or line by line from stdin when it is a pipe.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "\
Once logged in, a lost connection (or a server saying it is shutting down) does not end the chat:
the client reconnects to the addresses in turn, logs in again, resends what was not confirmed
and shows what it missed, once and in order.

In the chat (Spanish spellings in brackets): /join #room (/unirse), /part [#room] (/salir-de),
/switch #room (/cambiar), /rooms (/salas), /msg user text (/privado), /who [#room] (/quien),
/history [#room|@user] [N] (/historial), /share PATH (/compartir), /files [TEXT] (/archivos),
/get ID [PATH] (/descargar), /unshare ID (/dejar), /help (/ayuda), /quit (salir). Other lines go to
the current room.

Files you share are served from this client: by default on the address it reaches the server from,
a free port (--share-addr). A fetcher that cannot reach it gets the file through the server's relay
instead, and says so; with --no-direct every fetch of your files goes through the relay. Shared files are offered for as long as the session
lasts (after a reconnection they are offered again, under new ids).

Exit codes:
  0    the user left (salir, /quit, end of input)
  1    bad arguments (a --ca file that is missing or holds no certificate), or the terminal or stdin
       failed
  2    connection error: no server could be reached or its certificate did not verify (--tls), or the
       connection was lost (or a server stopped answering, or shut down) and reconnecting failed for
       --reconnect-for seconds
  3    server error: the server closed the session (BYE: full, slow consumer, ...; shutting down with
       --reconnect-for 0) or broke the protocol
  130  interrupted (Ctrl-C, SIGINT, SIGTERM, SIGHUP)"
)]
struct Args {
    /// The server's address, HOST:PORT; several, separated by commas (the
    /// nodes of one chat, or a load balancer), are tried in turn, at start
    /// and when the connection is lost.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:8000",
        value_name = "HOST:PORT[,HOST:PORT...]"
    )]
    server: Vec<String>,
    /// Language of the dialogue and messages: es (Spanish) or en (English).
    #[arg(long, value_enum, default_value_t = Lang::Es)]
    lang: Lang,
    /// Once logged in, how long to keep trying to reconnect when the
    /// connection is lost or a server stops (0: never; end at once).
    #[arg(long, value_name = "SECS", default_value_t = RECONNECT_FOR.as_secs())]
    reconnect_for: u64,
    /// Talk to the server over TLS (its --tls-addr), verifying its
    /// certificate and that it is valid for the host of --server; trusts
    /// the system's certificate authorities, or those of --ca.
    #[arg(long)]
    tls: bool,
    /// With --tls, trust the certificates in this PEM file instead of the
    /// system's: a classroom's self-signed certificate (made with
    /// `charla-server certificate`) or its own authority.
    #[arg(long, value_name = "FILE", requires = "tls")]
    ca: Option<PathBuf>,
    /// Where to serve the files you share: auto (the address this client
    /// reaches the server from, a free port), IP:PORT (port 0: a free one),
    /// or none (no direct transfers: everything through the server's relay).
    #[arg(long, value_name = "auto|IP:PORT|none", default_value = "auto")]
    share_addr: ShareAddr,
    /// The HOST:PORT other clients are told to fetch your files from, when
    /// it is not the address listened on (a port forwarded on a router, say).
    #[arg(long, value_name = "HOST:PORT", value_parser = announce)]
    share_announce: Option<String>,
    /// Serve no file directly: every fetch of your files goes through the
    /// server's relay (as --share-addr none).
    #[arg(long)]
    no_direct: bool,
}

/// `--share-announce`: an endpoint as the server accepts it.
fn announce(text: &str) -> Result<String, String> {
    charla::core::files::endpoint(text)
        .map(str::to_string)
        .map_err(|_| format!("{text:?} is not HOST:PORT"))
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
    let servers: Vec<String> = args.server.into_iter().map(|s| s.trim().to_string()).collect();
    if servers.iter().any(String::is_empty) {
        eprintln!("charla: --server: an empty address in the list");
        return ExitCode::from(exit::USAGE);
    }
    let tls = if args.tls {
        match tls::client_config(args.ca.as_deref()) {
            Ok(config) => Some(config),
            Err(problem) => {
                let path = args
                    .ca
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display()
                    .to_string();
                eprintln!(
                    "{}",
                    Text::CaUnusable {
                        path: &path,
                        problem: &problem
                    }
                    .render(args.lang)
                );
                return ExitCode::from(exit::USAGE);
            }
        }
    } else {
        None
    };
    let options = Options {
        servers,
        lang: args.lang,
        reconnect_for: Duration::from_secs(args.reconnect_for),
        share_addr: if args.no_direct {
            ShareAddr::Relayed
        } else {
            args.share_addr
        },
        share_announce: args.share_announce,
        tls,
    };
    ExitCode::from(charla::client::run(&options))
}
