//! What kind of phone sent a REGISTER, from its User-Agent: a pure, table-driven classifier
//! (case-insensitive prefix rules, first match wins) giving the device class, the
//! manufacturer and the model, plus MAC address helpers.
//!
//! Browser SIP libraries (JsSIP, SIP.js) say nothing about the browser or the maker, so they
//! are classified as [`Webrtc`] with neither manufacturer nor model.

/// What kind of endpoint a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhoneClass {
    /// A physical SIP phone or adapter (Polycom, Yealink, Grandstream, …).
    Hardware,
    /// A desktop SIP application (Zoiper, Bria, MicroSIP, …).
    Softphone,
    /// A browser client (JsSIP, SIP.js).
    Webrtc,
    /// A mobile app (iOS, Android).
    Mobile,
}

impl PhoneClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Hardware => "hardware",
            Softphone => "softphone",
            Webrtc => "webrtc",
            Mobile => "mobile",
        }
    }

    /// The class a Kazoo `device_type` implies, for devices whose User-Agent says nothing
    /// (or that never registered): `softphone`, `mobile`/`smartphone`, `webrtc`, and
    /// everything else (`sip_device`, `fax`, `landline`, …) is hardware.
    pub fn from_device_type(device_type: &str) -> PhoneClass {
        match device_type.to_ascii_lowercase().as_str() {
            "softphone" => Softphone,
            "mobile" | "smartphone" => Mobile,
            "webrtc" => Webrtc,
            _ => Hardware,
        }
    }
}

/// What a User-Agent says about the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneIdentity {
    pub class: PhoneClass,
    pub manufacturer: Option<&'static str>,
    pub model: Option<String>,
}

/// One rule: a User-Agent starting with `prefix` (ignoring case) is a `class` phone by
/// `manufacturer`, whose model `model` reads from the rest of the string (after the prefix).
struct Rule {
    prefix: &'static str,
    class: PhoneClass,
    manufacturer: Option<&'static str>,
    model: fn(&str) -> Option<String>,
}

const fn rule(
    prefix: &'static str,
    class: PhoneClass,
    manufacturer: Option<&'static str>,
    model: fn(&str) -> Option<String>,
) -> Rule {
    Rule {
        prefix,
        class,
        manufacturer,
        model,
    }
}

use PhoneClass::{Hardware, Mobile, Softphone, Webrtc};

/// Longer, more specific prefixes come before the shorter ones they start with.
const RULES: &[Rule] = &[
    // Hardware.
    rule("Yealink", Hardware, Some("Yealink"), yealink_model),
    rule("PolycomVVX-", Hardware, Some("Polycom"), polycom_model),
    rule(
        "PolycomSoundPointIP-",
        Hardware,
        Some("Polycom"),
        polycom_model,
    ),
    rule(
        "PolycomSoundStationIP-",
        Hardware,
        Some("Polycom"),
        polycom_model,
    ),
    rule("Polycom", Hardware, Some("Polycom"), polycom_model),
    rule("Poly/", Hardware, Some("Poly"), poly_model),
    rule("Grandstream", Hardware, Some("Grandstream"), first_word),
    rule("Cisco/", Hardware, Some("Cisco"), cisco_model),
    rule("Cisco-", Hardware, Some("Cisco"), cisco_model),
    rule("snom", Hardware, Some("Snom"), snom_model),
    rule("Fanvil", Hardware, Some("Fanvil"), first_word),
    rule("OBIHAI/", Hardware, Some("Obihai"), obihai_model),
    // Desktop applications.
    rule("Zoiper", Softphone, Some("Zoiper"), zoiper_model),
    rule("Z ", Softphone, Some("Zoiper"), zoiper_model),
    rule("Bria iOS", Mobile, Some("CounterPath"), fixed_bria_ios),
    rule(
        "Bria Android",
        Mobile,
        Some("CounterPath"),
        fixed_bria_android,
    ),
    rule("Bria", Softphone, Some("CounterPath"), bria_model),
    rule("X-Lite", Softphone, Some("CounterPath"), fixed_x_lite),
    rule(
        "LinphoneAndroid",
        Mobile,
        Some("Belledonne Communications"),
        fixed_linphone_android,
    ),
    rule(
        "LinphoneiOS",
        Mobile,
        Some("Belledonne Communications"),
        fixed_linphone_ios,
    ),
    rule(
        "Linphone Desktop",
        Softphone,
        Some("Belledonne Communications"),
        fixed_linphone_desktop,
    ),
    rule(
        "Linphone",
        Softphone,
        Some("Belledonne Communications"),
        fixed_linphone,
    ),
    rule("MicroSIP", Softphone, Some("MicroSIP"), fixed_microsip),
    rule("baresip", Softphone, Some("baresip"), fixed_baresip),
    // Browsers.
    rule("JsSIP", Webrtc, None, nothing),
    rule("SIP.js", Webrtc, None, nothing),
    // Mobile applications.
    rule("Groundwire", Mobile, Some("Acrobits"), fixed_groundwire),
    rule("Acrobits", Mobile, Some("Acrobits"), acrobits_model),
    rule("Sipnetic", Mobile, Some("Sipnetic"), fixed_sipnetic),
];

/// What `user_agent` says about the phone; `None` when no rule knows it.
pub fn classify(user_agent: &str) -> Option<PhoneIdentity> {
    let trimmed = user_agent.trim();
    RULES.iter().find_map(|rule| {
        let rest = strip_prefix_ignore_case(trimmed, rule.prefix)?;
        Some(PhoneIdentity {
            class: rule.class,
            manufacturer: rule.manufacturer,
            model: (rule.model)(rest).filter(|model| !model.is_empty()),
        })
    })
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

// ---- models ------------------------------------------------------------------------------

fn nothing(_: &str) -> Option<String> {
    None
}

/// The first word of the rest: `" GXP2170 1.0.11.3"` → `GXP2170`.
fn first_word(rest: &str) -> Option<String> {
    rest.split_whitespace().next().map(str::to_owned)
}

/// `" SIP-T46S 66.86.0.15"` → `T46S`.
fn yealink_model(rest: &str) -> Option<String> {
    let word = rest.split_whitespace().next()?;
    let model = strip_prefix_ignore_case(word, "SIP-")
        .or_else(|| strip_prefix_ignore_case(word, "SIP_"))
        .unwrap_or(word);
    Some(model.to_owned())
}

/// The middle of `Polycom<Family>-<FAMILY>_<number>-UA/<version>`: `VVX_450` → `VVX 450`,
/// `SPIP_650` → `SoundPoint IP 650`, `SSIP_6000` → `SoundStation IP 6000`.
fn polycom_model(rest: &str) -> Option<String> {
    let part = rest.split('-').find(|part| part.contains('_'))?;
    let (family, number) = part.split_once('_')?;
    let family = match family.to_ascii_uppercase().as_str() {
        "SPIP" => "SoundPoint IP".to_owned(),
        "SSIP" => "SoundStation IP".to_owned(),
        _ => family.to_owned(),
    };
    Some(format!("{family} {number}"))
}

/// `"Edge E450 8.1.3.1300 …"` → `Edge E450`: the words before the first that starts with
/// a digit.
fn poly_model(rest: &str) -> Option<String> {
    let words: Vec<&str> = rest
        .split_whitespace()
        .take_while(|word| !word.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    Some(words.join(" "))
}

/// `"SPA504G-7.6.2"` → `SPA504G`; `"CP8851-3PCC/11.3.7"` → `CP8851`.
fn cisco_model(rest: &str) -> Option<String> {
    let model = rest.split(['-', '/', ' ']).next()?;
    Some(model.to_owned())
}

/// `"760/10.1.54.13"` → `760`; `"D785/10.1.33.33"` → `D785`.
fn snom_model(rest: &str) -> Option<String> {
    rest.split(['/', ' ', '-']).next().map(str::to_owned)
}

/// `"OBi200-3.2.2"` → `OBi200`.
fn obihai_model(rest: &str) -> Option<String> {
    rest.split(['-', '/', ' ']).next().map(str::to_owned)
}

/// Zoiper 5 says `Z 5.5.14 …`; older ones `Zoiper rv2.10…`.
fn zoiper_model(rest: &str) -> Option<String> {
    match rest.trim_start().split('.').next() {
        Some(major) if !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()) => {
            Some(format!("Zoiper {major}"))
        }
        _ => Some("Zoiper".to_owned()),
    }
}

/// `" 6 release 6.5.3"` → `Bria 6`; `" Solo release …"` → `Bria Solo`.
fn bria_model(rest: &str) -> Option<String> {
    match rest.split_whitespace().next() {
        Some(word) if !word.eq_ignore_ascii_case("release") => Some(format!("Bria {word}")),
        _ => Some("Bria".to_owned()),
    }
}

/// `" Softphone 6.2"` → `Softphone`.
fn acrobits_model(rest: &str) -> Option<String> {
    first_word(rest).filter(|word| !word.starts_with(|c: char| c.is_ascii_digit()))
}

fn fixed_bria_ios(_: &str) -> Option<String> {
    Some("Bria iOS".to_owned())
}
fn fixed_bria_android(_: &str) -> Option<String> {
    Some("Bria Android".to_owned())
}
fn fixed_x_lite(_: &str) -> Option<String> {
    Some("X-Lite".to_owned())
}
fn fixed_linphone_android(_: &str) -> Option<String> {
    Some("Linphone Android".to_owned())
}
fn fixed_linphone_ios(_: &str) -> Option<String> {
    Some("Linphone iOS".to_owned())
}
fn fixed_linphone_desktop(_: &str) -> Option<String> {
    Some("Linphone Desktop".to_owned())
}
fn fixed_linphone(_: &str) -> Option<String> {
    Some("Linphone".to_owned())
}
fn fixed_microsip(_: &str) -> Option<String> {
    Some("MicroSIP".to_owned())
}
fn fixed_baresip(_: &str) -> Option<String> {
    Some("baresip".to_owned())
}
fn fixed_groundwire(_: &str) -> Option<String> {
    Some("Groundwire".to_owned())
}
fn fixed_sipnetic(_: &str) -> Option<String> {
    Some("Sipnetic".to_owned())
}

// ---- MAC addresses -----------------------------------------------------------------------

/// A MAC address in upper-case colon form (`00:04:F2:AB:CD:EF`) from 12 hex digits, bare or
/// separated by `:`, `-` or `.` (`0004f2abcdef`, `00-04-f2-ab-cd-ef`, `0004.f2ab.cdef`);
/// `None` for anything else.
pub fn normalize_mac(text: &str) -> Option<String> {
    let text = text.trim();
    let digits: String = text
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if digits.len() != 12 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    // Separators, when present, must split the digits evenly (pairs, or groups of four).
    let groups: Vec<usize> = text.split([':', '-', '.']).map(str::len).collect();
    if groups.len() > 1 && !(groups.iter().all(|&n| n == 2) || groups.iter().all(|&n| n == 4)) {
        return None;
    }
    let upper = digits.to_ascii_uppercase();
    let pairs: Vec<&str> = (0..6).map(|i| &upper[i * 2..i * 2 + 2]).collect();
    Some(pairs.join(":"))
}

/// The first word of a User-Agent that is a MAC address (Yealink and Fanvil append theirs),
/// normalised by [`normalize_mac`].
pub fn mac_in(user_agent: &str) -> Option<String> {
    user_agent
        .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ';' | ','))
        .find_map(normalize_mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(user_agent: &str, class: PhoneClass, manufacturer: Option<&str>, model: Option<&str>) {
        let found = classify(user_agent).unwrap_or_else(|| panic!("{user_agent:?} unknown"));
        assert_eq!(
            (found.class, found.manufacturer, found.model.as_deref()),
            (class, manufacturer, model),
            "{user_agent:?}"
        );
    }

    #[test]
    fn hardware_phones() {
        check(
            "Yealink SIP-T46S 66.86.0.15",
            Hardware,
            Some("Yealink"),
            Some("T46S"),
        );
        check(
            "Yealink SIP-T54W 96.85.0.5 80:5e:c0:12:34:56",
            Hardware,
            Some("Yealink"),
            Some("T54W"),
        );
        check(
            "PolycomVVX-VVX_450-UA/6.4.5",
            Hardware,
            Some("Polycom"),
            Some("VVX 450"),
        );
        check(
            "PolycomSoundPointIP-SPIP_650-UA/4.0.15",
            Hardware,
            Some("Polycom"),
            Some("SoundPoint IP 650"),
        );
        check(
            "Poly/Edge E450 8.1.3.1300 (64167f2a1b2c)",
            Hardware,
            Some("Poly"),
            Some("Edge E450"),
        );
        check(
            "Grandstream GXP2170 1.0.11.3",
            Hardware,
            Some("Grandstream"),
            Some("GXP2170"),
        );
        check(
            "Grandstream HT801 1.0.27.2",
            Hardware,
            Some("Grandstream"),
            Some("HT801"),
        );
        check(
            "Cisco/SPA504G-7.6.2",
            Hardware,
            Some("Cisco"),
            Some("SPA504G"),
        );
        check(
            "Cisco-CP8851-3PCC/11.3.7",
            Hardware,
            Some("Cisco"),
            Some("CP8851"),
        );
        check("snom760/10.1.54.13", Hardware, Some("Snom"), Some("760"));
        check("snomD785/10.1.33.33", Hardware, Some("Snom"), Some("D785"));
        check(
            "Fanvil X4U 2.12.3 0c383e123456",
            Hardware,
            Some("Fanvil"),
            Some("X4U"),
        );
        check(
            "OBIHAI/OBi200-3.2.2",
            Hardware,
            Some("Obihai"),
            Some("OBi200"),
        );
    }

    #[test]
    fn desktop_softphones() {
        check(
            "Z 5.5.14 v2.10.19.10",
            Softphone,
            Some("Zoiper"),
            Some("Zoiper 5"),
        );
        check(
            "Zoiper rv2.10.20.3",
            Softphone,
            Some("Zoiper"),
            Some("Zoiper"),
        );
        check(
            "Bria 6 release 6.5.3",
            Softphone,
            Some("CounterPath"),
            Some("Bria 6"),
        );
        check(
            "X-Lite release 5.8.3",
            Softphone,
            Some("CounterPath"),
            Some("X-Lite"),
        );
        check(
            "Linphone Desktop/4.4.10 (Windows 10) Linphone/4.4.10 (belle-sip/4.5.20)",
            Softphone,
            Some("Belledonne Communications"),
            Some("Linphone Desktop"),
        );
        check(
            "MicroSIP/3.21.3",
            Softphone,
            Some("MicroSIP"),
            Some("MicroSIP"),
        );
        check(
            "baresip v2.9.0 (x86_64/linux)",
            Softphone,
            Some("baresip"),
            Some("baresip"),
        );
    }

    #[test]
    fn browsers_say_nothing_of_their_maker() {
        check("JsSIP 3.10.0", Webrtc, None, None);
        check("JsSIP/3.10.0", Webrtc, None, None);
        check("SIP.js/0.21.2", Webrtc, None, None);
    }

    #[test]
    fn mobile_apps() {
        check(
            "Bria iOS release 6.x",
            Mobile,
            Some("CounterPath"),
            Some("Bria iOS"),
        );
        check(
            "LinphoneAndroid/4.6.14 (Pixel 7) LinphoneSDK/5.2.0",
            Mobile,
            Some("Belledonne Communications"),
            Some("Linphone Android"),
        );
        check(
            "LinphoneiOS/4.5.1 (iPhone) LinphoneSDK/5.1.0",
            Mobile,
            Some("Belledonne Communications"),
            Some("Linphone iOS"),
        );
        check(
            "Groundwire/23.1 (build 1234; iOS 17.2)",
            Mobile,
            Some("Acrobits"),
            Some("Groundwire"),
        );
        check(
            "Acrobits Softphone 6.2",
            Mobile,
            Some("Acrobits"),
            Some("Softphone"),
        );
        check(
            "Sipnetic/1.2 Android",
            Mobile,
            Some("Sipnetic"),
            Some("Sipnetic"),
        );
    }

    #[test]
    fn matching_ignores_case_and_unknown_agents_are_none() {
        check(
            "YEALINK SIP-T46S 66.86.0.15",
            Hardware,
            Some("Yealink"),
            Some("T46S"),
        );
        check("jssip 3.10.0", Webrtc, None, None);
        for unknown in [
            "",
            "   ",
            "SIPp-switchboard-test",
            "Asterisk PBX 20",
            "Z",
            "Ya",
        ] {
            assert_eq!(classify(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn device_types_imply_a_class() {
        assert_eq!(PhoneClass::from_device_type("softphone"), Softphone);
        assert_eq!(PhoneClass::from_device_type("mobile"), Mobile);
        assert_eq!(PhoneClass::from_device_type("smartphone"), Mobile);
        assert_eq!(PhoneClass::from_device_type("webrtc"), Webrtc);
        assert_eq!(PhoneClass::from_device_type("sip_device"), Hardware);
        assert_eq!(PhoneClass::from_device_type(""), Hardware);
        assert_eq!(
            [Hardware, Softphone, Webrtc, Mobile].map(PhoneClass::as_str),
            ["hardware", "softphone", "webrtc", "mobile"]
        );
    }

    #[test]
    fn mac_addresses() {
        let want = Some("00:04:F2:AB:CD:EF".to_owned());
        for text in [
            "00:04:f2:ab:cd:ef",
            "00-04-F2-AB-CD-EF",
            "0004f2abcdef",
            "0004.f2ab.cdef",
            " 0004F2ABCDEF ",
        ] {
            assert_eq!(normalize_mac(text), want, "{text:?}");
        }
        for text in [
            "",
            "0004f2abcde",
            "0004f2abcdeg",
            "00:04:f2:ab:cd:ef:00",
            "0:004:f2:ab:cd:ef",
        ] {
            assert_eq!(normalize_mac(text), None, "{text:?}");
        }
        assert_eq!(
            mac_in("Yealink SIP-T54W 96.85.0.5 80:5e:c0:12:34:56"),
            Some("80:5E:C0:12:34:56".to_owned())
        );
        assert_eq!(
            mac_in("Fanvil X4U 2.12.3 0c383e123456"),
            Some("0C:38:3E:12:34:56".to_owned())
        );
        assert_eq!(mac_in("Yealink SIP-T46S 66.86.0.15"), None);
        assert_eq!(mac_in("PolycomVVX-VVX_450-UA/6.4.5"), None);
    }
}
