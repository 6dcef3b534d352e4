//! RFC 5626 (SIP Outbound) as the registrar sees it: whether a REGISTER asks for a flow, and
//! whether that flow can be kept.
//!
//! A REGISTER is an outbound registration when the UA says it supports `outbound`
//! (`Supported`, or `Require`) and a Contact it is adding carries both `+sip.instance` and
//! `reg-id` (§5.2; a `reg-id` without `+sip.instance` is ignored, §6). The flow can be kept
//! when this registrar is the first hop (one Via: the flow is our own connection or the UDP
//! 5-tuple we answer on) or the first hop said it keeps flows (the first Path URI carries
//! `ob`, §5.1). Otherwise the answer is `439 First Hop Lacks Outbound Support` (§6, step 2) —
//! unless the request only removes bindings.

use switchboard_sip::{Contacts, HeaderName, Message};

/// How a REGISTER uses RFC 5626.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundUse {
    /// Not an outbound registration: answer as RFC 3261 says.
    None,
    /// An outbound registration whose flow we keep: the 200 carries `Require: outbound` and
    /// `Flow-Timer`.
    Flow,
    /// Outbound was asked for through a proxy that keeps no flows: 439.
    FirstHopLacksSupport,
}

/// See the module documentation.
pub fn outbound_use(msg: &Message<'_>) -> OutboundUse {
    let asked = [HeaderName::Supported, HeaderName::Require]
        .into_iter()
        .flat_map(|name| msg.list_values(name))
        .any(|tag| tag.trim().eq_ignore_ascii_case("outbound"));
    if !asked {
        return OutboundUse::None;
    }
    let header_expires = msg.expires().ok().flatten();
    let Ok(Contacts::List(contacts)) = msg.contacts() else {
        return OutboundUse::None;
    };
    let adds_a_flow = contacts.flatten().any(|contact| {
        let removes = match contact.param("expires") {
            Some(Some(value)) => value.trim() == "0",
            _ => header_expires == Some(0),
        };
        !removes
            && contact.param("+sip.instance").flatten().is_some()
            && contact.param("reg-id").flatten().is_some()
    });
    if !adds_a_flow {
        return OutboundUse::None;
    }
    let via_count = msg.vias().count();
    let first_hop_keeps_flows = msg
        .list_values(HeaderName::Path)
        .next()
        .is_some_and(has_ob_parameter);
    if via_count <= 1 || first_hop_keeps_flows {
        OutboundUse::Flow
    } else {
        OutboundUse::FirstHopLacksSupport
    }
}

/// Whether a Path value's URI (`<sip:edge.example.com;lr;ob>`) has the `ob` parameter.
fn has_ob_parameter(path: &str) -> bool {
    let uri = match (path.find('<'), path.find('>')) {
        (Some(start), Some(end)) if start < end => &path[start + 1..end],
        _ => path,
    };
    let uri = uri.split('?').next().unwrap_or(uri);
    uri.split(';').skip(1).any(|param| {
        param
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("ob")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(vias: &[&str], extra: &str, contact: &str) -> Vec<u8> {
        let mut text = String::from("REGISTER sip:acme.test SIP/2.0\r\n");
        for via in vias {
            text.push_str(&format!("Via: SIP/2.0/{via}\r\n"));
        }
        text.push_str(&format!(
            "Max-Forwards: 70\r\nFrom: <sip:a@acme.test>;tag=1\r\nTo: <sip:a@acme.test>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nContact: {contact}\r\n{extra}Content-Length: 0\r\n\r\n"
        ));
        text.into_bytes()
    }

    fn classify(vias: &[&str], extra: &str, contact: &str) -> OutboundUse {
        let bytes = register(vias, extra, contact);
        let msg = switchboard_sip::parse(&bytes).expect("parses");
        outbound_use(&msg)
    }

    const FLOW: &str = "<sip:a@192.0.2.1;transport=tcp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1";
    const ONE_VIA: &[&str] = &["TCP 192.0.2.1:5060;branch=z9hG4bK1"];
    const TWO_VIAS: &[&str] = &[
        "UDP edge.example.com;branch=z9hG4bK2",
        "TCP 192.0.2.1:5060;branch=z9hG4bK1",
    ];

    #[test]
    fn a_direct_outbound_registration_is_a_flow() {
        assert_eq!(
            classify(ONE_VIA, "Supported: path, outbound\r\n", FLOW),
            OutboundUse::Flow
        );
        assert_eq!(
            classify(ONE_VIA, "Require: outbound\r\n", FLOW),
            OutboundUse::Flow
        );
    }

    #[test]
    fn without_the_option_tag_or_the_parameters_it_is_plain_rfc_3261() {
        assert_eq!(classify(ONE_VIA, "", FLOW), OutboundUse::None);
        let no_reg_id = "<sip:a@192.0.2.1>;+sip.instance=\"<urn:uuid:1>\"";
        assert_eq!(
            classify(ONE_VIA, "Supported: outbound\r\n", no_reg_id),
            OutboundUse::None
        );
        let no_instance = "<sip:a@192.0.2.1>;reg-id=1";
        assert_eq!(
            classify(ONE_VIA, "Supported: outbound\r\n", no_instance),
            OutboundUse::None
        );
    }

    #[test]
    fn through_a_proxy_the_first_path_must_say_ob() {
        assert_eq!(
            classify(TWO_VIAS, "Supported: outbound\r\n", FLOW),
            OutboundUse::FirstHopLacksSupport
        );
        assert_eq!(
            classify(
                TWO_VIAS,
                "Supported: outbound\r\nPath: <sip:edge.example.com;lr>\r\n",
                FLOW
            ),
            OutboundUse::FirstHopLacksSupport
        );
        assert_eq!(
            classify(
                TWO_VIAS,
                "Supported: outbound\r\nPath: <sip:edge.example.com;lr;ob>, <sip:core.example.com;lr>\r\n",
                FLOW
            ),
            OutboundUse::Flow
        );
    }

    #[test]
    fn removing_a_flow_through_a_proxy_is_never_refused() {
        let removal = format!("{FLOW};expires=0");
        assert_eq!(
            classify(TWO_VIAS, "Supported: outbound\r\n", &removal),
            OutboundUse::None
        );
        assert_eq!(
            classify(TWO_VIAS, "Supported: outbound\r\nExpires: 0\r\n", FLOW),
            OutboundUse::None
        );
    }

    #[test]
    fn ob_is_a_uri_parameter() {
        assert!(has_ob_parameter("<sip:edge.example.com;lr;ob>"));
        assert!(has_ob_parameter("<sip:edge.example.com;OB;lr>"));
        assert!(!has_ob_parameter("<sip:edge.example.com;lr>;ob"));
        assert!(!has_ob_parameter("<sip:ob.example.com;lr>"));
        assert!(!has_ob_parameter("<sip:edge.example.com;lr;obx>"));
    }
}
