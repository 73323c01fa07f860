//! Attribution: which Click-to-WhatsApp ad brought a customer.
//!
//! [`parse_value`] (and [`parse_str`], [`parse_bytes`]) read the ad data a CRM stored with an
//! inbound WhatsApp message (`chat_messages.metadata`) from any supported gateway shape. The
//! supported shapes and what each field becomes are listed in `docs/attribution.md`, "Supported
//! payload shapes".

mod parse;

pub use parse::{
    parse_bytes, parse_str, parse_value, AdReferral, MediaType, ParseError, ParseOutcome,
    PayloadShape, Sender, MAX_DEPTH, MAX_PAYLOAD_BYTES,
};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
