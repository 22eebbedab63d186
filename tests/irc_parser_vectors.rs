//! The public IRC parser test vectors of ircdocs/parser-tests (CC0; see
//! `tests/data/irc-parser-tests/README.md`) against
//! [`charla::proto::irc`]: every msg-split vector through `parse`, every
//! msg-join vector through `write_line`.
//!
//! The vectors are compiled into this test, so nothing reads them at run
//! time. No vector is skipped: should one ever be, name it in `SKIPPED`
//! with the reason charla deliberately differs.

use std::collections::BTreeMap;

use charla::proto::irc::{self, Message};
use serde_json::Value;

const MSG_SPLIT: &str = include_str!("data/irc-parser-tests/msg-split.json");
const MSG_JOIN: &str = include_str!("data/irc-parser-tests/msg-join.json");

/// Vectors (by input or description) that charla treats differently on
/// purpose, each with its reason. None so far.
const SKIPPED: &[(&str, &str)] = &[];

/// What a vector expects: the vectors' "atoms".
#[derive(Debug, PartialEq)]
struct Atoms {
    /// Tags as the vectors compare them: a map, duplicates resolved to the
    /// last value (IRCv3: parsers disregard all but the final occurrence).
    tags: BTreeMap<String, String>,
    /// The source without its `:`, `None` when absent.
    source: Option<String>,
    /// The command.
    verb: String,
    /// Every parameter, the trailing one last without its `:`.
    params: Vec<String>,
}

impl Atoms {
    fn from_json(atoms: &Value) -> Atoms {
        let text = |value: &Value| value.as_str().expect("a JSON string").to_owned();
        Atoms {
            tags: atoms["tags"]
                .as_array()
                .expect("tags are a list of pairs")
                .iter()
                .map(|pair| (text(&pair[0]), text(&pair[1])))
                .collect(),
            source: atoms["source"].as_str().map(str::to_owned),
            verb: text(&atoms["verb"]),
            params: atoms["params"]
                .as_array()
                .expect("params are a list")
                .iter()
                .map(text)
                .collect(),
        }
    }

    fn from_message(message: &Message<'_>) -> Atoms {
        Atoms {
            // Later duplicates overwrite earlier ones: the last one counts.
            tags: message
                .tags
                .iter()
                .map(|tag| (tag.key.to_owned(), tag.value.to_string()))
                .collect(),
            source: message.source.map(str::to_owned),
            verb: message.command.to_owned(),
            params: message.params.iter().map(|&param| param.to_owned()).collect(),
        }
    }
}

fn tests(json: &str) -> Vec<Value> {
    let mut data: Value = serde_json::from_str(json).expect("the converted vectors are JSON");
    match data["tests"].take() {
        Value::Array(tests) => tests,
        other => panic!("tests is not a list: {other}"),
    }
}

fn skipped(name: &str) -> bool {
    SKIPPED.iter().any(|&(skipped, _why)| skipped == name)
}

#[test]
fn every_msg_split_vector_parses_into_its_atoms() {
    let vectors = tests(MSG_SPLIT);
    assert_eq!(
        vectors.len(),
        35,
        "msg-split.yaml of irc-parser-tests 0.0.4 has 35 vectors"
    );
    let mut checked = 0;
    for vector in &vectors {
        let input = vector["input"].as_str().expect("each vector has an input");
        if skipped(input) {
            continue;
        }
        let expected = Atoms::from_json(&vector["atoms"]);
        let message = irc::parse(input).unwrap_or_else(|error| panic!("{input:?} does not parse: {error}"));
        assert_eq!(Atoms::from_message(&message), expected, "{input:?}");
        // `Message::tag` agrees: the last duplicate wins there too.
        for (key, value) in &expected.tags {
            assert_eq!(message.tag(key), Some(value.as_str()), "{input:?}, tag {key}");
        }
        checked += 1;
    }
    assert_eq!(checked + SKIPPED.len(), vectors.len());
}

/// `write_line` with the vector's atoms, without its CRLF.
fn written(atoms: &Value, trailing: bool) -> String {
    let expected = Atoms::from_json(atoms);
    // The pairs in the vector's order, not the map's.
    let pairs: Vec<(&str, &str)> = atoms["tags"]
        .as_array()
        .expect("tags are a list of pairs")
        .iter()
        .map(|pair| (pair[0].as_str().expect("key"), pair[1].as_str().expect("value")))
        .collect();
    let params: Vec<&str> = expected.params.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    irc::write_line(
        &mut out,
        &pairs,
        expected.source.as_deref(),
        &expected.verb,
        &params,
        trailing,
    );
    let line = String::from_utf8(out).expect("UTF-8 in, UTF-8 out");
    let body = line.strip_suffix("\r\n").expect("write_line ends with CRLF");
    assert!(!body.contains(['\r', '\n']), "{line:?} is more than one line");
    body.to_owned()
}

#[test]
fn every_msg_join_vector_writes_one_of_its_matches() {
    let vectors = tests(MSG_JOIN);
    assert_eq!(
        vectors.len(),
        17,
        "msg-join.yaml of irc-parser-tests 0.0.4 has 17 vectors"
    );
    let mut checked = 0;
    for vector in &vectors {
        let desc = vector["desc"].as_str().expect("each vector has a description");
        if skipped(desc) {
            continue;
        }
        let atoms = &vector["atoms"];
        let expected = Atoms::from_json(atoms);
        let matches: Vec<&str> = vector["matches"]
            .as_array()
            .expect("matches are a list")
            .iter()
            .map(|m| m.as_str().expect("a match is a string"))
            .collect();

        // The form written must be one the vector lists (they list every
        // acceptable form), and it must parse back into the atoms.
        let line = written(atoms, false);
        assert!(
            matches.contains(&line.as_str()),
            "{desc}: wrote {line:?}, expected one of {matches:?}"
        );
        let parsed = irc::parse(&line).unwrap_or_else(|error| panic!("{desc}: {line:?}: {error}"));
        assert_eq!(Atoms::from_message(&parsed), expected, "{desc}");

        // With the last parameter forced to the trailing form the line may
        // differ from every listed form, but it means the same.
        let forced = written(atoms, true);
        let parsed = irc::parse(&forced).unwrap_or_else(|error| panic!("{desc}: {forced:?}: {error}"));
        assert_eq!(Atoms::from_message(&parsed), expected, "{desc} (trailing forced)");
        checked += 1;
    }
    assert_eq!(checked + SKIPPED.len(), vectors.len());
}

#[test]
fn every_listed_msg_join_form_parses_into_its_atoms() {
    for vector in tests(MSG_JOIN) {
        let desc = vector["desc"].as_str().expect("each vector has a description");
        let expected = Atoms::from_json(&vector["atoms"]);
        for form in vector["matches"].as_array().expect("matches are a list") {
            let form = form.as_str().expect("a match is a string");
            let parsed = irc::parse(form).unwrap_or_else(|error| panic!("{desc}: {form:?}: {error}"));
            assert_eq!(Atoms::from_message(&parsed), expected, "{desc}: {form:?}");
        }
    }
}
