//! The example session of PROTOCOL.md 8, against the real binary.

mod common;

use common::TestServer;

#[test]
fn protocol_example_session() {
    let server = TestServer::start();
    let mut juan = common::registered(&server, "juan");
    juan.send("SAY buenas");
    let first = juan.expect_prefix("OK SAY ");
    let mut ana = server.connect();
    ana.send("REGISTER ana s3cret-pass Ana María Ríos");
    ana.expect("OK REGISTER ana Ana María Ríos");
    juan.expect("JOIN ana");
    ana.send("@m1 SAY hola a todos");
    let ok = ana.expect_prefix("@m1 OK SAY ");
    let fields: Vec<&str> = ok.split(' ').collect();
    juan.expect(&format!("MSG {} {} ana hola a todos", fields[3], fields[4]));
    ana.send("HISTORY 2");
    let first_fields: Vec<&str> = first.split(' ').collect();
    ana.expect(&format!("MSG {} {} juan buenas", first_fields[2], first_fields[3]));
    ana.expect(&format!("MSG {} {} ana hola a todos", fields[3], fields[4]));
    ana.expect("OK HISTORY 2");
    ana.send("LOGIN ana x");
    ana.expect("ERR LOGIN already-logged-in you are already logged in");
    ana.send("salir");
    ana.expect("OK QUIT");
    ana.expect_eof();
    juan.expect("LEAVE ana");
}
