//! Every RFC 4475 torture message against its manifest row: the outcome on UDP (datagram
//! framing) and TCP (stream framing) must be one the manifest allows, valid messages must parse,
//! and the per-file checks must hold.

mod common;

use common::{Case, Outcome, allowed, assert_round_trip, cases, datagram_outcome, stream_outcome};
use switchboard_sip::{Contacts, Message, NameAddr, parse};

fn first_contacts<'a>(message: &Message<'a>) -> Vec<NameAddr<'a>> {
    match message.contacts().expect("Contact parses") {
        Contacts::List(contacts) => contacts
            .collect::<Result<_, _>>()
            .expect("every Contact parses"),
        other => panic!("expected a Contact list, got {other:?}"),
    }
}

fn run_check(case: &Case, outcome: &Outcome) {
    let check = case.checks.as_str();
    if check == "-" || check.is_empty() {
        return;
    }
    let message = parse(&case.bytes).expect("checked files parse");
    if let Some(method) = check.strip_prefix("cseq=") {
        assert_eq!(message.cseq().expect("CSeq").method.as_str(), method);
    } else if check == "hdr@420=Unsupported" {
        let rejection =
            switchboard_sip::validate_request(&message, common::SUPPORTED).expect_err("420");
        assert_eq!(rejection.status, 420);
        assert_eq!(
            rejection.unsupported,
            vec![
                "nothingSupportsThis",
                "nothingSupportsThisEither",
                "noProxiesSupportThis",
                "norDoAnyProxiesSupportThis"
            ]
        );
    } else if let Some((kind, spec)) = check.split_once('=') {
        let (selector, needle) = spec.split_once('|').expect("selector|needle");
        assert_eq!(*outcome, Outcome::Accept, "{}", case.file);
        let contacts = first_contacts(&message);
        let contact = contacts
            .iter()
            .find(|contact| contact.uri_text.contains(selector))
            .expect("selected contact");
        match kind {
            "contact-uri-has@200" => assert!(
                contact.uri_text.contains(needle),
                "{}: {contact:?}",
                case.file
            ),
            "contact-uri-lacks@200" => assert!(
                !contact.uri_text.contains(needle),
                "{}: {contact:?}",
                case.file
            ),
            other => panic!("unknown check {other}"),
        }
    } else {
        panic!("unknown check {check}");
    }
}

#[test]
fn every_torture_message_gets_an_allowed_outcome() {
    let cases = cases();
    assert!(cases.len() >= 50, "only {} fixtures", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let udp = datagram_outcome(&case.bytes);
        if !allowed(&case.expect, &udp) {
            failures.push(format!(
                "{} UDP: got {udp:?}, manifest says {}",
                case.file, case.expect
            ));
        }
        let tcp = stream_outcome(&case.bytes);
        eprintln!(
            "{:<15} UDP {:<12} TCP {:<12} expect {} / {}",
            case.file,
            format!("{udp:?}"),
            format!("{tcp:?}"),
            case.expect,
            case.expect_tcp
        );
        if !allowed(&case.expect_tcp, &tcp) {
            failures.push(format!(
                "{} TCP: got {tcp:?}, manifest says {}",
                case.file, case.expect_tcp
            ));
        }
        if case.validity == "valid"
            && let Err(error) = parse(&case.bytes)
        {
            failures.push(format!(
                "{}: valid message does not parse: {error}",
                case.file
            ));
        }
        run_check(case, &udp);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn contacts_of_the_register_fixtures_are_extractable() {
    let by_name = |name: &str| {
        cases()
            .into_iter()
            .find(|case| case.file == name)
            .expect("fixture")
            .bytes
    };

    let escnull = by_name("escnull.dat");
    let message = parse(&escnull).expect("escnull parses");
    let uris: Vec<_> = first_contacts(&message)
        .iter()
        .map(|c| c.uri_text)
        .collect();
    assert_eq!(
        uris,
        vec!["sip:%00@host5.example.com", "sip:%00%00@host5.example.com"]
    );
    assert_eq!(message.to().expect("To").uri.user, Some("null-%00-null"));

    let cparam01 = by_name("cparam01.dat");
    let message = parse(&cparam01).expect("cparam01 parses");
    let contact = first_contacts(&message)[0];
    assert_eq!(contact.uri_text, "sip:+19725552222@gw1.example.net");
    assert_eq!(contact.param("unknownparam"), Some(None));
    assert_eq!(contact.uri.param("unknownparam"), None);

    let cparam02 = by_name("cparam02.dat");
    let message = parse(&cparam02).expect("cparam02 parses");
    let contact = first_contacts(&message)[0];
    assert_eq!(
        contact.uri_text,
        "sip:+19725552222@gw1.example.net;unknownparam"
    );
    assert_eq!(contact.uri.param("unknownparam"), Some(None));
    assert_eq!(contact.params, "");

    let regescrt = by_name("regescrt.dat");
    let message = parse(&regescrt).expect("regescrt parses");
    let contact = first_contacts(&message)[0];
    assert_eq!(
        contact.uri_text,
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    );
    assert_eq!(contact.uri.headers, "Route=%3Csip:sip.example.com%3E");
}

#[test]
fn torture_details() {
    let by_name = |name: &str| {
        cases()
            .into_iter()
            .find(|case| case.file == name)
            .expect("fixture")
            .bytes
    };

    let wsinv = by_name("wsinv.dat");
    let message = parse(&wsinv).expect("wsinv parses");
    assert_eq!(message.max_forwards(), Ok(Some(68)));
    assert_eq!(message.cseq().map(|c| c.number), Ok(9));
    assert_eq!(message.to().expect("To").tag(), Some("1918181833n"));
    assert_eq!(
        message
            .from()
            .expect("From")
            .display
            .map(switchboard_sip::unquote)
            .as_deref(),
        Some(r#"J Rosenberg \""#)
    );
    let branches: Vec<_> = message
        .vias()
        .map(|via| via.expect("Via").branch())
        .collect();
    assert_eq!(
        branches,
        vec![
            Some("390skdjuw"),
            Some("z9hG4bK9ikj8"),
            Some("z9hG4bK30239")
        ]
    );
    assert_eq!(message.body.len(), 150);

    let dblreq = by_name("dblreq.dat");
    let message = parse(&dblreq).expect("dblreq parses");
    assert!(
        message.body.is_empty(),
        "trailing datagram octets are discarded"
    );

    let longreq = by_name("longreq.dat");
    let message = parse(&longreq).expect("longreq parses");
    assert_eq!(message.vias().count(), 34);

    let mpart = by_name("mpart01.dat");
    assert_eq!(parse(&mpart).expect("mpart01 parses").body.len(), 553);

    let regaut = by_name("regaut01.dat");
    let message = parse(&regaut).expect("regaut01 parses");
    let credentials: Vec<_> = message.authorizations(false).collect();
    assert_eq!(credentials.len(), 1);
    assert_eq!(credentials[0].scheme, "NoOneKnowsThisScheme");
    assert!(credentials[0].digest().is_none());
}

#[test]
fn every_parsable_torture_message_round_trips() {
    for case in cases() {
        if let Ok(message) = parse(&case.bytes) {
            assert_round_trip(&message);
        }
    }
}

#[test]
fn torture_messages_exercise_every_accessor() {
    for case in cases() {
        common::exercise(&case.bytes);
    }
}

#[test]
fn expectation_grammar() {
    use Outcome::{Accept, Drop, Status};
    assert!(allowed("ok", &Accept));
    assert!(allowed("ok", &Status(404)));
    assert!(!allowed("ok", &Status(400)));
    assert!(!allowed("ok", &Drop));
    assert!(allowed("400,~4xx", &Status(403)));
    assert!(allowed("416,~4xx,-400", &Status(416)));
    assert!(!allowed("416,~4xx,-400", &Status(400)));
    assert!(!allowed("501,405,~ok,-2xx", &Status(200)));
    assert!(allowed("drop,~4xx", &Drop));
    assert!(!allowed("505,~400", &Accept));
}
