//! Tolerant extraction of Click-to-WhatsApp (CTWA) ad data from a stored webhook body.
//!
//! CRMs store each inbound message's raw webhook JSON in `chat_messages.metadata`, in whatever
//! shape their gateway produced: WhatsApp Cloud API, Evolution API, raw Baileys, or a
//! whatsmeow-based gateway (wuzapi, uazapi, ...). The same ad data appears under different keys,
//! casings and nesting in each, and gateways change it between versions (docs/attribution.md,
//! "Supported payload shapes"). This module finds it wherever it sits and returns one typed
//! result, or a typed error for input that is not a webhook at all.
//!
//! Nothing here panics on any input: the size, the nesting depth and the number of messages
//! looked at are bounded before any recursive work starts.

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// Largest payload accepted, in bytes.
///
/// A webhook body for one message is a few KiB (thumbnails included, they are small JPEGs); even
/// a Cloud API batch stays far below this. Anything larger is garbage or abuse, and refusing it
/// up front keeps a bad row from costing a worker a large allocation and a long parse.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Deepest nesting of objects and arrays accepted (the outermost object is level 1).
///
/// Real payloads nest about 12 levels (Cloud API envelope, Evolution `data.message.*.contextInfo`).
/// serde_json stops at 128 levels with an error that is hard to tell from a syntax error; our own
/// walk is recursive, so we refuse anything deeper than this first, with a clear error.
pub const MAX_DEPTH: usize = 64;

/// Most messages looked at in one payload (Cloud API batches several in `messages`, a Baileys
/// upsert can carry many). The first one with ad data wins; the bound keeps work predictable.
const MAX_MESSAGES: usize = 64;

/// A byte-order mark some exports put in front of the JSON; serde_json rejects it.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

type Obj = Map<String, Value>;

/// The gateway family a payload came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadShape {
    /// Meta's official WhatsApp Cloud API webhook (full envelope, `value`, or one message).
    CloudApi,
    /// Evolution API (Baileys-based) `messages.upsert`, with or without its envelope.
    Evolution,
    /// A raw Baileys `WAMessage` (`key` + `message`).
    Baileys,
    /// A whatsmeow-based gateway (wuzapi, uazapi, ...): `Info` + `Message` or uazapi's layout.
    Whatsmeow,
}

/// The creative type of the ad the customer clicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaType {
    Image,
    Video,
    /// The proto's `NONE` (0): the ad has no media.
    None,
    /// A value we do not know; kept distinct from absent so it shows up in data.
    Unknown,
}

impl MediaType {
    /// The value stored in `customers.utm_metadata.media_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Image => "image",
            MediaType::Video => "video",
            MediaType::None => "none",
            MediaType::Unknown => "unknown",
        }
    }
}

/// Who sent the message, as far as the payload tells.
///
/// `Debug` redacts every field: these are personal data and must not reach logs by accident.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sender {
    /// Digits only, country code first (`5511987654321`), from a phone-number JID
    /// (`…@s.whatsapp.net`, `…@c.us`) or a bare number; device suffixes removed.
    pub phone_digits: Option<String>,
    /// The LID JID (`213709100187796@lid`) when the payload has one. Kept even when the phone is
    /// known too, so the caller can link a chat that the CRM keyed by LID.
    pub lid: Option<String>,
    /// Cloud API business-scoped user ID (`BR.1502576394655843`), present with or without a phone.
    pub bsuid: Option<String>,
    /// The profile name the customer chose (not verified).
    pub push_name: Option<String>,
}

impl Sender {
    fn is_empty(&self) -> bool {
        self.phone_digits.is_none()
            && self.lid.is_none()
            && self.bsuid.is_none()
            && self.push_name.is_none()
    }

    fn into_option(self) -> Option<Sender> {
        (!self.is_empty()).then_some(self)
    }
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("phone_digits", &self.phone_digits.as_deref().map(Redacted))
            .field("lid", &self.lid.as_deref().map(Redacted))
            .field("bsuid", &self.bsuid.as_deref().map(Redacted))
            .field("push_name", &self.push_name.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Shows only the last 4 characters: enough to tell two values apart in a test failure.
struct Redacted<'a>(&'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chars: Vec<char> = self.0.chars().collect();
        let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
        if chars.len() > 4 {
            write!(f, "\"…{tail}\"")
        } else {
            f.write_str("\"…\"")
        }
    }
}

/// The ad data found in one message, plus what identifies the message and its sender.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdReferral {
    pub shape: PayloadShape,
    /// The **ad** ID (a post ID when `source_type == "post"`), never the campaign ID
    /// (Meta's WhatsApp webhook reference labels it the "Click to WhatsApp ad ID",
    /// <https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/text>).
    /// Kept as a string: it does not fit every number type.
    pub source_id: Option<String>,
    /// Lowercased: `ad`, `post`, ...
    pub source_type: Option<String>,
    pub source_url: Option<String>,
    /// Lowercased `facebook` / `instagram`, from `sourceApp` or `entryPointConversionApp`.
    pub source_app: Option<String>,
    /// The click ID CAPI matches on, exactly as received (only surrounding whitespace removed).
    pub ctwa_clid: Option<String>,
    /// Cloud API `headline`, Baileys `title`.
    pub headline: Option<String>,
    pub body: Option<String>,
    pub media_type: Option<MediaType>,
    pub image_url: Option<String>,
    pub video_url: Option<String>,
    pub thumbnail_url: Option<String>,
    /// `contextInfo.conversionSource`, e.g. `FB_Ads`.
    pub conversion_source: Option<String>,
    /// `contextInfo.entryPointConversionSource`, e.g. `ctwa_ad`.
    pub entry_point_conversion_source: Option<String>,
    /// Cloud API `wamid.…` or Baileys `key.id`.
    pub message_id: Option<String>,
    pub sender: Option<Sender>,
    pub message_timestamp: Option<DateTime<Utc>>,
    /// Cloud API `entry[].id` (the WhatsApp Business Account), when the envelope was stored.
    pub waba_id: Option<String>,
}

/// What a payload says about ad attribution.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseOutcome {
    /// Ad data with at least a `source_id` or a `ctwa_clid`.
    Referral(AdReferral),
    /// The message came from an ad (`conversionSource: FB_Ads`, `entryPointConversionSource:
    /// ctwa_ad`, an ad-looking `externalAdReply`, opaque `ctwaPayload`...) but carries neither a
    /// click ID nor a source ID. Whether that counts as ad origin is the caller's decision.
    AdMarkerOnly(AdReferral),
    /// An ordinary message (or one we cannot read, such as a CIPHERTEXT stub). The sender is still
    /// returned so the caller can link the chat.
    NoAdData {
        sender: Option<Sender>,
        message_id: Option<String>,
    },
}

impl ParseOutcome {
    /// The sender, whatever the outcome.
    pub fn sender(&self) -> Option<&Sender> {
        match self {
            ParseOutcome::Referral(r) | ParseOutcome::AdMarkerOnly(r) => r.sender.as_ref(),
            ParseOutcome::NoAdData { sender, .. } => sender.as_ref(),
        }
    }

    /// The message ID, whatever the outcome.
    pub fn message_id(&self) -> Option<&str> {
        match self {
            ParseOutcome::Referral(r) | ParseOutcome::AdMarkerOnly(r) => r.message_id.as_deref(),
            ParseOutcome::NoAdData { message_id, .. } => message_id.as_deref(),
        }
    }

    /// Orders outcomes when a payload holds several messages: ad data beats a marker beats none.
    fn rank(&self) -> u8 {
        match self {
            ParseOutcome::Referral(_) => 2,
            ParseOutcome::AdMarkerOnly(_) => 1,
            ParseOutcome::NoAdData { .. } => 0,
        }
    }
}

/// Why a payload could not be read. Messages never contain payload content: it holds message text
/// and phone numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("payload is empty")]
    Empty,
    #[error("payload is {bytes} bytes, over the {limit}-byte limit for a webhook body")]
    TooLarge { bytes: usize, limit: usize },
    #[error("payload is not valid JSON (syntax error at line {line}, column {column})")]
    InvalidJson { line: usize, column: usize },
    #[error("payload JSON ends early: it was truncated")]
    Truncated,
    #[error("payload nests objects and arrays deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("payload is a JSON {found}, not an object")]
    NotAnObject { found: &'static str },
    #[error("payload is a JSON object of no known WhatsApp webhook shape: {hint}")]
    UnrecognisedShape { hint: &'static str },
}

impl ParseError {
    /// A short, stable name for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty",
            ParseError::TooLarge { .. } => "too_large",
            ParseError::InvalidJson { .. } => "invalid_json",
            ParseError::Truncated => "truncated",
            ParseError::TooDeep { .. } => "too_deep",
            ParseError::NotAnObject { .. } => "not_an_object",
            ParseError::UnrecognisedShape { .. } => "unrecognised_shape",
        }
    }
}

const UNRECOGNISED_HINT: &str = "expected a Cloud API webhook, value or message (entry / messages / \
     referral), an Evolution or Baileys message (key + message), or a whatsmeow event (Info + Message)";

/// Parses a stored payload given as bytes: size check first, then nesting, then JSON.
pub fn parse_bytes(raw: &[u8]) -> Result<ParseOutcome, ParseError> {
    decode(raw, true)
}

/// Parses a stored payload given as text.
pub fn parse_str(raw: &str) -> Result<ParseOutcome, ParseError> {
    decode(raw.as_bytes(), true)
}

/// Parses an already decoded payload, for example a `jsonb` column read by sqlx.
pub fn parse_value(metadata: &Value) -> Result<ParseOutcome, ParseError> {
    // The value may come from anywhere, so its depth is unchecked: check it without recursion
    // before anything recursive touches it.
    check_value_depth(metadata)?;
    analyse_value(metadata, true)
}

fn decode(raw: &[u8], allow_embedded: bool) -> Result<ParseOutcome, ParseError> {
    if raw.len() > MAX_PAYLOAD_BYTES {
        return Err(ParseError::TooLarge {
            bytes: raw.len(),
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    let raw = raw.strip_prefix(UTF8_BOM).unwrap_or(raw);
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    check_text_depth(raw)?;
    let value: Value = serde_json::from_slice(raw).map_err(json_error)?;
    analyse_value(&value, allow_embedded)
}

fn json_error(e: serde_json::Error) -> ParseError {
    // Only the category and position are kept: serde_json's message can quote the input.
    match e.classify() {
        serde_json::error::Category::Eof => ParseError::Truncated,
        _ => ParseError::InvalidJson {
            line: e.line(),
            column: e.column(),
        },
    }
}

/// Refuses text nesting deeper than [`MAX_DEPTH`] before serde_json sees it, so deep garbage gets
/// [`ParseError::TooDeep`] rather than serde's recursion-limit error (which reads like a syntax
/// error), and no `Value` deeper than our walk allows is ever built.
fn check_text_depth(raw: &[u8]) -> Result<(), ParseError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in raw {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ParseError::TooDeep { limit: MAX_DEPTH });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The same limit for a decoded value, with an explicit stack: a value built in code can be deep
/// enough to overflow the call stack if walked recursively.
fn check_value_depth(value: &Value) -> Result<(), ParseError> {
    let mut stack = vec![(value, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            Value::Object(_) | Value::Array(_) if depth > MAX_DEPTH => {
                return Err(ParseError::TooDeep { limit: MAX_DEPTH });
            }
            Value::Object(m) => stack.extend(m.values().map(|c| (c, depth + 1))),
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

fn analyse_value(value: &Value, allow_embedded: bool) -> Result<ParseOutcome, ParseError> {
    match value {
        Value::Object(obj) => analyse_object(obj),
        // CRMs that stringify before writing to a jsonb column store the webhook as a JSON string
        // holding JSON. Decode that once (never a string within a string).
        Value::String(s) if allow_embedded && s.trim_start().starts_with('{') => {
            decode(s.as_bytes(), false)
        }
        other => Err(ParseError::NotAnObject {
            found: json_kind(other),
        }),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn analyse_object(obj: &Obj) -> Result<ParseOutcome, ParseError> {
    let messages = locate(obj)?;
    let mut best: Option<ParseOutcome> = None;
    for message in messages.into_iter().take(MAX_MESSAGES) {
        let outcome = message.outcome();
        let rank = outcome.rank();
        if best.as_ref().is_none_or(|b| rank > b.rank()) {
            best = Some(outcome);
        }
        if rank == 2 {
            break;
        }
    }
    // A recognised payload with no message in it (a Cloud API `statuses` webhook, say).
    Ok(best.unwrap_or(ParseOutcome::NoAdData {
        sender: None,
        message_id: None,
    }))
}

// ---------------------------------------------------------------------------------------------
// Shape detection: find each message in the payload, its sender and where its ad data can sit.
// ---------------------------------------------------------------------------------------------

/// One message found in a payload.
struct Located<'a> {
    shape: PayloadShape,
    /// The subtree searched for ad data; `None` when the message has no content.
    search_root: Option<&'a Obj>,
    sender: Sender,
    message_id: Option<String>,
    timestamp: Option<DateTime<Utc>>,
    waba_id: Option<String>,
    /// Sent by the business itself: it cannot carry a customer's ad click, and bots often attach
    /// `externalAdReply` link cards to what they send.
    from_me: bool,
}

impl<'a> Located<'a> {
    fn new(shape: PayloadShape, search_root: Option<&'a Obj>) -> Self {
        Located {
            shape,
            search_root,
            sender: Sender::default(),
            message_id: None,
            timestamp: None,
            waba_id: None,
            from_me: false,
        }
    }
}

fn locate(obj: &Obj) -> Result<Vec<Located<'_>>, ParseError> {
    use PayloadShape::*;

    // Cloud API: the full envelope, a `change` object, or its `value`.
    if let Some(entries) = obj.get("entry").and_then(Value::as_array) {
        return Ok(cloud_envelope(entries));
    }
    if is_cloud_value(obj) {
        return Ok(cloud_value(obj, None));
    }
    if let Some(value) = child_obj(obj, "value").filter(|v| is_cloud_value(v)) {
        return Ok(cloud_value(value, None));
    }

    // whatsmeow events (`Info` + `Message`), bare or wrapped by wuzapi (`event`) or others (`data`).
    let wrapped = [Some(obj), child_obj(obj, "event"), child_obj(obj, "data")];
    for node in wrapped.into_iter().flatten() {
        if let Some(info) = field_obj(node, "info").filter(|i| is_whatsmeow_info(i)) {
            return Ok(vec![whatsmeow_event(node, info)]);
        }
    }

    // uazapi's own message layout, under `message` (v2), under `data` (v1) or stored alone.
    let wrapped = [child_obj(obj, "message"), child_obj(obj, "data"), Some(obj)];
    for node in wrapped.into_iter().flatten() {
        if is_uazapi_message(node) {
            return Ok(vec![uazapi_message(node)]);
        }
    }

    // Evolution API envelope: `data` is the message (or, rarely, a list of them).
    if obj.contains_key("event") || obj.contains_key("instance") {
        if let Some(data) = obj.get("data").filter(|d| d.is_object() || d.is_array()) {
            return Ok(wamessages(data, Evolution));
        }
    }
    // A Baileys `messages.upsert` event as emitted by the socket: `{messages: [...], type}`.
    if let Some(list) = obj.get("messages").filter(|m| is_wamessage_list(m)) {
        return Ok(wamessages(list, Baileys));
    }
    if is_wamessage(obj) {
        // Evolution's `data` is a WAMessage plus fields Evolution adds; raw Baileys has none.
        let evolution_only = [
            "messageType",
            "instanceId",
            "contextInfo",
            "source",
            "owner",
        ];
        let shape = if evolution_only.iter().any(|k| obj.contains_key(*k)) {
            Evolution
        } else {
            Baileys
        };
        return Ok(vec![wamessage(obj, shape)]);
    }

    // Last, because its keys are the most generic: a single Cloud API message.
    if is_cloud_message(obj) {
        return Ok(vec![cloud_message(obj, &[], None)]);
    }
    Err(ParseError::UnrecognisedShape {
        hint: UNRECOGNISED_HINT,
    })
}

fn is_cloud_value(obj: &Obj) -> bool {
    let has_list = |k: &str| obj.get(k).is_some_and(Value::is_array);
    (has_list("messages") || has_list("statuses"))
        && ["messaging_product", "metadata", "contacts"]
            .iter()
            .any(|k| obj.contains_key(*k))
}

fn is_cloud_message(obj: &Obj) -> bool {
    if obj.contains_key("key") {
        return false;
    }
    obj.get("referral").is_some_and(Value::is_object)
        || ((obj.contains_key("from") || obj.contains_key("from_user_id"))
            && ["id", "timestamp", "type"]
                .iter()
                .all(|k| obj.contains_key(*k)))
}

fn is_whatsmeow_info(info: &Obj) -> bool {
    ["id", "sender", "chat"]
        .iter()
        .any(|k| field(info, k).is_some())
}

fn is_uazapi_message(node: &Obj) -> bool {
    // Keys only uazapi uses; Evolution, Baileys and the Cloud API have none of them.
    [
        "messageid",
        "chatid",
        "sender_pn",
        "sender_lid",
        "chatlid",
        "wasSentByApi",
    ]
    .iter()
    .any(|k| node.contains_key(*k))
}

fn is_wamessage(obj: &Obj) -> bool {
    obj.get("key").is_some_and(Value::is_object)
        && ["message", "messageTimestamp", "messageStubType"]
            .iter()
            .any(|k| obj.contains_key(*k))
}

fn is_wamessage_list(value: &Value) -> bool {
    value
        .as_array()
        .is_some_and(|a| a.iter().any(|m| m.as_object().is_some_and(is_wamessage)))
}

fn cloud_envelope(entries: &[Value]) -> Vec<Located<'_>> {
    let mut found = Vec::new();
    for entry in entries.iter().filter_map(Value::as_object) {
        let waba_id = entry.get("id").and_then(id_text);
        let changes = entry.get("changes").and_then(Value::as_array);
        for change in changes.into_iter().flatten().filter_map(Value::as_object) {
            if let Some(value) = child_obj(change, "value") {
                found.extend(cloud_value(value, waba_id.clone()));
            }
            // The cap is on the total, so a payload of many small entries stays bounded too.
            if found.len() >= MAX_MESSAGES {
                found.truncate(MAX_MESSAGES);
                return found;
            }
        }
    }
    found
}

fn cloud_value(value: &Obj, waba_id: Option<String>) -> Vec<Located<'_>> {
    let contacts: Vec<&Obj> = value
        .get("contacts")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(Value::as_object)
                .take(MAX_MESSAGES)
                .collect()
        })
        .unwrap_or_default();
    value
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .take(MAX_MESSAGES)
        .map(|m| cloud_message(m, &contacts, waba_id.clone()))
        .collect()
}

fn cloud_message<'a>(msg: &'a Obj, contacts: &[&Obj], waba_id: Option<String>) -> Located<'a> {
    let mut phone = msg.get("from").and_then(phone_digits);
    let mut bsuid = text(msg, "from_user_id").or_else(|| text(msg, "user_id"));
    // The contact is matched to the message by phone or BSUID; a single contact is the sender.
    let contact = contacts
        .iter()
        .find(|c| {
            let wa_id = c.get("wa_id").and_then(phone_digits);
            (phone.is_some() && wa_id == phone) || (bsuid.is_some() && text(c, "user_id") == bsuid)
        })
        .or(if contacts.len() == 1 {
            contacts.first()
        } else {
            None
        });
    let mut push_name = None;
    if let Some(c) = contact {
        phone = phone.or_else(|| c.get("wa_id").and_then(phone_digits));
        bsuid = bsuid.or_else(|| text(c, "user_id"));
        push_name = child_obj(c, "profile").and_then(|p| text(p, "name"));
    }

    let mut located = Located::new(PayloadShape::CloudApi, Some(msg));
    located.sender = Sender {
        phone_digits: phone,
        lid: None,
        bsuid,
        push_name,
    };
    located.message_id = text(msg, "id");
    located.timestamp = msg.get("timestamp").and_then(timestamp);
    located.waba_id = waba_id;
    located
}

fn whatsmeow_event<'a>(node: &'a Obj, info: &'a Obj) -> Located<'a> {
    let mut located = Located::new(PayloadShape::Whatsmeow, field_obj(node, "message"));
    // `Chat` names the group for group messages; `jid_identity` ignores group JIDs.
    located.sender = sender_from_jids(
        ["sender", "senderalt", "chat"]
            .iter()
            .filter_map(|k| field(info, k)),
        field(info, "pushname"),
    );
    located.message_id = field(info, "id").and_then(id_text);
    located.timestamp = field(info, "timestamp").and_then(timestamp);
    located.from_me = field(info, "isfromme").and_then(Value::as_bool) == Some(true);
    located
}

fn uazapi_message(node: &Obj) -> Located<'_> {
    let mut located = Located::new(PayloadShape::Whatsmeow, Some(node));
    located.sender = sender_from_jids(
        ["sender_pn", "chatid", "sender", "sender_lid", "chatlid"]
            .iter()
            .filter_map(|k| node.get(*k)),
        node.get("senderName"),
    );
    // `id` is `owner:messageid`; the bare WhatsApp ID is in `messageid`.
    located.message_id = text(node, "messageid").or_else(|| text(node, "id"));
    located.timestamp = node.get("messageTimestamp").and_then(timestamp);
    located.from_me = ["fromMe", "wasSentByApi"]
        .iter()
        .any(|k| node.get(*k).and_then(Value::as_bool) == Some(true));
    located
}

fn wamessages(value: &Value, shape: PayloadShape) -> Vec<Located<'_>> {
    match value {
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_object)
            .take(MAX_MESSAGES)
            .map(|m| wamessage(m, shape))
            .collect(),
        Value::Object(obj) => match obj.get("messages") {
            Some(list) if is_wamessage_list(list) => wamessages(list, shape),
            _ => vec![wamessage(obj, shape)],
        },
        _ => Vec::new(),
    }
}

fn wamessage(msg: &Obj, shape: PayloadShape) -> Located<'_> {
    let key = child_obj(msg, "key");
    let key_field = |k: &str| key.and_then(|key| key.get(k));
    let mut located = Located::new(shape, Some(msg));
    // In a group `remoteJid` is the group and the sender is the participant; with LID addressing
    // the phone-number JID may sit in any of the `*Alt` / `*Pn` fields (Baileys'
    // `remoteJidAlt`, src/Types/Message.ts).
    let jids = [
        "remoteJid",
        "remoteJidAlt",
        "participant",
        "participantAlt",
        "participantPn",
        "senderPn",
        "senderLid",
    ]
    .into_iter()
    .filter_map(key_field)
    .chain(msg.get("participant"))
    // Evolution's non-upsert events put the JID at the top of `data`.
    .chain(msg.get("remoteJid"));
    located.sender = sender_from_jids(jids, msg.get("pushName"));
    located.message_id = key_field("id").and_then(id_text);
    located.timestamp = msg.get("messageTimestamp").and_then(timestamp);
    located.from_me = key_field("fromMe").and_then(Value::as_bool) == Some(true);
    located
}

// ---------------------------------------------------------------------------------------------
// Ad data: collect every place it can sit in one message, pick the best, merge markers.
// ---------------------------------------------------------------------------------------------

/// Subtrees never searched.
/// - `quotedMessage` / `quoted`: a reply quotes an earlier message, often the business's own
///   (whose bot may have attached an `externalAdReply` card); that is not this message's origin.
/// - `messageContextInfo`: device metadata. Evolution 2.4.0-rc read it instead of the content's
///   `contextInfo` and lost every CTWA attribution for text messages
///   (evolution-foundation/evolution-api#2721).
const SKIPPED_KEYS: [&str; 3] = ["quotedmessage", "quoted", "messagecontextinfo"];

/// One `externalAdReply` or `referral` object.
struct AdSpot<'a> {
    ad: &'a Obj,
    /// For an `externalAdReply`, the object holding it (normally the `contextInfo`, whose
    /// conversion markers belong to the same ad). `None` for a Cloud API `referral`, which sits
    /// directly on the message.
    holder: Option<&'a Obj>,
}

#[derive(Default)]
struct Spots<'a> {
    ads: Vec<AdSpot<'a>>,
    contexts: Vec<&'a Obj>,
}

impl<'a> Spots<'a> {
    /// Depth is bounded by the depth check done before any analysis.
    fn collect(&mut self, obj: &'a Obj) {
        for (key, value) in obj {
            if SKIPPED_KEYS.iter().any(|s| key_matches(key, s)) {
                continue;
            }
            if let Value::Object(child) = value {
                if key_matches(key, "externaladreply") {
                    self.ads.push(AdSpot {
                        ad: child,
                        holder: Some(obj),
                    });
                } else if key_matches(key, "referral") {
                    self.ads.push(AdSpot {
                        ad: child,
                        holder: None,
                    });
                } else if key_matches(key, "contextinfo") {
                    self.contexts.push(child);
                }
            }
            self.collect_value(value);
        }
    }

    fn collect_value(&mut self, value: &'a Value) {
        match value {
            Value::Object(obj) => self.collect(obj),
            Value::Array(items) => items.iter().for_each(|v| self.collect_value(v)),
            _ => {}
        }
    }
}

/// The ad fields of one `externalAdReply` / `referral`.
#[derive(Default)]
struct AdFields {
    source_id: Option<String>,
    source_type: Option<String>,
    source_url: Option<String>,
    source_app: Option<String>,
    ctwa_clid: Option<String>,
    headline: Option<String>,
    body: Option<String>,
    media_type: Option<MediaType>,
    image_url: Option<String>,
    video_url: Option<String>,
    thumbnail_url: Option<String>,
    /// Looks like an ad, not a bot's link card: see [`AdFields::read`].
    ad_like: bool,
}

impl AdFields {
    /// Keys are matched ignoring case and `_`, so `source_id`, `sourceId`, `sourceID` and
    /// `SourceID` are one key: each gateway spells them differently.
    fn read(ad: &Obj, is_cloud_referral: bool) -> AdFields {
        let media_type = field(ad, "mediatype").and_then(media_type);
        // Baileys has one `mediaUrl` for either creative type (for videos, often the reel page).
        let media_url = || text_field(ad, "mediaurl");
        let fields = AdFields {
            source_id: field(ad, "sourceid").and_then(id_text),
            source_type: text_field(ad, "sourcetype").map(|s| s.to_lowercase()),
            source_url: text_field(ad, "sourceurl"),
            source_app: text_field(ad, "sourceapp").map(|s| s.to_lowercase()),
            ctwa_clid: text_field(ad, "ctwaclid"),
            headline: text_field(ad, "headline").or_else(|| text_field(ad, "title")),
            body: text_field(ad, "body"),
            image_url: text_field(ad, "imageurl").or_else(|| match media_type {
                Some(MediaType::Image) => text_field(ad, "originalimageurl").or_else(media_url),
                _ => None,
            }),
            video_url: text_field(ad, "videourl").or_else(|| match media_type {
                Some(MediaType::Video) => media_url(),
                _ => None,
            }),
            thumbnail_url: text_field(ad, "thumbnailurl"),
            media_type,
            ad_like: false,
        };
        // Bots attach `externalAdReply` cards (title, thumbnail, link) to ordinary messages; an
        // ad's carries a source or the attribution flag. A Cloud API `referral` only exists for ads.
        let ad_like = if is_cloud_referral {
            fields.has_any()
        } else {
            fields.source_type.is_some()
                || fields.source_url.is_some()
                || field(ad, "showadattribution").and_then(Value::as_bool) == Some(true)
        };
        AdFields { ad_like, ..fields }
    }

    fn has_ids(&self) -> bool {
        self.source_id.is_some() || self.ctwa_clid.is_some()
    }

    fn has_any(&self) -> bool {
        self.has_ids()
            || self.source_type.is_some()
            || self.source_url.is_some()
            || self.headline.is_some()
            || self.body.is_some()
            || self.media_type.is_some()
            || self.image_url.is_some()
            || self.video_url.is_some()
            || self.thumbnail_url.is_some()
    }

    /// Both IDs beat one; the click ID (what CAPI needs) beats the source ID alone.
    fn rank(&self) -> u8 {
        u8::from(self.ctwa_clid.is_some()) * 2 + u8::from(self.source_id.is_some())
    }

    /// Two spots describe the same ad unless their IDs disagree. Evolution, for one, copies the
    /// content's `contextInfo` to `data.contextInfo`, and a copy may be missing fields.
    fn same_ad(&self, other: &AdFields) -> bool {
        let agree = |a: &Option<String>, b: &Option<String>| a.is_none() || b.is_none() || a == b;
        agree(&self.source_id, &other.source_id) && agree(&self.ctwa_clid, &other.ctwa_clid)
    }

    fn fill_from(&mut self, other: &AdFields) {
        fn fill<T: Clone>(mine: &mut Option<T>, theirs: &Option<T>) {
            if mine.is_none() {
                mine.clone_from(theirs);
            }
        }
        fill(&mut self.source_id, &other.source_id);
        fill(&mut self.source_type, &other.source_type);
        fill(&mut self.source_url, &other.source_url);
        fill(&mut self.source_app, &other.source_app);
        fill(&mut self.ctwa_clid, &other.ctwa_clid);
        fill(&mut self.headline, &other.headline);
        fill(&mut self.body, &other.body);
        fill(&mut self.media_type, &other.media_type);
        fill(&mut self.image_url, &other.image_url);
        fill(&mut self.video_url, &other.video_url);
        fill(&mut self.thumbnail_url, &other.thumbnail_url);
        self.ad_like |= other.ad_like;
    }
}

/// `conversionSource` values that mean a Meta ad or post (observed: `FB_Ads`, `FB_Post`).
fn is_ad_conversion_source(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    v.ends_with("_ads") || v.ends_with("_post")
}

/// `entryPointConversionSource` values that mean a Meta ad or post; others such as
/// `click_to_chat_link` (a wa.me link) or `global_search_new_chat` are not ad origins.
fn is_ad_entry_point(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    v.starts_with("ctwa") || v == "post_cta"
}

impl Located<'_> {
    fn outcome(self) -> ParseOutcome {
        let message_id = self.message_id;
        if self.from_me {
            return ParseOutcome::NoAdData {
                sender: None,
                message_id,
            };
        }
        let Some(root) = self.search_root else {
            return ParseOutcome::NoAdData {
                sender: self.sender.into_option(),
                message_id,
            };
        };

        let mut spots = Spots::default();
        spots.collect(root);
        let candidates: Vec<AdFields> = spots
            .ads
            .iter()
            .map(|s| AdFields::read(s.ad, s.holder.is_none())) // no holder: a Cloud referral
            .collect();
        // First spot of the highest rank wins; the others fill its gaps if they are the same ad.
        let mut winner: Option<usize> = None;
        for (i, candidate) in candidates.iter().enumerate() {
            if winner.is_none_or(|w| candidate.rank() > candidates[w].rank()) {
                winner = Some(i);
            }
        }
        let mut ad = AdFields::default();
        if let Some(w) = winner {
            ad.fill_from(&candidates[w]);
            for (i, other) in candidates.iter().enumerate() {
                if i != w && ad.same_ad(other) {
                    ad.fill_from(other);
                }
            }
        }

        // Markers: the winner's own contextInfo first, then any other, then the message itself
        // (some gateways flatten the contextInfo fields into it).
        let marker_sources: Vec<&Obj> = winner
            .and_then(|w| spots.ads[w].holder)
            .into_iter()
            .chain(spots.contexts.iter().copied())
            .chain(std::iter::once(root))
            .collect();
        let marker = |key: &str| marker_sources.iter().find_map(|o| text_field(o, key));
        let conversion_source = marker("conversionsource");
        let entry_point = marker("entrypointconversionsource");
        let source_app = ad
            .source_app
            .take()
            .or_else(|| marker("entrypointconversionapp").map(|s| s.to_lowercase()));
        // Since Feb 2026 some CTWA messages carry only these opaque blobs (Baileys#2354).
        let opaque_ctwa = marker_sources.iter().any(|o| {
            ["ctwapayload", "ctwasignals", "conversiondata"]
                .iter()
                .any(|k| field(o, k).is_some_and(non_empty))
        });
        let from_ad = ad.ad_like
            || opaque_ctwa
            || conversion_source
                .as_deref()
                .is_some_and(is_ad_conversion_source)
            || entry_point.as_deref().is_some_and(is_ad_entry_point);

        let has_ids = ad.has_ids();
        if !has_ids && !from_ad {
            return ParseOutcome::NoAdData {
                sender: self.sender.into_option(),
                message_id,
            };
        }
        let referral = AdReferral {
            shape: self.shape,
            source_id: ad.source_id,
            source_type: ad.source_type,
            source_url: ad.source_url,
            source_app,
            ctwa_clid: ad.ctwa_clid,
            headline: ad.headline,
            body: ad.body,
            media_type: ad.media_type,
            image_url: ad.image_url,
            video_url: ad.video_url,
            thumbnail_url: ad.thumbnail_url,
            conversion_source,
            entry_point_conversion_source: entry_point,
            message_id,
            sender: self.sender.into_option(),
            message_timestamp: self.timestamp,
            waba_id: self.waba_id,
        };
        if has_ids {
            ParseOutcome::Referral(referral)
        } else {
            ParseOutcome::AdMarkerOnly(referral)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Value helpers.
// ---------------------------------------------------------------------------------------------

/// `key` equals `want` ignoring ASCII case and underscores; `want` is lowercase without `_`.
fn key_matches(key: &str, want: &str) -> bool {
    key.bytes()
        .filter(|b| *b != b'_')
        .map(|b| b.to_ascii_lowercase())
        .eq(want.bytes())
}

/// The first field whose key matches `want` (see [`key_matches`]) and is not null.
fn field<'a>(obj: &'a Obj, want: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, v)| !v.is_null() && key_matches(k, want))
        .map(|(_, v)| v)
}

fn field_obj<'a>(obj: &'a Obj, want: &str) -> Option<&'a Obj> {
    field(obj, want).and_then(Value::as_object)
}

fn child_obj<'a>(obj: &'a Obj, key: &str) -> Option<&'a Obj> {
    obj.get(key).and_then(Value::as_object)
}

/// A trimmed, non-empty string.
fn as_text(value: &Value) -> Option<String> {
    let s = value.as_str()?.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn text(obj: &Obj, key: &str) -> Option<String> {
    obj.get(key).and_then(as_text)
}

fn text_field(obj: &Obj, want: &str) -> Option<String> {
    field(obj, want).and_then(as_text)
}

/// An identifier given as a string or an integer. A float cannot hold an 18-digit ad ID exactly,
/// so it is treated as absent rather than stored wrong.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => as_text(value),
    }
}

fn non_empty(value: &Value) -> bool {
    match value {
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// `image`/`video` (Cloud API), `1`/`2` (Baileys enum), `"IMAGE"`/`"VIDEO"` (Evolution, whatsmeow).
fn media_type(value: &Value) -> Option<MediaType> {
    let code = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                return None;
            }
            match s.to_ascii_lowercase().as_str() {
                "image" | "photo" => return Some(MediaType::Image),
                "video" => return Some(MediaType::Video),
                "none" => return Some(MediaType::None),
                other => other.parse::<u64>().ok(),
            }
        }
        _ => return None,
    };
    Some(match code {
        Some(0) => MediaType::None,
        Some(1) => MediaType::Image,
        Some(2) => MediaType::Video,
        _ => MediaType::Unknown,
    })
}

/// 2009-01-01, the year WhatsApp launched; anything earlier is a default or garbage.
const MIN_TIMESTAMP: i64 = 1_230_768_000;
/// 2100-01-01; later values are in a finer unit than seconds.
const MAX_TIMESTAMP: i64 = 4_102_444_800;

/// Seconds as a number, a digit string or a protobuf.js `Long` (`{low, high}`); milliseconds and
/// finer (uazapi sends milliseconds); or an RFC 3339 string (whatsmeow's Go `time.Time`).
fn timestamp(value: &Value) -> Option<DateTime<Utc>> {
    let raw: i64 = match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0 && *f < 9.0e18)
                    .map(|f| f as i64)
            })?,
        Value::String(s) => {
            let s = s.trim();
            match s.parse::<i64>() {
                Ok(n) => n,
                Err(_) => {
                    return DateTime::parse_from_rfc3339(s)
                        .ok()
                        .map(|t| t.with_timezone(&Utc))
                        .filter(|t| (MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(&t.timestamp()));
                }
            }
        }
        Value::Object(long) => {
            let low = long.get("low").and_then(Value::as_i64)?;
            let high = long.get("high").and_then(Value::as_i64).unwrap_or(0);
            // protobuf.js stores both halves as signed 32-bit numbers.
            (((high as u32 as u64) << 32) | (low as u32 as u64)) as i64
        }
        _ => return None,
    };
    let mut secs = raw;
    for _ in 0..3 {
        if secs <= MAX_TIMESTAMP {
            break;
        }
        secs /= 1000;
    }
    if !(MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(&secs) {
        return None;
    }
    DateTime::from_timestamp(secs, 0)
}

/// What a JID (or a bare number) identifies.
enum Identity {
    Phone(String),
    Lid(String),
}

/// `5511987654321@s.whatsapp.net`, `5511987654321:12@s.whatsapp.net` (device),
/// `5511987654321@c.us`, `5511987654321` or `+55 11 98765-4321` are phones; `…@lid` is a LID.
/// Groups, broadcasts and newsletters identify no person.
fn jid_identity(value: &Value) -> Option<Identity> {
    let raw = as_text(value)?;
    let (user, server) = match raw.split_once('@') {
        Some((user, server)) => (user, server.to_ascii_lowercase()),
        None => (raw.as_str(), String::new()),
    };
    // whatsmeow's string form is `user.agent:device@server`; only `user` names the person.
    let user = user.split([':', '.']).next().unwrap_or_default();
    match server.as_str() {
        "lid" | "hosted.lid" => {
            let ok = !user.is_empty() && user.bytes().all(|b| b.is_ascii_digit());
            ok.then(|| Identity::Lid(format!("{user}@lid")))
        }
        "" | "s.whatsapp.net" | "c.us" | "hosted" => {
            let allowed = |c: char| c.is_ascii_digit() || " +-()".contains(c);
            if !user.chars().all(allowed) {
                return None;
            }
            let digits: String = user.chars().filter(char::is_ascii_digit).collect();
            // E.164 numbers have at most 15 digits; fewer than 8 is no phone number.
            (8..=15)
                .contains(&digits.len())
                .then_some(Identity::Phone(digits))
        }
        _ => None,
    }
}

fn phone_digits(value: &Value) -> Option<String> {
    match jid_identity(value)? {
        Identity::Phone(digits) => Some(digits),
        Identity::Lid(_) => None,
    }
}

/// The first phone and the first LID among `jids`, in the caller's order of preference.
fn sender_from_jids<'a>(
    jids: impl IntoIterator<Item = &'a Value>,
    push_name: Option<&Value>,
) -> Sender {
    let mut sender = Sender {
        push_name: push_name.and_then(as_text),
        ..Sender::default()
    };
    for jid in jids {
        match jid_identity(jid) {
            Some(Identity::Phone(p)) if sender.phone_digits.is_none() => {
                sender.phone_digits = Some(p)
            }
            Some(Identity::Lid(l)) if sender.lid.is_none() => sender.lid = Some(l),
            _ => {}
        }
    }
    sender
}
