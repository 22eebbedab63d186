//! Every sentence the client shows a person, in Spanish and in English.
//!
//! The wire protocol stays English; this module owns what people read: the
//! dialogue of the original lab ([`Text`]) and the translation of the
//! protocol's error codes ([`code_text`]). Each language is one exhaustive
//! `match`, so a sentence or an error code cannot be added without writing it
//! in both languages. The Spanish sentences of the lab are kept word for word.
//!
//! This module formats strings and nothing else: it does no I/O, and values
//! that came from the network must already have gone through
//! [`crate::core::validate::for_display`] before they are put into a [`Text`].

use super::tls::{CaProblem, TlsFailure};
use super::typed::Usage;
use crate::core::code::{ErrorCode, ErrorLevel};

/// The language of everything the client prints (`--lang`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Spanish, the language of the lab charla grew from; the default.
    #[default]
    Es,
    /// English.
    En,
}

/// How a connection attempt failed, for [`Text::ConnectFailed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectFailure<'a> {
    /// Nothing answered within the connect timeout.
    TimedOut,
    /// The host name did not resolve to any address.
    Unresolved,
    /// Anything else, with the operating system's own wording.
    Other(&'a str),
}

/// Why a chat session lost its server, for [`Text::Reconnecting`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interruption {
    /// The connection ended without `BYE` (reset, the server died).
    Lost,
    /// A command got no reply in time.
    NoReply,
    /// The server said `BYE shutting-down` (a node stopping).
    ShuttingDown,
}

/// One sentence (or block of lines) for a person, with its values.
///
/// Values are borrowed and must already be safe to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Text<'a> {
    /// The lab's menu question.
    MenuPrompt,
    /// Registration asks for the full name first.
    AskFullName,
    /// Registration and login ask for the username.
    AskUsername,
    /// Registration and login ask for the password (never echoed).
    AskPassword,
    /// The menu answer was neither 1 nor 2.
    InvalidChoice,
    /// `OK REGISTER`, greeting the new user by full name.
    Registered {
        /// The full name as the server stored it.
        full_name: &'a str,
    },
    /// `OK LOGIN`, greeting the user by full name.
    Welcome {
        /// The full name as the server stored it.
        full_name: &'a str,
    },
    /// The user left with `salir`: the lab's farewell.
    Disconnected {
        /// The username as registered.
        username: &'a str,
    },
    /// The user left at the menu, before logging in.
    Goodbye,
    /// Shown once after the welcome: how to chat and leave.
    ChatHint,
    /// `/ayuda`: every command, one per line.
    Help,
    /// A `/word` that is not a command; it is not sent.
    UnknownCommand {
        /// What the user typed, up to the first space.
        command: &'a str,
    },
    /// A command typed with the wrong arguments: how to use it.
    Usage(Usage),
    /// Heads the messages shown right after logging in.
    RecentMessages,
    /// Heads the listing of an explicit `/historial`.
    HistoryHeader {
        /// How many messages follow.
        count: usize,
    },
    /// A history that holds no message at all.
    NoMessages,
    /// Heads the `/who` listing.
    WhoHeader {
        /// How many accounts are online.
        count: usize,
        /// The room asked about; `None` for everyone online (the lobby).
        room: Option<&'a str>,
    },
    /// After login: the rooms the account is in.
    YourRooms {
        /// Their names, already joined with `, `.
        rooms: &'a str,
    },
    /// Heads the `/rooms` listing.
    RoomsHeader {
        /// How many rooms follow.
        count: usize,
    },
    /// One room of the `/rooms` listing.
    RoomLine {
        /// The room's name.
        name: &'a str,
        /// Its members, online or not.
        members: u64,
        /// Whether the account is one of them.
        member: bool,
    },
    /// `OK JOIN`: the room joined is now the current room.
    RoomJoined {
        /// The room, in the server's case.
        room: &'a str,
    },
    /// `OK PART`.
    RoomParted {
        /// The room, in the server's case.
        room: &'a str,
    },
    /// Plain lines now go to another room.
    NowIn {
        /// The room.
        room: &'a str,
    },
    /// `/cambiar` to a room the account is not in.
    NotInRoom {
        /// The room as typed.
        room: &'a str,
    },
    /// `ENTER #ROOM USER`: someone joined a room.
    RoomEntered {
        /// The room.
        room: &'a str,
        /// Who.
        username: &'a str,
    },
    /// `EXIT #ROOM USER`: someone left a room.
    RoomExited {
        /// The room.
        room: &'a str,
        /// Who.
        username: &'a str,
    },
    /// A room or private-message command on a version 1 server.
    NoRooms,
    /// The chat lost its server and the client is trying to reconnect.
    Reconnecting {
        /// The address it was connected to.
        addr: &'a str,
        /// What happened.
        why: Interruption,
        /// For how long it will keep trying.
        secs: u64,
    },
    /// The client is connected and logged in again after a failover.
    Reconnected {
        /// The address it is connected to now.
        addr: &'a str,
    },
    /// Connection level: reconnecting failed for as long as it may take.
    GaveUp {
        /// Every address tried, joined with `, `.
        addrs: &'a str,
        /// How long the client kept trying.
        secs: u64,
    },
    /// `JOIN USER`: someone came online.
    Joined {
        /// Who.
        username: &'a str,
    },
    /// `LEAVE USER`: someone went offline.
    Left {
        /// Who.
        username: &'a str,
    },
    /// An `ERR` reply, told at its level (client, server, database). For a
    /// code this client does not know, the server's own text is shown.
    Refused {
        /// The code, if known.
        code: Option<ErrorCode>,
        /// The server's English explanation.
        server_text: &'a str,
    },
    /// A `SAY` the server refused: which message, and that it was not stored.
    SayFailed {
        /// The code, if known.
        code: Option<ErrorCode>,
        /// The server's English explanation.
        server_text: &'a str,
        /// The start of the message concerned.
        excerpt: &'a str,
    },
    /// A typed line longer than the client reads; it was dropped.
    InputTooLong,
    /// The server sent a line this client cannot understand; it is ignored.
    IgnoredServerLine,
    /// Messages sent whose `OK SAY` never came.
    Unconfirmed {
        /// How many.
        count: usize,
    },
    /// Ctrl-C or a signal ended the session.
    Interrupted,
    /// Connection level: nothing listens at the address.
    ConnectRefused {
        /// The address as given with `--server`.
        addr: &'a str,
    },
    /// Connection level: connecting failed for another reason.
    ConnectFailed {
        /// The address as given with `--server`.
        addr: &'a str,
        /// Why.
        reason: ConnectFailure<'a>,
    },
    /// Connection level: the TLS handshake failed, most often because the
    /// server's certificate does not verify; says why and what to do.
    TlsFailed {
        /// The address as given with `--server`.
        addr: &'a str,
        /// Why (names in it already safe to print).
        failure: &'a TlsFailure,
    },
    /// The file given with `--ca` cannot be used.
    CaUnusable {
        /// The file as given.
        path: &'a str,
        /// Why.
        problem: &'a CaProblem,
    },
    /// Connection level: the connection ended without `OK QUIT` or `BYE`.
    ConnectionLost {
        /// The server's address.
        addr: &'a str,
    },
    /// Connection level: a command got no reply in time.
    NoReply {
        /// The server's address.
        addr: &'a str,
        /// How long the client waited.
        secs: u64,
    },
    /// Server level: the server said `BYE` and closed the connection.
    ServerClosed {
        /// The server's address.
        addr: &'a str,
        /// The code, if known.
        code: Option<ErrorCode>,
        /// The server's English explanation.
        server_text: &'a str,
    },
    /// Server level: what came back is not the charla protocol.
    ProtocolViolation {
        /// The server's address.
        addr: &'a str,
    },
    /// Server level: the server speaks another protocol version.
    UnsupportedVersion {
        /// The server's address.
        addr: &'a str,
        /// The version it announced.
        version: &'a str,
    },
    /// The terminal or stdin failed.
    InputFailed {
        /// The operating system's wording.
        error: &'a str,
    },
    /// Sharing files.
    File(FileText<'a>),
}

impl Text<'_> {
    /// The sentence in `lang`, without a trailing newline (the help text has
    /// several lines).
    pub fn render(&self, lang: Lang) -> String {
        match lang {
            Lang::Es => self.spanish(),
            Lang::En => self.english(),
        }
    }

    fn spanish(&self) -> String {
        match *self {
            Text::MenuPrompt => "¿Deseas (1) Iniciar sesión o (2) Registrarte?:".into(),
            Text::AskFullName => "Ingrese su nombre completo:".into(),
            Text::AskUsername => "Ingrese su nombre de usuario:".into(),
            Text::AskPassword => "Ingrese su contraseña:".into(),
            Text::InvalidChoice => "Opción no válida: escribe 1 para iniciar sesión o 2 para registrarte.".into(),
            Text::Registered { full_name } => format!("Registro exitoso. Bienvenido {full_name}!"),
            Text::Welcome { full_name } => format!("Bienvenido {full_name}!"),
            Text::Disconnected { username } => format!("Usuario {username} se ha desconectado."),
            Text::Goodbye => "Hasta luego.".into(),
            Text::ChatHint => {
                "Escribe un mensaje y pulsa Intro para enviarlo. /ayuda muestra los comandos; salir cierra la sesión."
                    .into()
            }
            Text::Help => [
                "Comandos:",
                "  /join #sala         /unirse      unirte a una sala; lo que escribas irá a ella",
                "  /part [#sala]       /salir-de    salir de una sala (sin nombre, de la actual)",
                "  /cambiar #sala      /switch      escribir en otra de tus salas",
                "  /rooms              /salas       todas las salas; * marca las tuyas",
                "  /msg usuario texto  /privado     un mensaje privado",
                "  /who [#sala]        /quien       quién está conectado (en la sala actual si no indicas otra)",
                "  /historial [#sala|@usuario] [N]  /history   los últimos N mensajes (20 si no indicas N; como máximo 1000)",
                "  /compartir RUTA     /share       compartir un archivo con los demás",
                "  /archivos [TEXTO]   /files       los archivos compartidos (con TEXTO en el nombre)",
                "  /descargar ID [RUTA]  /get       descargar un archivo (a la carpeta actual si no indicas RUTA)",
                "  /dejar ID           /unshare     dejar de compartir un archivo",
                "  /ayuda              /help        esta ayuda",
                "  salir               /quit        cerrar la sesión",
                "Cualquier otra línea se envía a la sala actual; para enviar una que empiece por /, escribe //.",
            ]
            .join("\n"),
            Text::UnknownCommand { command } => {
                format!("Comando desconocido: {command}. Escribe /ayuda para ver los comandos.")
            }
            Text::Usage(usage) => match usage {
                Usage::Join => "Uso: /join #sala".into(),
                Usage::Part => "Uso: /part [#sala]".into(),
                Usage::Switch => "Uso: /cambiar #sala".into(),
                Usage::Private => "Uso: /msg usuario texto".into(),
                Usage::Who => "Uso: /who [#sala]".into(),
                Usage::History => "Uso: /historial [#sala|@usuario] [N], con N entre 1 y 1000.".into(),
                Usage::Share => "Uso: /compartir RUTA".into(),
                Usage::Get => "Uso: /descargar ID [RUTA] (el ID es el que muestra /archivos)".into(),
                Usage::Unshare => "Uso: /dejar ID".into(),
            },
            Text::RecentMessages => "Últimos mensajes:".into(),
            Text::HistoryHeader { count: 1 } => "Último mensaje:".into(),
            Text::HistoryHeader { count } => format!("Últimos {count} mensajes:"),
            Text::NoMessages => "Todavía no hay mensajes.".into(),
            Text::WhoHeader { count: 1, room: None } => "Conectado ahora (1):".into(),
            Text::WhoHeader { count, room: None } => format!("Conectados ahora ({count}):"),
            Text::WhoHeader { count: 1, room: Some(room) } => format!("Conectado ahora en {room} (1):"),
            Text::WhoHeader {
                count,
                room: Some(room),
            } => format!("Conectados ahora en {room} ({count}):"),
            Text::YourRooms { rooms } => format!("Tus salas: {rooms}."),
            Text::RoomsHeader { count: 1 } => "1 sala (* = estás en ella):".into(),
            Text::RoomsHeader { count } => format!("{count} salas (* = estás en ellas):"),
            Text::RoomLine { name, members, member } => format!(
                "  {} {name} ({members} {})",
                if member { '*' } else { ' ' },
                if members == 1 { "miembro" } else { "miembros" }
            ),
            Text::RoomJoined { room } => format!("Te uniste a {room}; lo que escribas irá a {room}."),
            Text::RoomParted { room } => format!("Saliste de {room}."),
            Text::NowIn { room } => format!("Ahora escribes en {room}."),
            Text::NotInRoom { room } => format!("No estás en {room}; únete con /join {room}."),
            Text::RoomEntered { room, username } => format!("*** {username} entró en {room}."),
            Text::RoomExited { room, username } => format!("*** {username} salió de {room}."),
            Text::NoRooms => {
                "Este servidor no tiene salas ni mensajes privados (habla la versión 1 del protocolo).".into()
            }
            Text::Reconnecting { addr, why, secs } => {
                let what = match why {
                    Interruption::Lost => format!("Se perdió la conexión con el servidor en {addr}"),
                    Interruption::NoReply => format!("El servidor en {addr} dejó de responder"),
                    Interruption::ShuttingDown => format!("El servidor en {addr} se está apagando"),
                };
                format!("{what}; intentando reconectar (hasta {secs} segundos)…")
            }
            Text::Reconnected { addr } => {
                format!("Conexión recuperada con el servidor en {addr}.")
            }
            Text::GaveUp { addrs, secs } => {
                format!("Error de conexión: no se pudo volver a conectar con el servidor ({addrs}) en {secs} segundos.")
            }
            Text::Joined { username } => format!("*** {username} se ha conectado."),
            Text::Left { username } => format!("*** {username} se ha desconectado."),
            Text::Refused { code, server_text } => refusal(code, server_text, Lang::Es),
            Text::SayFailed {
                code,
                server_text,
                excerpt,
            } => match code {
                Some(ErrorCode::DbError) => {
                    format!("Error de la base de datos: el mensaje «{excerpt}» NO se guardó. Puedes volver a enviarlo.")
                }
                Some(ErrorCode::RateLimited) => {
                    format!("Vas demasiado rápido: el mensaje «{excerpt}» no se envió. Espera un momento y reenvíalo.")
                }
                _ => format!(
                    "{} El mensaje «{excerpt}» no se guardó.",
                    refusal(code, server_text, Lang::Es)
                ),
            },
            Text::InputTooLong => "La línea es demasiado larga; no se envió.".into(),
            Text::IgnoredServerLine => "Error del servidor: envió una línea no válida, que se ha ignorado.".into(),
            Text::Unconfirmed { count: 1 } => {
                "1 mensaje enviado no fue confirmado por el servidor; puede que no se haya guardado.".into()
            }
            Text::Unconfirmed { count } => format!(
                "{count} mensajes enviados no fueron confirmados por el servidor; puede que no se hayan guardado."
            ),
            Text::Interrupted => "Sesión interrumpida.".into(),
            Text::ConnectRefused { addr } => format!(
                "No se pudo conectar con el servidor en {addr} (conexión rechazada). ¿Está en marcha charla-server?"
            ),
            Text::ConnectFailed { addr, reason } => {
                let reason = match reason {
                    ConnectFailure::TimedOut => "no respondió a tiempo",
                    ConnectFailure::Unresolved => "no se encontró esa dirección",
                    ConnectFailure::Other(error) => error,
                };
                format!("No se pudo conectar con el servidor en {addr} ({reason}).")
            }
            Text::TlsFailed { addr, failure } => tls_spanish(addr, failure),
            Text::CaUnusable { path, problem } => {
                let why = match problem {
                    CaProblem::Missing => "el archivo no existe.".to_string(),
                    CaProblem::Unreadable(error) => format!("no se pudo leer ({error})."),
                    CaProblem::NoCertificate => "no contiene ningún certificado (PEM, «-----BEGIN CERTIFICATE-----»). \
                        Hace falta el archivo del certificado del servidor (charla-cert.pem), no el de su clave."
                        .to_string(),
                    CaProblem::Rejected(error) => format!("su certificado no sirve para verificar servidores ({error})."),
                };
                format!("No se puede usar --ca {path}: {why}")
            }
            Text::ConnectionLost { addr } => {
                format!("Error de conexión: se perdió la conexión con el servidor en {addr}.")
            }
            Text::NoReply { addr, secs } => {
                format!("Error de conexión: el servidor en {addr} no respondió en {secs} segundos.")
            }
            Text::ServerClosed {
                addr,
                code,
                server_text,
            } => format!(
                "{} Se cerró la conexión con {addr}.",
                refusal(code, server_text, Lang::Es)
            ),
            Text::ProtocolViolation { addr } => {
                format!("Error del servidor: lo que respondió {addr} no sigue el protocolo de charla.")
            }
            Text::UnsupportedVersion { addr, version } => format!(
                "Error del servidor: el servidor en {addr} habla la versión {version} del protocolo y este cliente solo conoce la 1."
            ),
            Text::InputFailed { error } => format!("No se pudo leer la entrada: {error}."),
            Text::File(text) => text.spanish(),
        }
    }

    fn english(&self) -> String {
        match *self {
            Text::MenuPrompt => "Do you want to (1) Log in or (2) Sign up?:".into(),
            Text::AskFullName => "Enter your full name:".into(),
            Text::AskUsername => "Enter your username:".into(),
            Text::AskPassword => "Enter your password:".into(),
            Text::InvalidChoice => "Invalid option: type 1 to log in or 2 to sign up.".into(),
            Text::Registered { full_name } => format!("Sign-up successful. Welcome {full_name}!"),
            Text::Welcome { full_name } => format!("Welcome {full_name}!"),
            Text::Disconnected { username } => format!("User {username} has disconnected."),
            Text::Goodbye => "Goodbye.".into(),
            Text::ChatHint => {
                "Type a message and press Enter to send it. /help lists the commands; /quit (or salir) logs out.".into()
            }
            Text::Help => [
                "Commands:",
                "  /join #room         /unirse      join a room; what you type goes to it",
                "  /part [#room]       /salir-de    leave a room (with no name, the current one)",
                "  /switch #room       /cambiar     write in another of your rooms",
                "  /rooms              /salas       every room; * marks yours",
                "  /msg user text      /privado     a private message",
                "  /who [#room]        /quien       who is online (in the current room unless you name another)",
                "  /history [#room|@user] [N]  /historial   the last N messages (20 if you give no N; at most 1000)",
                "  /share PATH         /compartir   share a file with the others",
                "  /files [TEXT]       /archivos    the files shared (with TEXT in their names)",
                "  /get ID [PATH]      /descargar   download a file (to the current folder unless you give PATH)",
                "  /unshare ID         /dejar       stop sharing a file",
                "  /help               /ayuda       this help",
                "  /quit               salir        log out",
                "Any other line is sent to the current room; to send one that starts with /, type //.",
            ]
            .join("\n"),
            Text::UnknownCommand { command } => format!("Unknown command: {command}. Type /help to see the commands."),
            Text::Usage(usage) => match usage {
                Usage::Join => "Usage: /join #room".into(),
                Usage::Part => "Usage: /part [#room]".into(),
                Usage::Switch => "Usage: /switch #room".into(),
                Usage::Private => "Usage: /msg user text".into(),
                Usage::Who => "Usage: /who [#room]".into(),
                Usage::History => "Usage: /history [#room|@user] [N], with N from 1 to 1000.".into(),
                Usage::Share => "Usage: /share PATH".into(),
                Usage::Get => "Usage: /get ID [PATH] (the ID that /files shows)".into(),
                Usage::Unshare => "Usage: /unshare ID".into(),
            },
            Text::RecentMessages => "Recent messages:".into(),
            Text::HistoryHeader { count: 1 } => "The last message:".into(),
            Text::HistoryHeader { count } => format!("The last {count} messages:"),
            Text::NoMessages => "There are no messages yet.".into(),
            Text::WhoHeader { count, room: None } => format!("Online now ({count}):"),
            Text::WhoHeader {
                count,
                room: Some(room),
            } => format!("Online now in {room} ({count}):"),
            Text::YourRooms { rooms } => format!("Your rooms: {rooms}."),
            Text::RoomsHeader { count: 1 } => "1 room (* = you are in it):".into(),
            Text::RoomsHeader { count } => format!("{count} rooms (* = you are in them):"),
            Text::RoomLine { name, members, member } => format!(
                "  {} {name} ({members} {})",
                if member { '*' } else { ' ' },
                if members == 1 { "member" } else { "members" }
            ),
            Text::RoomJoined { room } => format!("You joined {room}; what you type now goes to {room}."),
            Text::RoomParted { room } => format!("You left {room}."),
            Text::NowIn { room } => format!("You are now writing in {room}."),
            Text::NotInRoom { room } => format!("You are not in {room}; join it with /join {room}."),
            Text::RoomEntered { room, username } => format!("*** {username} joined {room}."),
            Text::RoomExited { room, username } => format!("*** {username} left {room}."),
            Text::NoRooms => "This server has no rooms or private messages (it speaks protocol version 1).".into(),
            Text::Reconnecting { addr, why, secs } => {
                let what = match why {
                    Interruption::Lost => format!("The connection to the server at {addr} was lost"),
                    Interruption::NoReply => format!("The server at {addr} stopped answering"),
                    Interruption::ShuttingDown => format!("The server at {addr} is shutting down"),
                };
                format!("{what}; trying to reconnect (for up to {secs} seconds)…")
            }
            Text::Reconnected { addr } => format!("Reconnected to the server at {addr}."),
            Text::GaveUp { addrs, secs } => {
                format!("Connection error: could not reconnect to the server ({addrs}) within {secs} seconds.")
            }
            Text::Joined { username } => format!("*** {username} has joined."),
            Text::Left { username } => format!("*** {username} has left."),
            Text::Refused { code, server_text } => refusal(code, server_text, Lang::En),
            Text::SayFailed {
                code,
                server_text,
                excerpt,
            } => match code {
                Some(ErrorCode::DbError) => {
                    format!("Database error: the message “{excerpt}” was NOT stored. You can send it again.")
                }
                Some(ErrorCode::RateLimited) => {
                    format!(
                        "You are going too fast: the message “{excerpt}” was not sent. Wait a moment and resend it."
                    )
                }
                _ => format!(
                    "{} The message “{excerpt}” was not stored.",
                    refusal(code, server_text, Lang::En)
                ),
            },
            Text::InputTooLong => "That line is too long; it was not sent.".into(),
            Text::IgnoredServerLine => "Server error: it sent an invalid line, which was ignored.".into(),
            Text::Unconfirmed { count: 1 } => {
                "1 message you sent was not confirmed by the server; it may not have been stored.".into()
            }
            Text::Unconfirmed { count } => {
                format!("{count} messages you sent were not confirmed by the server; they may not have been stored.")
            }
            Text::Interrupted => "Session interrupted.".into(),
            Text::ConnectRefused { addr } => {
                format!("Could not connect to the server at {addr} (connection refused). Is charla-server running?")
            }
            Text::ConnectFailed { addr, reason } => {
                let reason = match reason {
                    ConnectFailure::TimedOut => "it did not answer in time",
                    ConnectFailure::Unresolved => "no such address",
                    ConnectFailure::Other(error) => error,
                };
                format!("Could not connect to the server at {addr} ({reason}).")
            }
            Text::TlsFailed { addr, failure } => tls_english(addr, failure),
            Text::CaUnusable { path, problem } => {
                let why = match problem {
                    CaProblem::Missing => "there is no such file.".to_string(),
                    CaProblem::Unreadable(error) => format!("it could not be read ({error})."),
                    CaProblem::NoCertificate => "it holds no certificate (PEM, \"-----BEGIN CERTIFICATE-----\"). \
                        It takes the server's certificate file (charla-cert.pem), not its key."
                        .to_string(),
                    CaProblem::Rejected(error) => {
                        format!("its certificate cannot be used to verify servers ({error}).")
                    }
                };
                format!("Cannot use --ca {path}: {why}")
            }
            Text::ConnectionLost { addr } => {
                format!("Connection error: the connection to the server at {addr} was lost.")
            }
            Text::NoReply { addr, secs } => {
                format!("Connection error: the server at {addr} did not reply within {secs} seconds.")
            }
            Text::ServerClosed {
                addr,
                code,
                server_text,
            } => format!(
                "{} The connection to {addr} was closed.",
                refusal(code, server_text, Lang::En)
            ),
            Text::ProtocolViolation { addr } => {
                format!("Server error: what {addr} answered does not follow the charla protocol.")
            }
            Text::UnsupportedVersion { addr, version } => format!(
                "Server error: the server at {addr} speaks protocol version {version} and this client only knows version 1."
            ),
            Text::InputFailed { error } => format!("Could not read the input: {error}."),
            Text::File(text) => text.english(),
        }
    }
}

/// Why a file cannot be shared, for [`FileText::ShareFailed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareFailure<'a> {
    /// Nothing at that path.
    NotFound,
    /// A folder.
    Directory,
    /// A device, a socket...
    NotAFile,
    /// It cannot be read, with the system's wording.
    Unreadable(&'a str),
    /// Its name has characters (or a length) the protocol refuses.
    BadName,
    /// It changed while it was being read.
    Changed,
}

/// Why a download failed, for [`FileText::DownloadFailed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchFailure<'a> {
    /// The owner or the relay could not be reached.
    Unreachable {
        /// Its address.
        addr: &'a str,
        /// The system's wording.
        error: &'a str,
    },
    /// The owner or the relay answered `ERR CODE TEXT`.
    Refused {
        /// The code.
        code: &'a str,
        /// The English explanation.
        text: &'a str,
    },
    /// The owner announced another size or SHA-256 than the offer's.
    OtherFile,
    /// The other side does not speak the protocol, or said nothing in time.
    Garbled,
    /// The other side closed without answering.
    Closed,
    /// The transfer ended early.
    Short {
        /// What came, human-readable.
        got: &'a str,
        /// What was announced, human-readable.
        size: &'a str,
    },
    /// More bytes came than announced.
    TooLong,
    /// Nothing came for too long.
    Stalled,
    /// The SHA-256 of what came is not the offer's.
    Mismatch,
    /// A file appeared at the target meanwhile; it was left alone.
    Exists,
    /// The file cannot be written, with the system's wording.
    Write(&'a str),
}

/// The sentences of file sharing (PROTOCOL.md 11): `/compartir`,
/// `/archivos`, `/descargar`, `/dejar`, and what the transfers report.
/// Sizes arrive already human-readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileText<'a> {
    /// A big file is being hashed before it is offered.
    Hashing {
        /// Its name.
        name: &'a str,
        /// Its size.
        size: &'a str,
    },
    /// `OK SHARE`: the file is offered.
    Shared {
        /// The offer's id.
        id: &'a str,
        /// The file's name.
        name: &'a str,
        /// Its size.
        size: &'a str,
    },
    /// The file cannot be shared.
    ShareFailed {
        /// The path as typed.
        path: &'a str,
        /// Why.
        why: ShareFailure<'a>,
    },
    /// `invalid-file` for a file whose name and hash are fine: too big.
    TooBig {
        /// Its name.
        name: &'a str,
        /// Its size.
        size: &'a str,
    },
    /// The endpoint could not be opened: offers go through the relay.
    EndpointFailed {
        /// The address tried.
        addr: &'a str,
        /// The system's wording.
        error: &'a str,
    },
    /// The server refused the endpoint: offers go through the relay.
    EndpointRefused,
    /// Heads the `/archivos` listing.
    FilesHeader {
        /// How many follow.
        count: usize,
        /// The text searched for, if any.
        query: Option<&'a str>,
    },
    /// `/archivos` found nothing.
    NoFiles {
        /// The text searched for, if any.
        query: Option<&'a str>,
    },
    /// The listing stopped at the server's 100.
    FilesCapped,
    /// `OK UNSHARE`.
    Unshared {
        /// The offer's id.
        id: &'a str,
    },
    /// `forbidden` for `UNSHARE`: another account's offer.
    NotYours {
        /// The offer's id.
        id: &'a str,
    },
    /// No live offer has that id.
    UnknownOffer {
        /// The id as typed.
        id: &'a str,
        /// Whether the listing looked at was cut at 100.
        capped: bool,
    },
    /// A download started.
    Downloading {
        /// The offer's name.
        name: &'a str,
        /// Its size.
        size: &'a str,
        /// Where it goes.
        path: &'a str,
    },
    /// The owner's endpoint could not be reached: the download is tried
    /// again through the server's relay.
    ThroughRelay {
        /// The offering username.
        owner: &'a str,
        /// The offer's name.
        name: &'a str,
    },
    /// A download ended well.
    Downloaded {
        /// Where it is.
        path: &'a str,
        /// Its size.
        size: &'a str,
    },
    /// A download failed; nothing was left behind.
    DownloadFailed {
        /// Where it would have gone.
        path: &'a str,
        /// Why.
        why: FetchFailure<'a>,
    },
    /// The target exists and nobody can be asked: nothing is downloaded.
    Exists {
        /// The target.
        path: &'a str,
    },
    /// The target exists: replace it?
    AskOverwrite {
        /// The target.
        path: &'a str,
    },
    /// The person did not want it replaced.
    NotOverwritten,
    /// The offer's name could leave the folder (or is not allowed).
    UnsafeName {
        /// The name.
        name: &'a str,
    },
    /// The folder to download into does not exist.
    NoFolder {
        /// The folder.
        path: &'a str,
    },
    /// This client sent a file whole.
    Served {
        /// Its name.
        name: &'a str,
        /// Its size.
        size: &'a str,
    },
    /// A file changed since it was shared: it was not sent.
    ServeChanged {
        /// The offer's id.
        id: &'a str,
        /// Its name.
        name: &'a str,
    },
    /// Sending a file stopped half-way.
    ServeInterrupted {
        /// Its name.
        name: &'a str,
        /// What happened, in English.
        reason: &'a str,
    },
    /// The relay could not be reached or refused this client's side.
    RelayFailed {
        /// The offer's id.
        id: &'a str,
        /// What happened, in English.
        reason: &'a str,
    },
    /// After a failover, an offer is offered again under a new id.
    Reshared {
        /// Its name.
        name: &'a str,
        /// The id it had.
        old: &'a str,
        /// The id it has now.
        new: &'a str,
    },
    /// After a failover, an offer could not be offered again.
    ReshareDropped {
        /// Its name.
        name: &'a str,
        /// The id it had.
        old: &'a str,
    },
}

/// indicatif's template for a progress bar: the label, the bar, bytes
/// done of the total, the rate and the time left.
pub fn bar_template(lang: Lang) -> &'static str {
    match lang {
        Lang::Es => "{msg} [{bar:24}] {bytes}/{total_bytes} · {binary_bytes_per_sec} · quedan {eta}",
        Lang::En => "{msg} [{bar:24}] {bytes}/{total_bytes} · {binary_bytes_per_sec} · {eta} left",
    }
}

/// What a peer's refusal code means for the person downloading.
fn fetch_refusal(code: &str, text: &str, lang: Lang) -> String {
    let es = lang == Lang::Es;
    let known = match code {
        "used" if es => "la autorización de descarga ya se usó; vuelve a pedirlo con /descargar",
        "used" => "the download ticket was already used; ask again with /get",
        "expired" if es => "la autorización de descarga caducó; vuelve a pedirlo con /descargar",
        "expired" => "the download ticket expired; ask again with /get",
        "bad-ticket" if es => "quien lo ofrece no aceptó la autorización de descarga",
        "bad-ticket" => "the owner did not accept the download ticket",
        "no-such-file" if es => "quien lo ofrecía ya no lo ofrece",
        "no-such-file" => "the owner no longer offers it",
        "limit-reached" if es => "hay demasiadas transferencias a la vez; inténtalo más tarde",
        "limit-reached" => "too many transfers at once; try again later",
        "timeout" if es => "quien lo ofrece no llegó a tiempo al relé del servidor",
        "timeout" => "the owner did not reach the server's relay in time",
        "busy" if es => "el relé del servidor está saturado; inténtalo más tarde",
        "busy" => "the server's relay is busy; try again later",
        "internal" if es => "quien lo ofrece no puede leerlo",
        "internal" => "the owner cannot read it",
        _ if es => "el otro lado lo rechazó",
        _ => "the other side refused",
    };
    match (code, text.is_empty()) {
        ("internal", false) => format!("{known} ({text})"),
        ("used" | "expired" | "bad-ticket" | "no-such-file" | "limit-reached" | "timeout" | "busy", _) => {
            known.to_string()
        }
        (_, true) => format!("{known} ({code})"),
        (_, false) => format!("{known} ({code}: {text})"),
    }
}

impl FileText<'_> {
    fn spanish(&self) -> String {
        match *self {
            FileText::Hashing { name, size } => format!("Calculando la huella SHA-256 de «{name}» ({size})…"),
            FileText::Shared { id, name, size } => {
                format!("Compartes «{name}» ({size}) con el id {id}; otros lo descargan con /descargar {id}.")
            }
            FileText::ShareFailed { path, why } => {
                let why = match why {
                    ShareFailure::NotFound => "no existe".to_string(),
                    ShareFailure::Directory => "es una carpeta; comparte los archivos de uno en uno".to_string(),
                    ShareFailure::NotAFile => "no es un archivo normal".to_string(),
                    ShareFailure::Unreadable(error) => format!("no se puede leer ({error})"),
                    ShareFailure::BadName => {
                        "su nombre tiene caracteres que no se pueden compartir (/, \\, tabuladores, caracteres de control, espacios al principio o al final) o más de 255 caracteres".to_string()
                    }
                    ShareFailure::Changed => "cambió mientras se leía; vuelve a intentarlo".to_string(),
                };
                format!("No se puede compartir {path}: {why}.")
            }
            FileText::TooBig { name, size } => {
                format!("El servidor no acepta «{name}»: {size} es más de lo que permite compartir.")
            }
            FileText::EndpointFailed { addr, error } => format!(
                "No se pudo abrir {addr} para servir tus archivos ({error}); se enviarán a través del relé del servidor."
            ),
            FileText::EndpointRefused => {
                "El servidor no aceptó la dirección para servir tus archivos; se enviarán a través de su relé.".into()
            }
            FileText::FilesHeader { count: 1, query: None } => "1 archivo compartido:".into(),
            FileText::FilesHeader { count, query: None } => format!("{count} archivos compartidos:"),
            FileText::FilesHeader {
                count: 1,
                query: Some(q),
            } => format!("1 archivo compartido con «{q}» en el nombre:"),
            FileText::FilesHeader { count, query: Some(q) } => {
                format!("{count} archivos compartidos con «{q}» en el nombre:")
            }
            FileText::NoFiles { query: None } => "Nadie comparte archivos ahora.".into(),
            FileText::NoFiles { query: Some(q) } => format!("Nadie comparte ahora un archivo con «{q}» en el nombre."),
            FileText::FilesCapped => "(Solo se muestran los 100 primeros; afina con /archivos TEXTO.)".into(),
            FileText::Unshared { id } => format!("Ya no compartes {id}."),
            FileText::NotYours { id } => format!("{id} no es tuyo: solo quien lo comparte puede dejar de compartirlo."),
            FileText::UnknownOffer { id, capped: false } => format!("Nadie ofrece ahora el archivo {id}."),
            FileText::UnknownOffer { id, capped: true } => format!(
                "No se encontró {id} entre los 100 primeros archivos; búscalo por su nombre con /archivos TEXTO y vuelve a intentarlo."
            ),
            FileText::Downloading { name, size, path } => format!("Descargando «{name}» ({size}) en {path}…"),
            FileText::ThroughRelay { owner, name } => {
                format!("No se pudo llegar directamente a {owner} para «{name}»; se intenta a través del servidor…")
            }
            FileText::Downloaded { path, size } => {
                format!("Descarga completa: {path} ({size}); la huella SHA-256 coincide.")
            }
            FileText::DownloadFailed { path, why } => {
                let why = match why {
                    FetchFailure::Unreachable { addr, error } => {
                        format!("no se pudo conectar con quien lo ofrece en {addr} ({error})")
                    }
                    FetchFailure::Refused { code, text } => fetch_refusal(code, text, Lang::Es),
                    FetchFailure::OtherFile => "quien lo ofrece anunció otro archivo (otro tamaño o huella)".into(),
                    FetchFailure::Garbled => "el otro lado no respondió como debía".into(),
                    FetchFailure::Closed => "el otro lado cerró la conexión sin responder".into(),
                    FetchFailure::Short { got, size } => {
                        format!("la transferencia se cortó a medias ({got} de {size})")
                    }
                    FetchFailure::TooLong => "el otro lado envió más bytes de los anunciados".into(),
                    FetchFailure::Stalled => "la transferencia se detuvo demasiado tiempo".into(),
                    FetchFailure::Mismatch => {
                        "lo recibido no coincide con la huella SHA-256 del archivo ofrecido".into()
                    }
                    FetchFailure::Exists => "mientras tanto apareció un archivo con ese nombre, que no se tocó".into(),
                    FetchFailure::Write(error) => format!("no se pudo escribir ({error})"),
                };
                format!("No se pudo descargar {path}: {why}. No quedó nada a medias.")
            }
            FileText::Exists { path } => {
                format!("Ya existe {path} y no se sobrescribe: indica otra ruta (/descargar ID RUTA) o bórralo antes.")
            }
            FileText::AskOverwrite { path } => format!("Ya existe {path}. ¿Sobrescribirlo? (s/n):"),
            FileText::NotOverwritten => "No se descargó nada.".into(),
            FileText::UnsafeName { name } => {
                format!("El nombre del archivo ofrecido («{name}») podría salir de la carpeta; no se descarga.")
            }
            FileText::NoFolder { path } => format!("No existe la carpeta {path}."),
            FileText::Served { name, size } => format!("Se envió «{name}» ({size}) a quien lo pidió."),
            FileText::ServeChanged { id, name } => format!(
                "«{name}» ({id}) cambió desde que lo compartiste y no se envió; vuelve a compartirlo con /compartir (y /dejar {id})."
            ),
            FileText::ServeInterrupted { name, reason } => {
                format!("Se interrumpió un envío de «{name}» ({reason}).")
            }
            FileText::RelayFailed { id, reason } => {
                format!("No se pudo enviar {id} a través del relé del servidor ({reason}).")
            }
            FileText::Reshared { name, old, new } => {
                format!("Tras reconectar, «{name}» se comparte de nuevo con el id {new} (antes {old}).")
            }
            FileText::ReshareDropped { name, old } => {
                format!("Tras reconectar, «{name}» (antes {old}) ya no se comparte: cambió o no se puede leer.")
            }
        }
    }

    fn english(&self) -> String {
        match *self {
            FileText::Hashing { name, size } => format!("Computing the SHA-256 of “{name}” ({size})…"),
            FileText::Shared { id, name, size } => {
                format!("You are sharing “{name}” ({size}) as {id}; others download it with /get {id}.")
            }
            FileText::ShareFailed { path, why } => {
                let why = match why {
                    ShareFailure::NotFound => "no such file".to_string(),
                    ShareFailure::Directory => "it is a folder; share its files one by one".to_string(),
                    ShareFailure::NotAFile => "it is not a regular file".to_string(),
                    ShareFailure::Unreadable(error) => format!("it cannot be read ({error})"),
                    ShareFailure::BadName => {
                        "its name has characters that cannot be shared (/, \\, tabs, control characters, leading or trailing spaces) or more than 255 characters".to_string()
                    }
                    ShareFailure::Changed => "it changed while it was being read; try again".to_string(),
                };
                format!("Cannot share {path}: {why}.")
            }
            FileText::TooBig { name, size } => {
                format!("The server does not accept “{name}”: {size} is more than it allows to share.")
            }
            FileText::EndpointFailed { addr, error } => {
                format!("Could not open {addr} to serve your files ({error}); they will go through the server's relay.")
            }
            FileText::EndpointRefused => {
                "The server did not accept the address to serve your files; they will go through its relay.".into()
            }
            FileText::FilesHeader { count: 1, query: None } => "1 shared file:".into(),
            FileText::FilesHeader { count, query: None } => format!("{count} shared files:"),
            FileText::FilesHeader {
                count: 1,
                query: Some(q),
            } => format!("1 shared file with “{q}” in its name:"),
            FileText::FilesHeader { count, query: Some(q) } => {
                format!("{count} shared files with “{q}” in their names:")
            }
            FileText::NoFiles { query: None } => "Nobody is sharing files now.".into(),
            FileText::NoFiles { query: Some(q) } => format!("Nobody is sharing a file with “{q}” in its name now."),
            FileText::FilesCapped => "(Only the first 100 are shown; narrow it with /files TEXT.)".into(),
            FileText::Unshared { id } => format!("You no longer share {id}."),
            FileText::NotYours { id } => format!("{id} is not yours: only whoever shares it can stop sharing it."),
            FileText::UnknownOffer { id, capped: false } => format!("Nobody is offering the file {id} now."),
            FileText::UnknownOffer { id, capped: true } => {
                format!("{id} is not among the first 100 files; look it up by name with /files TEXT and try again.")
            }
            FileText::Downloading { name, size, path } => format!("Downloading “{name}” ({size}) to {path}…"),
            FileText::ThroughRelay { owner, name } => {
                format!("Could not reach {owner} directly for “{name}”; trying through the server…")
            }
            FileText::Downloaded { path, size } => {
                format!("Download complete: {path} ({size}); its SHA-256 matches.")
            }
            FileText::DownloadFailed { path, why } => {
                let why = match why {
                    FetchFailure::Unreachable { addr, error } => {
                        format!("could not connect to the owner at {addr} ({error})")
                    }
                    FetchFailure::Refused { code, text } => fetch_refusal(code, text, Lang::En),
                    FetchFailure::OtherFile => "the owner announced another file (another size or SHA-256)".into(),
                    FetchFailure::Garbled => "the other side did not answer as it should".into(),
                    FetchFailure::Closed => "the other side closed the connection without answering".into(),
                    FetchFailure::Short { got, size } => format!("the transfer was cut half-way ({got} of {size})"),
                    FetchFailure::TooLong => "the other side sent more bytes than it announced".into(),
                    FetchFailure::Stalled => "the transfer stalled for too long".into(),
                    FetchFailure::Mismatch => "what arrived does not match the offered file's SHA-256".into(),
                    FetchFailure::Exists => "a file with that name appeared meanwhile, and was left alone".into(),
                    FetchFailure::Write(error) => format!("it could not be written ({error})"),
                };
                format!("Could not download {path}: {why}. Nothing partial was left.")
            }
            FileText::Exists { path } => format!(
                "{path} already exists and is not overwritten: give another path (/get ID PATH) or delete it first."
            ),
            FileText::AskOverwrite { path } => format!("{path} already exists. Overwrite it? (y/n):"),
            FileText::NotOverwritten => "Nothing was downloaded.".into(),
            FileText::UnsafeName { name } => {
                format!("The offered file's name (“{name}”) could leave the folder; it is not downloaded.")
            }
            FileText::NoFolder { path } => format!("There is no folder {path}."),
            FileText::Served { name, size } => format!("Sent “{name}” ({size}) to whoever asked for it."),
            FileText::ServeChanged { id, name } => format!(
                "“{name}” ({id}) changed since you shared it and was not sent; share it again with /share (and /unshare {id})."
            ),
            FileText::ServeInterrupted { name, reason } => format!("Sending “{name}” was interrupted ({reason})."),
            FileText::RelayFailed { id, reason } => {
                format!("Could not send {id} through the server's relay ({reason}).")
            }
            FileText::Reshared { name, old, new } => {
                format!("After reconnecting, “{name}” is shared again as {new} (it was {old}).")
            }
            FileText::ReshareDropped { name, old } => format!(
                "After reconnecting, “{name}” (it was {old}) is no longer shared: it changed or cannot be read."
            ),
        }
    }
}

/// The word that marks a private message on screen (`[privado 10:42]`).
pub fn private_label(lang: Lang) -> &'static str {
    match lang {
        Lang::Es => "privado",
        Lang::En => "private",
    }
}

/// What a person is told about an error code (PROTOCOL.md 6), without the
/// level: see [`Text::Refused`] for the complete sentence.
pub fn code_text(code: ErrorCode, lang: Lang) -> &'static str {
    match lang {
        Lang::Es => match code {
            ErrorCode::BadRequest => "El servidor no entendió la orden.",
            ErrorCode::LineTooLong => "La línea es demasiado larga para el servidor.",
            ErrorCode::BadEncoding => "La línea no es texto UTF-8 válido.",
            ErrorCode::NotLoggedIn => "Primero tienes que iniciar sesión.",
            ErrorCode::AlreadyLoggedIn => "Ya has iniciado sesión.",
            ErrorCode::InvalidUsername => {
                "El nombre de usuario debe tener de 1 a 32 caracteres entre letras sin tilde (A-Z, a-z), números, punto, guion y guion bajo."
            }
            ErrorCode::InvalidPassword => {
                "La contraseña debe tener de 8 a 72 bytes y no puede contener espacios en blanco (espacio, tabulador, espacio de no separación...) ni caracteres de control."
            }
            ErrorCode::InvalidName => {
                "El nombre completo debe tener de 1 a 100 caracteres, sin tabuladores ni caracteres de control."
            }
            ErrorCode::InvalidText => "El mensaje debe tener de 1 a 2000 caracteres, sin caracteres de control.",
            ErrorCode::InvalidRoom => {
                "El nombre de una sala es # seguido de 1 a 32 caracteres entre letras sin tilde, números, punto, guion y guion bajo."
            }
            ErrorCode::UserExists => "Nombre de usuario ya existe. Intenta con otro nombre de usuario.",
            ErrorCode::NoSuchRoom => "Esa sala no existe.",
            ErrorCode::NoSuchUser => "Ese usuario no existe.",
            ErrorCode::NotMember => "No estás en esa sala.",
            ErrorCode::Forbidden => "Eso no está permitido: de #general no se puede salir.",
            ErrorCode::LimitReached => "Llegaste al límite de salas; sal de alguna antes de unirte a otra.",
            ErrorCode::InvalidFile => "El archivo no se puede compartir: tamaño, huella SHA-256 o nombre no válidos.",
            ErrorCode::NoSuchFile => "Nadie está ofreciendo ese archivo ahora.",
            ErrorCode::BadCredentials => "Credenciales incorrectas, intente nuevamente.",
            ErrorCode::RateLimited => "Demasiados intentos seguidos; espera un momento y vuelve a intentarlo.",
            ErrorCode::ServerFull => "El servidor tiene demasiadas conexiones; inténtalo más tarde.",
            ErrorCode::ShuttingDown => "El servidor se está apagando.",
            ErrorCode::SlowConsumer => "Este cliente no leía los mensajes al ritmo en que llegaban.",
            ErrorCode::LoginTimeout => "No se inició sesión a tiempo.",
            ErrorCode::Internal => "Fallo interno del servidor; puedes volver a intentarlo.",
            ErrorCode::DbError => "La base de datos del servidor falló y no se guardó nada.",
        },
        Lang::En => match code {
            ErrorCode::BadRequest => "The server did not understand the command.",
            ErrorCode::LineTooLong => "The line is too long for the server.",
            ErrorCode::BadEncoding => "The line is not valid UTF-8 text.",
            ErrorCode::NotLoggedIn => "You need to log in first.",
            ErrorCode::AlreadyLoggedIn => "You are already logged in.",
            ErrorCode::InvalidUsername => {
                "The username must be 1 to 32 characters of unaccented letters (A-Z, a-z), digits, dot, hyphen and underscore."
            }
            ErrorCode::InvalidPassword => {
                "The password must be 8 to 72 bytes long and contain no whitespace (space, tab, no-break space...) or control characters."
            }
            ErrorCode::InvalidName => "The full name must be 1 to 100 characters, with no tabs or control characters.",
            ErrorCode::InvalidText => "A message must be 1 to 2000 characters, with no control characters.",
            ErrorCode::InvalidRoom => {
                "A room name is # followed by 1 to 32 characters of unaccented letters, digits, dot, hyphen and underscore."
            }
            ErrorCode::UserExists => "That username already exists. Try a different username.",
            ErrorCode::NoSuchRoom => "That room does not exist.",
            ErrorCode::NoSuchUser => "That user does not exist.",
            ErrorCode::NotMember => "You are not in that room.",
            ErrorCode::Forbidden => "That is not allowed: #general cannot be left.",
            ErrorCode::LimitReached => "You reached the room limit; leave a room before joining another.",
            ErrorCode::InvalidFile => "That file cannot be shared: its size, SHA-256 or name is not valid.",
            ErrorCode::NoSuchFile => "Nobody is offering that file now.",
            ErrorCode::BadCredentials => "Wrong username or password, please try again.",
            ErrorCode::RateLimited => "Too many attempts in a row; wait a moment and try again.",
            ErrorCode::ServerFull => "The server has too many connections; try again later.",
            ErrorCode::ShuttingDown => "The server is shutting down.",
            ErrorCode::SlowConsumer => "This client was not reading messages as fast as they arrived.",
            ErrorCode::LoginTimeout => "You did not log in in time.",
            ErrorCode::Internal => "Internal server failure; you can try again.",
            ErrorCode::DbError => "The server's database failed and nothing was stored.",
        },
    }
}

/// How each level of PROTOCOL.md 6 is announced. Client-level refusals
/// need no announcement: the sentence itself says what to correct.
fn level_prefix(level: ErrorLevel, lang: Lang) -> &'static str {
    match (lang, level) {
        (_, ErrorLevel::Client) => "",
        (Lang::Es, ErrorLevel::Server) => "Error del servidor: ",
        (Lang::Es, ErrorLevel::Database) => "Error de la base de datos: ",
        (Lang::En, ErrorLevel::Server) => "Server error: ",
        (Lang::En, ErrorLevel::Database) => "Database error: ",
    }
}

/// A refusal with its level; a code this client does not know (from a newer
/// server) is a server-level error told in the server's own words.
fn refusal(code: Option<ErrorCode>, server_text: &str, lang: Lang) -> String {
    match code {
        Some(code) => match level_prefix(code.level(), lang) {
            "" => code_text(code, lang).to_string(),
            prefix => format!("{prefix}{}", lowercase_first(code_text(code, lang))),
        },
        None => {
            let unknown = match lang {
                Lang::Es => "error desconocido",
                Lang::En => "unknown error",
            };
            let words = if server_text.is_empty() { unknown } else { server_text };
            format!("{}{words}.", level_prefix(ErrorLevel::Server, lang))
        }
    }
}

/// `Sentence.` as it reads after a colon: `sentence.`
fn lowercase_first(sentence: &str) -> String {
    let mut chars = sentence.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A certificate's date (seconds since the epoch), as `2026-03-01`.
fn date(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map_or_else(|| "?".to_string(), |day| day.format("%Y-%m-%d").to_string())
}

/// Why a TLS handshake failed, and what to do about it, in Spanish.
fn tls_spanish(addr: &str, failure: &TlsFailure) -> String {
    let certificate = format!("Error de conexión: el certificado del servidor en {addr}");
    match failure {
        TlsFailure::UnknownIssuer => format!(
            "{certificate} es de un emisor desconocido, así que no se puede comprobar que sea ese servidor. \
             Si usa un certificado propio (autofirmado, como los de charla-server certificate), \
             pide el archivo del certificado y conéctate con --ca ARCHIVO."
        ),
        TlsFailure::Expired { not_after: Some(end) } => format!(
            "{certificate} caducó el {}. Si la fecha de este equipo es correcta, quien administra el servidor debe renovarlo.",
            date(*end)
        ),
        TlsFailure::Expired { not_after: None } => format!(
            "{certificate} ha caducado. Si la fecha de este equipo es correcta, quien administra el servidor debe renovarlo."
        ),
        TlsFailure::NotYetValid { not_before } => {
            let from = not_before.map_or_else(String::new, |start| format!(" (lo será a partir del {})", date(start)));
            format!("{certificate} todavía no es válido{from}. ¿Tiene este equipo bien la fecha y la hora?")
        }
        TlsFailure::WrongName { expected, presented } => {
            let name = if expected.is_empty() {
                "ese nombre".to_string()
            } else {
                format!("el nombre {expected}")
            };
            if presented.is_empty() {
                format!("{certificate} no es válido para {name} ni para ningún otro.")
            } else {
                format!(
                    "{certificate} no es válido para {name}; sirve para: {}. \
                     Conéctate con uno de esos nombres en --server, o pide un certificado que incluya {}.",
                    presented.join(", "),
                    if expected.is_empty() { "el tuyo" } else { expected }
                )
            }
        }
        TlsFailure::BadSignature => format!(
            "{certificate} dice venir de un emisor de confianza, pero su firma no coincide. \
             Si el servidor estrenó certificado (uno nuevo de charla-server certificate, por ejemplo), \
             pide el archivo nuevo para --ca; si no, alguien podría estar haciéndose pasar por el servidor."
        ),
        TlsFailure::BadCertificate(detail) => format!("{certificate} no es válido ({detail})."),
        TlsFailure::NotTls => format!(
            "Error de conexión: el servidor en {addr} no respondió con TLS; puede que en esa dirección escuche sin cifrar \
             (prueba sin --tls, o con el puerto de su --tls-addr)."
        ),
        TlsFailure::Handshake(detail) => {
            format!(
                "Error de conexión: no se pudo establecer la conexión cifrada (TLS) con el servidor en {addr} ({detail})."
            )
        }
    }
}

/// Why a TLS handshake failed, and what to do about it, in English.
fn tls_english(addr: &str, failure: &TlsFailure) -> String {
    let certificate = format!("Connection error: the certificate of the server at {addr}");
    match failure {
        TlsFailure::UnknownIssuer => format!(
            "{certificate} is from an unknown issuer, so there is no telling it is that server. \
             If it uses a certificate of its own (self-signed, like those of charla-server certificate), \
             get the certificate file and connect with --ca FILE."
        ),
        TlsFailure::Expired { not_after: Some(end) } => format!(
            "{certificate} expired on {}. If this computer's date is right, whoever runs the server must renew it.",
            date(*end)
        ),
        TlsFailure::Expired { not_after: None } => format!(
            "{certificate} has expired. If this computer's date is right, whoever runs the server must renew it."
        ),
        TlsFailure::NotYetValid { not_before } => {
            let from = not_before.map_or_else(String::new, |start| format!(" (it will be from {})", date(start)));
            format!("{certificate} is not valid yet{from}. Are this computer's date and time right?")
        }
        TlsFailure::WrongName { expected, presented } => {
            let name = if expected.is_empty() {
                "that name".to_string()
            } else {
                format!("the name {expected}")
            };
            if presented.is_empty() {
                format!("{certificate} is not valid for {name}, nor for any other.")
            } else {
                format!(
                    "{certificate} is not valid for {name}; it is for: {}. \
                     Connect with one of those names in --server, or ask for a certificate that includes {}.",
                    presented.join(", "),
                    if expected.is_empty() { "yours" } else { expected }
                )
            }
        }
        TlsFailure::BadSignature => format!(
            "{certificate} claims a trusted issuer, but its signature does not match. \
             If the server has a new certificate (a new one from charla-server certificate, say), \
             get the new file for --ca; otherwise someone may be impersonating the server."
        ),
        TlsFailure::BadCertificate(detail) => format!("{certificate} is not valid ({detail})."),
        TlsFailure::NotTls => format!(
            "Connection error: the server at {addr} did not answer in TLS; it may listen in plain text at that address \
             (try without --tls, or the port of its --tls-addr)."
        ),
        TlsFailure::Handshake(detail) => {
            format!(
                "Connection error: could not set up an encrypted (TLS) connection with the server at {addr} ({detail})."
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static TLS_FAILURES: std::sync::LazyLock<Vec<TlsFailure>> = std::sync::LazyLock::new(|| {
        vec![
            TlsFailure::UnknownIssuer,
            TlsFailure::Expired {
                not_after: Some(1_700_000_000),
            },
            TlsFailure::Expired { not_after: None },
            TlsFailure::NotYetValid {
                not_before: Some(1_700_000_000),
            },
            TlsFailure::NotYetValid { not_before: None },
            TlsFailure::WrongName {
                expected: "127.0.0.1".into(),
                presented: vec!["otro.local".into(), "10.0.0.1".into()],
            },
            TlsFailure::WrongName {
                expected: String::new(),
                presented: Vec::new(),
            },
            TlsFailure::BadSignature,
            TlsFailure::BadCertificate("revoked".into()),
            TlsFailure::NotTls,
            TlsFailure::Handshake("peer is incompatible".into()),
        ]
    });

    static CA_PROBLEMS: std::sync::LazyLock<Vec<CaProblem>> = std::sync::LazyLock::new(|| {
        vec![
            CaProblem::Missing,
            CaProblem::Unreadable("permission denied".into()),
            CaProblem::NoCertificate,
            CaProblem::Rejected("bad encoding".into()),
        ]
    });

    /// One of every variant, so a test walks them all.
    fn every_text() -> Vec<Text<'static>> {
        let mut all = vec![
            Text::MenuPrompt,
            Text::AskFullName,
            Text::AskUsername,
            Text::AskPassword,
            Text::InvalidChoice,
            Text::Registered { full_name: "Ana" },
            Text::Welcome { full_name: "Ana" },
            Text::Disconnected { username: "ana" },
            Text::Goodbye,
            Text::ChatHint,
            Text::Help,
            Text::UnknownCommand { command: "/x" },
            Text::Usage(Usage::Join),
            Text::Usage(Usage::Part),
            Text::Usage(Usage::Switch),
            Text::Usage(Usage::Private),
            Text::Usage(Usage::Who),
            Text::Usage(Usage::History),
            Text::RecentMessages,
            Text::HistoryHeader { count: 1 },
            Text::HistoryHeader { count: 5 },
            Text::NoMessages,
            Text::WhoHeader { count: 1, room: None },
            Text::WhoHeader { count: 2, room: None },
            Text::WhoHeader {
                count: 1,
                room: Some("#a"),
            },
            Text::WhoHeader {
                count: 2,
                room: Some("#a"),
            },
            Text::YourRooms { rooms: "#a, #general" },
            Text::RoomsHeader { count: 1 },
            Text::RoomsHeader { count: 2 },
            Text::RoomLine {
                name: "#a",
                members: 1,
                member: true,
            },
            Text::RoomLine {
                name: "#a",
                members: 2,
                member: false,
            },
            Text::RoomJoined { room: "#a" },
            Text::RoomParted { room: "#a" },
            Text::NowIn { room: "#a" },
            Text::NotInRoom { room: "#a" },
            Text::RoomEntered {
                room: "#a",
                username: "ana",
            },
            Text::RoomExited {
                room: "#a",
                username: "ana",
            },
            Text::NoRooms,
            Text::Reconnected { addr: "h:1" },
            Text::GaveUp {
                addrs: "h:1, h:2",
                secs: 60,
            },
            Text::Joined { username: "ana" },
            Text::Left { username: "ana" },
            Text::InputTooLong,
            Text::IgnoredServerLine,
            Text::Unconfirmed { count: 1 },
            Text::Unconfirmed { count: 3 },
            Text::Interrupted,
            Text::ConnectRefused { addr: "h:1" },
            Text::ConnectFailed {
                addr: "h:1",
                reason: ConnectFailure::TimedOut,
            },
            Text::ConnectFailed {
                addr: "h:1",
                reason: ConnectFailure::Unresolved,
            },
            Text::ConnectFailed {
                addr: "h:1",
                reason: ConnectFailure::Other("boom"),
            },
            Text::ConnectionLost { addr: "h:1" },
            Text::NoReply { addr: "h:1", secs: 30 },
            Text::ProtocolViolation { addr: "h:1" },
            Text::UnsupportedVersion {
                addr: "h:1",
                version: "2",
            },
            Text::InputFailed { error: "boom" },
            Text::Refused {
                code: None,
                server_text: "new thing",
            },
            Text::ServerClosed {
                addr: "h:1",
                code: None,
                server_text: "new thing",
            },
        ];
        for usage in [Usage::Share, Usage::Get, Usage::Unshare] {
            all.push(Text::Usage(usage));
        }
        for text in every_file_text() {
            all.push(Text::File(text));
        }
        for failure in TLS_FAILURES.iter() {
            all.push(Text::TlsFailed { addr: "h:1", failure });
        }
        for problem in CA_PROBLEMS.iter() {
            all.push(Text::CaUnusable {
                path: "ca.pem",
                problem,
            });
        }
        for why in [Interruption::Lost, Interruption::NoReply, Interruption::ShuttingDown] {
            all.push(Text::Reconnecting {
                addr: "h:1",
                why,
                secs: 60,
            });
        }
        for code in ErrorCode::ALL {
            all.push(Text::Refused {
                code: Some(code),
                server_text: code.default_text(),
            });
            all.push(Text::SayFailed {
                code: Some(code),
                server_text: code.default_text(),
                excerpt: "hola",
            });
            all.push(Text::ServerClosed {
                addr: "h:1",
                code: Some(code),
                server_text: code.default_text(),
            });
        }
        all
    }

    /// One of every file-sharing sentence.
    fn every_file_text() -> Vec<FileText<'static>> {
        let mut all = vec![
            FileText::Hashing { name: "a", size: "1 B" },
            FileText::Shared {
                id: "f1",
                name: "a",
                size: "1 B",
            },
            FileText::TooBig { name: "a", size: "1 B" },
            FileText::EndpointFailed {
                addr: "h:1",
                error: "boom",
            },
            FileText::EndpointRefused,
            FileText::FilesHeader { count: 1, query: None },
            FileText::FilesHeader { count: 2, query: None },
            FileText::FilesHeader {
                count: 1,
                query: Some("x"),
            },
            FileText::FilesHeader {
                count: 2,
                query: Some("x"),
            },
            FileText::NoFiles { query: None },
            FileText::NoFiles { query: Some("x") },
            FileText::FilesCapped,
            FileText::Unshared { id: "f1" },
            FileText::NotYours { id: "f1" },
            FileText::UnknownOffer {
                id: "f1",
                capped: false,
            },
            FileText::UnknownOffer { id: "f1", capped: true },
            FileText::Downloading {
                name: "a",
                size: "1 B",
                path: "/t/a",
            },
            FileText::ThroughRelay {
                owner: "ana",
                name: "a",
            },
            FileText::Downloaded {
                path: "/t/a",
                size: "1 B",
            },
            FileText::Exists { path: "/t/a" },
            FileText::AskOverwrite { path: "/t/a" },
            FileText::NotOverwritten,
            FileText::UnsafeName { name: ".." },
            FileText::NoFolder { path: "/t" },
            FileText::Served { name: "a", size: "1 B" },
            FileText::ServeChanged { id: "f1", name: "a" },
            FileText::ServeInterrupted {
                name: "a",
                reason: "gone",
            },
            FileText::RelayFailed {
                id: "f1",
                reason: "gone",
            },
            FileText::Reshared {
                name: "a",
                old: "f1",
                new: "f2",
            },
            FileText::ReshareDropped { name: "a", old: "f1" },
        ];
        for why in [
            ShareFailure::NotFound,
            ShareFailure::Directory,
            ShareFailure::NotAFile,
            ShareFailure::Unreadable("boom"),
            ShareFailure::BadName,
            ShareFailure::Changed,
        ] {
            all.push(FileText::ShareFailed { path: "/t/a", why });
        }
        let mut failures = vec![
            FetchFailure::Unreachable {
                addr: "h:1",
                error: "boom",
            },
            FetchFailure::OtherFile,
            FetchFailure::Garbled,
            FetchFailure::Closed,
            FetchFailure::Short {
                got: "1 B",
                size: "2 B",
            },
            FetchFailure::TooLong,
            FetchFailure::Stalled,
            FetchFailure::Mismatch,
            FetchFailure::Exists,
            FetchFailure::Write("boom"),
        ];
        for code in [
            "used",
            "expired",
            "bad-ticket",
            "no-such-file",
            "limit-reached",
            "timeout",
            "busy",
            "internal",
            "new-code",
        ] {
            failures.push(FetchFailure::Refused { code, text: "why" });
        }
        for why in failures {
            all.push(FileText::DownloadFailed { path: "/t/a", why });
        }
        all
    }

    #[test]
    fn every_error_code_has_a_text_in_each_language() {
        for code in ErrorCode::ALL {
            let es = code_text(code, Lang::Es);
            let en = code_text(code, Lang::En);
            assert!(es.ends_with('.') && en.ends_with('.'), "{code}");
            assert_ne!(es, en, "{code} is not translated");
            assert_ne!(en, code.default_text(), "{code}: a sentence, not the wire text");
        }
    }

    #[test]
    fn every_text_renders_in_each_language_and_differs() {
        for text in every_text() {
            let es = text.render(Lang::Es);
            let en = text.render(Lang::En);
            assert!(!es.trim().is_empty() && !en.trim().is_empty(), "{text:?}");
            assert_ne!(es, en, "{text:?} is not translated");
            for rendered in [&es, &en] {
                assert!(!rendered.ends_with('\n'), "{text:?}");
                assert!(!rendered.contains("{"), "unfilled placeholder in {rendered:?}");
            }
        }
    }

    #[test]
    fn the_help_names_every_command_in_both_spellings_one_line_each() {
        let spellings = [
            ("/join", "/unirse"),
            ("/part", "/salir-de"),
            ("/cambiar", "/switch"),
            ("/rooms", "/salas"),
            ("/msg", "/privado"),
            ("/who", "/quien"),
            ("/historial", "/history"),
            ("/ayuda", "/help"),
            ("salir", "/quit"),
            ("/compartir", "/share"),
            ("/archivos", "/files"),
            ("/descargar", "/get"),
            ("/dejar", "/unshare"),
        ];
        for lang in [Lang::Es, Lang::En] {
            let help = Text::Help.render(lang);
            for (a, b) in spellings {
                let lines: Vec<&str> = help
                    .lines()
                    .filter(|line| line.contains(&format!("{a} ")) && line.contains(&format!("{b} ")))
                    .collect();
                assert_eq!(lines.len(), 1, "{lang:?}: {a} {b} in {help}");
                let typed = lines[0].split_whitespace().find(|w| w.starts_with('/')).unwrap_or("");
                assert!(
                    !matches!(
                        crate::client::typed::Typed::parse(typed),
                        crate::client::typed::Typed::Unknown(_)
                    ),
                    "{typed}"
                );
            }
        }
    }

    #[test]
    fn the_labs_sentences_are_kept_word_for_word() {
        let es = |t: Text| t.render(Lang::Es);
        assert_eq!(es(Text::MenuPrompt), "¿Deseas (1) Iniciar sesión o (2) Registrarte?:");
        assert_eq!(es(Text::AskFullName), "Ingrese su nombre completo:");
        assert_eq!(es(Text::AskUsername), "Ingrese su nombre de usuario:");
        assert_eq!(es(Text::AskPassword), "Ingrese su contraseña:");
        assert_eq!(
            es(Text::Registered { full_name: "Ana Ríos" }),
            "Registro exitoso. Bienvenido Ana Ríos!"
        );
        assert_eq!(
            es(Text::Refused {
                code: Some(ErrorCode::UserExists),
                server_text: ""
            }),
            "Nombre de usuario ya existe. Intenta con otro nombre de usuario."
        );
        assert_eq!(es(Text::Welcome { full_name: "Ana" }), "Bienvenido Ana!");
        assert_eq!(
            es(Text::Refused {
                code: Some(ErrorCode::BadCredentials),
                server_text: ""
            }),
            "Credenciales incorrectas, intente nuevamente."
        );
        assert_eq!(
            es(Text::Disconnected { username: "ana" }),
            "Usuario ana se ha desconectado."
        );
        assert_eq!(
            es(Text::ConnectRefused { addr: "127.0.0.1:8000" }),
            "No se pudo conectar con el servidor en 127.0.0.1:8000 (conexión rechazada). ¿Está en marcha charla-server?"
        );
    }

    #[test]
    fn errors_say_their_level() {
        let refused = |code, lang| {
            Text::Refused {
                code: Some(code),
                server_text: "",
            }
            .render(lang)
        };
        assert!(refused(ErrorCode::DbError, Lang::Es).starts_with("Error de la base de datos: "));
        assert!(refused(ErrorCode::Internal, Lang::Es).starts_with("Error del servidor: "));
        assert!(refused(ErrorCode::DbError, Lang::En).starts_with("Database error: "));
        let say = Text::SayFailed {
            code: Some(ErrorCode::DbError),
            server_text: "",
            excerpt: "hola",
        };
        assert!(say.render(Lang::Es).contains("«hola» NO se guardó"));
        let bye = Text::ServerClosed {
            addr: "h:1",
            code: Some(ErrorCode::ShuttingDown),
            server_text: "",
        };
        assert_eq!(
            bye.render(Lang::Es),
            "Error del servidor: el servidor se está apagando. Se cerró la conexión con h:1."
        );
        let lost = Text::ConnectionLost { addr: "h:1" }.render(Lang::Es);
        assert!(lost.starts_with("Error de conexión: ") && lost.contains("h:1"));
    }

    #[test]
    fn a_certificate_that_does_not_verify_says_why_and_what_to_do() {
        let told = |failure: &TlsFailure, lang| Text::TlsFailed { addr: "h:1", failure }.render(lang);
        let unknown = told(&TlsFailure::UnknownIssuer, Lang::Es);
        assert!(unknown.starts_with("Error de conexión: "), "{unknown}");
        assert!(
            unknown.contains("emisor desconocido") && unknown.contains("--ca"),
            "{unknown}"
        );
        let unknown = told(&TlsFailure::UnknownIssuer, Lang::En);
        assert!(
            unknown.contains("unknown issuer") && unknown.contains("--ca"),
            "{unknown}"
        );
        let expired = TlsFailure::Expired {
            not_after: Some(1_609_459_200),
        };
        assert!(told(&expired, Lang::Es).contains("caducó el 2021-01-01"));
        assert!(told(&expired, Lang::En).contains("expired on 2021-01-01"));
        let wrong = TlsFailure::WrongName {
            expected: "127.0.0.1".into(),
            presented: vec!["otro.local".into()],
        };
        let es = told(&wrong, Lang::Es);
        assert!(
            es.contains("no es válido para el nombre 127.0.0.1; sirve para: otro.local."),
            "{es}"
        );
        assert!(told(&wrong, Lang::En).contains("is not valid for the name 127.0.0.1; it is for: otro.local."));
    }

    #[test]
    fn unknown_codes_fall_back_to_the_servers_words_at_server_level() {
        let text = Text::Refused {
            code: None,
            server_text: "quota exceeded",
        };
        assert_eq!(text.render(Lang::Es), "Error del servidor: quota exceeded.");
        let bye = Text::ServerClosed {
            addr: "h:1",
            code: None,
            server_text: "maintenance",
        };
        assert_eq!(
            bye.render(Lang::En),
            "Server error: maintenance. The connection to h:1 was closed."
        );
    }
}
