//! Request methods. Methods are case-sensitive (RFC 3261 7.1): `register` is an unknown method.

use std::fmt;

/// A request method; anything not listed is kept verbatim in `Other`.
#[derive(Debug, Clone, Copy, Eq)]
pub enum Method<'a> {
    Register,
    Options,
    Invite,
    Ack,
    Bye,
    Cancel,
    Notify,
    Subscribe,
    Info,
    Update,
    Message,
    Refer,
    Prack,
    Publish,
    Other(&'a str),
}

impl<'a> Method<'a> {
    /// Maps a method token to its variant (case-sensitive); never fails.
    pub fn parse(token: &'a str) -> Self {
        match token {
            "REGISTER" => Self::Register,
            "OPTIONS" => Self::Options,
            "INVITE" => Self::Invite,
            "ACK" => Self::Ack,
            "BYE" => Self::Bye,
            "CANCEL" => Self::Cancel,
            "NOTIFY" => Self::Notify,
            "SUBSCRIBE" => Self::Subscribe,
            "INFO" => Self::Info,
            "UPDATE" => Self::Update,
            "MESSAGE" => Self::Message,
            "REFER" => Self::Refer,
            "PRACK" => Self::Prack,
            "PUBLISH" => Self::Publish,
            other => Self::Other(other),
        }
    }

    pub fn as_str(&self) -> &'a str {
        match self {
            Self::Register => "REGISTER",
            Self::Options => "OPTIONS",
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Notify => "NOTIFY",
            Self::Subscribe => "SUBSCRIBE",
            Self::Info => "INFO",
            Self::Update => "UPDATE",
            Self::Message => "MESSAGE",
            Self::Refer => "REFER",
            Self::Prack => "PRACK",
            Self::Publish => "PUBLISH",
            Self::Other(other) => other,
        }
    }
}

/// Compares the method text, so `Other("INVITE")` built by hand equals `Invite`.
impl PartialEq for Method<'_> {
    fn eq(&self, other: &Method<'_>) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_methods() {
        assert_eq!(Method::parse("REGISTER"), Method::Register);
        assert_eq!(Method::parse("register"), Method::Other("register"));
        assert_eq!(Method::parse("RE%47IST%45R").as_str(), "RE%47IST%45R");
        assert_eq!(Method::Other("INVITE"), Method::Invite);
    }
}
