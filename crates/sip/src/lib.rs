//! # switchboard-sip
//!
//! Switchboard's SIP message layer: a zero-copy parser for requests and responses (RFC 3261
//! grammar, tolerant where RFC 4475 allows it), stream framing by Content-Length with RFC 5626
//! keepalives, the generic request checks a UAS makes before method-specific work, a response
//! writer, and a request writer for what the server originates (NOTIFY). It owns the *syntax*
//! of SIP; what a REGISTER means is the registrar's business.
//!
//! It does no I/O, reads no clock and starts no tasks: bytes in, borrowed views and bytes out.
//! The transport layer feeds it datagrams ([`parse`]) or stream buffers ([`frame_stream`], then
//! [`parse`] on each frame).
//!
//! ## Design
//! - **Zero-copy, no heap on the hot path.** A [`Message`] borrows the received buffer; its header
//!   fields live in a fixed inline array of [`MAX_HEADERS`]; every accessor returns borrowed
//!   views, parsed on demand. Parsing a REGISTER and reading everything a registrar needs
//!   allocates nothing (proved by `tests/zero_alloc.rs`).
//! - **Bad input never panics.** No indexing or unwrapping of network data; every malformed
//!   message yields a [`ParseError`] whose [`ParseError::status`] is the one place that maps
//!   errors to SIP status codes (or to a silent drop, for responses and non-SIP bytes).
//! - **Folding is LWS.** Header values keep folded line breaks; every accessor treats CR, LF, SP
//!   and HT as white space, and [`unfold`] or [`Message::write`] remove the breaks.
//! - **Limits:** [`MAX_MESSAGE_SIZE`] (513), [`MAX_HEADERS`] fields (513), [`MAX_LINE_LENGTH`]
//!   per header field (513) or request line (414).
#![forbid(unsafe_code)]

mod auth;
mod error;
mod framing;
mod header;
mod message;
mod method;
mod name_addr;
mod request;
mod response;
mod text;
mod uri;
mod validate;
mod via;

pub use auth::{Credentials, DigestCredentials};
pub use error::{ErrorKind, ParseError};
pub use framing::{Frame, frame_stream};
pub use header::{Header, HeaderName, ListValues};
pub use message::{
    CSeq, MAX_HEADERS, MAX_LINE_LENGTH, MAX_MESSAGE_SIZE, Message, RequestLine, StartLine,
    StatusLine, parse,
};
pub use method::Method;
pub use name_addr::{ContactIter, Contacts, NameAddr};
pub use request::RequestWriter;
pub use response::ResponseWriter;
pub use text::{unfold, unquote};
pub use uri::Uri;
pub use validate::{
    Rejection, ValidRequest, validate_register, validate_request, validated_request,
};
pub use via::Via;
