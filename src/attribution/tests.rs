//! Fixture and edge-case tests for the CTWA parser. Every fixture under
//! `tests/fixtures/whatsapp/` is asserted field by field against the whole expected result.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/whatsapp/",
            $name
        ))
        .as_slice()
    };
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn at(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0)
}

fn sender(phone: Option<&str>, lid: Option<&str>, push: Option<&str>) -> Option<Sender> {
    Some(Sender {
        phone_digits: phone.map(str::to_owned),
        lid: lid.map(str::to_owned),
        bsuid: None,
        push_name: push.map(str::to_owned),
    })
}

/// An `AdReferral` with nothing but its shape, for struct-update syntax.
fn empty(shape: PayloadShape) -> AdReferral {
    AdReferral {
        shape,
        source_id: None,
        source_type: None,
        source_url: None,
        source_app: None,
        ctwa_clid: None,
        headline: None,
        body: None,
        media_type: None,
        image_url: None,
        video_url: None,
        thumbnail_url: None,
        conversion_source: None,
        entry_point_conversion_source: None,
        message_id: None,
        sender: None,
        message_timestamp: None,
        waba_id: None,
    }
}

#[track_caller]
fn referral(raw: &[u8]) -> AdReferral {
    match parse_bytes(raw) {
        Ok(ParseOutcome::Referral(r)) => r,
        other => panic!("expected a Referral, got {other:?}"),
    }
}

#[track_caller]
fn outcome(value: Value) -> ParseOutcome {
    parse_value(&value).expect("parses")
}

// ---------------------------------------------------------------------------------------------
// Cloud API
// ---------------------------------------------------------------------------------------------

#[test]
fn cloud_api_full_envelope_image_ad() {
    let expected = AdReferral {
        source_id: s("120226305854810726"),
        source_type: s("ad"),
        source_url: s("https://fb.me/3kT9xQw2a"),
        ctwa_clid: s("ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0-eM-GABDLOPaOdRMv-_zfUQ2a"),
        headline: s("Fale conosco"),
        body: s("Banho e tosa com 20% de desconto na primeira visita."),
        media_type: Some(MediaType::Image),
        image_url: s("https://scontent.xx.fbcdn.net/v/t45.1600-4/illustrative_image_n.jpg"),
        message_id: s("wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBMDk4N0U2RkQ0QzJCMUE5RTdGAA=="),
        sender: sender(Some("5511987654321"), None, Some("Maria")),
        message_timestamp: at(1_789_433_294),
        waba_id: s("104857600123456"),
        ..empty(PayloadShape::CloudApi)
    };
    assert_eq!(
        referral(fixture!("cloud_api_full_envelope_image_ad.json")),
        expected
    );
}

#[test]
fn cloud_api_message_only_video_ad() {
    let expected = AdReferral {
        source_id: s("120229876543210987"),
        source_type: s("ad"),
        source_url: s("https://www.instagram.com/p/Dx7illustrative/"),
        ctwa_clid: s("Afc3nYt4TTydumlFFsatFz8bR2yHCtVA92Veu_zDE4Dg-illustrative"),
        headline: s("Agende sua aula"),
        body: s("Aulas experimentais gratuitas esta semana."),
        media_type: Some(MediaType::Video),
        video_url: s("https://video.xx.fbcdn.net/v/t42.1790-2/illustrative_video_n.mp4"),
        thumbnail_url: s("https://scontent.xx.fbcdn.net/v/t15.5256-10/illustrative_thumb_n.jpg"),
        message_id: s("wamid.HBgNNTUyMTk5ODc2NTQzMhUCABIYFDNBNUY0QzIxOUUwQjdEOEMxQjZBAA=="),
        sender: sender(Some("5521998765432"), None, None),
        message_timestamp: at(1_789_433_300),
        ..empty(PayloadShape::CloudApi)
    };
    assert_eq!(
        referral(fixture!("cloud_api_message_only_video_ad.json")),
        expected
    );
}

/// Ads shown in WhatsApp Status come without `ctwa_clid`: the source ID alone is still ad data.
#[test]
fn cloud_api_status_ad_without_click_id_is_still_a_referral() {
    let expected = AdReferral {
        source_id: s("120230000111222333"),
        source_type: s("ad"),
        source_url: s("https://fb.me/7Yh2PqLm"),
        headline: s("Promoção de setembro"),
        body: s("Últimas unidades em estoque."),
        media_type: Some(MediaType::Image),
        image_url: s("https://scontent.xx.fbcdn.net/v/t45.1600-4/illustrative_status_n.jpg"),
        message_id: s("wamid.HBgMNTUzMTg3NjU0MzIxFQIAEhgUM0FCMTIzNDU2Nzg5MEFCQ0RFRjAA"),
        sender: sender(Some("553187654321"), None, Some("João")),
        message_timestamp: at(1_789_433_400),
        ..empty(PayloadShape::CloudApi)
    };
    let got = referral(fixture!("cloud_api_status_ad_no_clid.json"));
    assert_eq!(got.ctwa_clid, None);
    assert_eq!(got, expected);
}

/// A user with a username may come with a BSUID and no phone number at all.
#[test]
fn cloud_api_bsuid_without_phone() {
    let expected = AdReferral {
        source_id: s("120231112223334445"),
        source_type: s("ad"),
        source_url: s("https://fb.me/9AbCdEf"),
        ctwa_clid: s("AfhBSUIDexampleClid_0123456789-abcdefghijklmnopqrstuvwxyz"),
        headline: s("Compre pelo WhatsApp"),
        body: s("Ração premium com frete grátis."),
        media_type: Some(MediaType::Image),
        image_url: s("https://scontent.xx.fbcdn.net/v/t45.1600-4/illustrative_bsuid_n.jpg"),
        message_id: s("wamid.HBgTQlIuMTUwMjU3NjM5NDY1NTg0MxUCABIYFDNBQzQ1NkQ3OEU5RjAxMjM0NTY3AA=="),
        sender: Some(Sender {
            phone_digits: None,
            lid: None,
            bsuid: s("BR.1502576394655843"),
            push_name: s("Ana"),
        }),
        message_timestamp: at(1_789_433_500),
        waba_id: s("104857600123456"),
        ..empty(PayloadShape::CloudApi)
    };
    assert_eq!(
        referral(fixture!("cloud_api_bsuid_no_phone.json")),
        expected
    );
}

#[test]
fn cloud_api_statuses_only_webhook_has_no_ad_data() {
    let statuses = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "2"},
                  "statuses": [{"id": "wamid.X", "status": "read", "recipient_id": "5511987654321"}]}}]}]});
    assert_eq!(
        outcome(statuses),
        ParseOutcome::NoAdData {
            sender: None,
            message_id: None
        }
    );
}

#[test]
fn cloud_api_batch_prefers_the_message_with_a_referral() {
    let batch = json!({"messaging_product": "whatsapp", "contacts": [
            {"profile": {"name": "A"}, "wa_id": "5511911111111"},
            {"profile": {"name": "B"}, "wa_id": "5511922222222"}],
        "messages": [
            {"from": "5511911111111", "id": "wamid.A", "timestamp": "1789433294", "type": "text", "text": {"body": "oi"}},
            {"from": "5511922222222", "id": "wamid.B", "timestamp": "1789433295", "type": "text", "text": {"body": "oi"},
             "referral": {"source_id": "120200000000000001", "source_type": "ad", "ctwa_clid": "clid-B"}}]});
    let ParseOutcome::Referral(r) = outcome(batch) else {
        panic!("expected a Referral")
    };
    assert_eq!(r.message_id.as_deref(), Some("wamid.B"));
    // The contact is matched by wa_id, not by position.
    assert_eq!(r.sender, sender(Some("5511922222222"), None, Some("B")));
}

#[test]
fn cloud_api_change_object_is_accepted() {
    let change = json!({"field": "messages", "value": {"messaging_product": "whatsapp",
        "messages": [{"from": "5511987654321", "id": "wamid.C", "timestamp": 1789433294, "type": "text",
                      "referral": {"source_id": 120200000000000002u64, "source_type": "post"}}]}});
    let ParseOutcome::Referral(r) = outcome(change) else {
        panic!("expected a Referral")
    };
    // A numeric ID keeps all its digits; `post` is kept so the caller knows it is not an ad ID.
    assert_eq!(r.source_id.as_deref(), Some("120200000000000002"));
    assert_eq!(r.source_type.as_deref(), Some("post"));
    assert_eq!(r.message_timestamp, at(1_789_433_294));
}

// ---------------------------------------------------------------------------------------------
// Evolution API and Baileys
// ---------------------------------------------------------------------------------------------

#[test]
fn evolution_messages_upsert_conversation() {
    let expected = AdReferral {
        source_id: s("120246244376650582"),
        source_type: s("ad"),
        source_url: s("https://www.instagram.com/p/DxIllustr4tive/"),
        source_app: s("instagram"),
        ctwa_clid: s("Afc3nYt4TTydumlFFsatFz8bR2yHCtVA92Veu_zDE4DgWQ9-illustrative"),
        headline: s("SEU PET MERECE UM DIA DE SPA!"),
        body: s("Na clínica, seu melhor amigo recebe banho, tosa e carinho."),
        media_type: Some(MediaType::Video),
        video_url: s("https://www.facebook.com/reel/1000000000000001/"),
        thumbnail_url: s(
            "https://scontent.xx.fbcdn.net/v/t15.5256-10/illustrative_spa_thumb_n.jpg",
        ),
        conversion_source: s("FB_Ads"),
        entry_point_conversion_source: s("ctwa_ad"),
        message_id: s("3EB0A1B2C3D4E5F6"),
        sender: sender(
            Some("5511987654321"),
            Some("213709100187796@lid"),
            Some("Maria"),
        ),
        message_timestamp: at(1_789_433_294),
        ..empty(PayloadShape::Evolution)
    };
    assert_eq!(
        referral(fixture!("evolution_messages_upsert_conversation.json")),
        expected
    );
}

/// Ad data only inside `message.extendedTextMessage.contextInfo`; bytes fields arrive as
/// index-keyed objects and timestamps as protobuf.js `Long`s.
#[test]
fn evolution_extended_text_nested() {
    let expected = AdReferral {
        source_id: s("120212345678901234"),
        source_type: s("ad"),
        source_url: s("https://fb.me/2ZxYwVu"),
        source_app: s("facebook"),
        ctwa_clid: s("ARAnestedExtendedTextClid_9f8e7d6c5b4a-illustrative"),
        headline: s("Consultoria gratuita"),
        body: s("Descubra quanto sua empresa pode economizar em impostos."),
        media_type: Some(MediaType::Image),
        thumbnail_url: s("https://scontent.xx.fbcdn.net/v/t45.1600-4/illustrative_consult_n.jpg"),
        conversion_source: s("FB_Ads"),
        entry_point_conversion_source: s("ctwa_ad"),
        message_id: s("3A9F1E2D3C4B5A697887"),
        sender: sender(Some("5541988887777"), None, Some("Carla")),
        message_timestamp: at(1_789_433_294),
        ..empty(PayloadShape::Evolution)
    };
    assert_eq!(
        referral(fixture!("evolution_extended_text_nested.json")),
        expected
    );
}

/// `mediaType: "IMAGE"`, a string timestamp, `contextInfo: null` at the top, no `sourceApp`
/// (taken from `entryPointConversionApp`), and Evolution's `data` stored without its envelope.
#[test]
fn evolution_string_media_type() {
    let expected = AdReferral {
        source_id: s("120208765432109876"),
        source_type: s("ad"),
        source_url: s("https://fb.me/5TeNiS"),
        source_app: s("facebook"),
        ctwa_clid: s("ARAstringMediaTypeClid-0a1b2c3d4e5f-illustrative"),
        headline: s("Tênis de corrida - coleção 2026"),
        body: s("Frete grátis para todo o Brasil."),
        media_type: Some(MediaType::Image),
        image_url: s("https://scontent.xx.fbcdn.net/v/t45.1600-4/illustrative_tenis_full_n.jpg"),
        thumbnail_url: s(
            "https://scontent.xx.fbcdn.net/v/t45.1600-4/illustrative_tenis_thumb_n.jpg",
        ),
        conversion_source: s("FB_Ads"),
        entry_point_conversion_source: s("ctwa_ad"),
        message_id: s("3EB07C6D5E4F3A2B1C0D"),
        sender: sender(Some("5511976543210"), None, Some("Pedro")),
        message_timestamp: at(1_789_433_294),
        ..empty(PayloadShape::Evolution)
    };
    assert_eq!(
        referral(fixture!("evolution_string_media_type.json")),
        expected
    );
}

/// `remoteJid` is the LID and the phone-number JID is in `remoteJidAlt`: the phone is used.
#[test]
fn evolution_lid_sender_prefers_the_phone_number_jid() {
    let expected = AdReferral {
        source_id: s("120240001112223334"),
        source_type: s("ad"),
        source_url: s("https://www.instagram.com/p/DyLidSample/"),
        source_app: s("instagram"),
        ctwa_clid: s("AflidAddressedClid_5566778899-illustrative"),
        headline: s("Agenda aberta para outubro"),
        body: s("Reserve seu horário pelo WhatsApp."),
        media_type: Some(MediaType::Image),
        thumbnail_url: s("https://scontent.xx.fbcdn.net/v/t45.1600-4/illustrative_agenda_n.jpg"),
        conversion_source: s("FB_Ads"),
        entry_point_conversion_source: s("ctwa_ad"),
        message_id: s("3EB0F00DBA5EBA11C0DE"),
        sender: sender(
            Some("5511987654321"),
            Some("213709100187796@lid"),
            Some("Maria"),
        ),
        message_timestamp: at(1_789_433_294),
        ..empty(PayloadShape::Evolution)
    };
    assert_eq!(referral(fixture!("evolution_lid_sender.json")), expected);
}

#[test]
fn evolution_lid_only_sender_has_no_phone() {
    assert_eq!(
        parse_bytes(fixture!("evolution_lid_only_no_phone.json")),
        Ok(ParseOutcome::NoAdData {
            sender: sender(None, Some("13718000000001@lid"), Some("Rodrigo")),
            message_id: s("3EB0LIDONLY0000001"),
        })
    );
}

/// `conversionSource`/`entryPointConversionSource` and an opaque `ctwaPayload`, no
/// `externalAdReply`: the chat came from an ad, but there is no click ID to send.
#[test]
fn evolution_marker_only() {
    let expected = AdReferral {
        source_app: s("facebook"),
        conversion_source: s("FB_Ads"),
        entry_point_conversion_source: s("ctwa_ad"),
        message_id: s("3EB0MARKERONLY00042"),
        sender: sender(Some("5511912345678"), None, Some("Lucas")),
        message_timestamp: at(1_789_433_294),
        ..empty(PayloadShape::Evolution)
    };
    assert_eq!(
        parse_bytes(fixture!("evolution_marker_only.json")),
        Ok(ParseOutcome::AdMarkerOnly(expected))
    );
}

#[test]
fn baileys_raw_wamessage() {
    let expected = AdReferral {
        source_id: s("120219988776655443"),
        source_type: s("ad"),
        source_url: s("https://fb.me/1nGlEs"),
        source_app: s("facebook"),
        ctwa_clid: s("ARArawBaileysClid_ZZYYXXWWVV-illustrative"),
        headline: s("Aprenda inglês em 6 meses"),
        body: s("Turmas noturnas com vagas limitadas."),
        media_type: Some(MediaType::Video),
        video_url: s("https://www.facebook.com/100000000000002/videos/1000000000000003/"),
        thumbnail_url: s(
            "https://scontent.xx.fbcdn.net/v/t15.5256-10/illustrative_ingles_thumb_n.jpg",
        ),
        conversion_source: s("FB_Ads"),
        entry_point_conversion_source: s("ctwa_ad"),
        message_id: s("3A1B2C3D4E5F60718293"),
        sender: sender(Some("5521987650000"), None, Some("Beatriz")),
        message_timestamp: at(1_789_433_294),
        ..empty(PayloadShape::Baileys)
    };
    assert_eq!(referral(fixture!("baileys_raw_wamessage.json")), expected);
}

#[test]
fn plain_text_message_has_no_ad_data_but_keeps_the_sender() {
    assert_eq!(
        parse_bytes(fixture!("plain_text_no_ad.json")),
        Ok(ParseOutcome::NoAdData {
            sender: sender(Some("5535991234567"), None, Some("Giovanna")),
            message_id: s("3A554E20ECABF3D45BB2"),
        })
    );
}

/// The first CTWA message can arrive undecryptable; attribution may come with a later upsert.
#[test]
fn ciphertext_stub_is_no_ad_data_not_an_error() {
    assert_eq!(
        parse_bytes(fixture!("ciphertext_stub.json")),
        Ok(ParseOutcome::NoAdData {
            sender: sender(Some("5511987654321"), None, Some("Maria")),
            message_id: s("3EB0C1PHERTEXT00001"),
        })
    );
}

/// Regression (Evolution 2.4.0-rc): `messageContextInfo` is device metadata, never ad data.
#[test]
fn message_context_info_is_never_read_as_ad_data() {
    let msg = json!({"key": {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": false, "id": "X1"},
        "message": {"conversation": "oi", "messageContextInfo": {
            "conversionSource": "FB_Ads",
            "externalAdReply": {"sourceId": "120200000000000009", "ctwaClid": "not-this-one"}}},
        "messageTimestamp": 1789433294});
    assert!(matches!(outcome(msg), ParseOutcome::NoAdData { .. }));
}

/// A reply quotes an earlier message, often the business's own with a bot's ad card in it.
#[test]
fn a_quoted_message_does_not_lend_its_ad_data() {
    let msg = json!({"key": {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": false, "id": "X2"},
        "message": {"extendedTextMessage": {"text": "sim", "contextInfo": {
            "stanzaId": "ABC", "participant": "5511999990000@s.whatsapp.net",
            "quotedMessage": {"extendedTextMessage": {"text": "Promo!", "contextInfo": {
                "conversionSource": "FB_Ads",
                "externalAdReply": {"sourceId": "120200000000000010", "sourceType": "ad", "ctwaClid": "quoted"}}}}}}},
        "messageTimestamp": 1789433294});
    assert_eq!(
        outcome(msg),
        ParseOutcome::NoAdData {
            sender: sender(Some("5511987654321"), None, None),
            message_id: s("X2"),
        }
    );
}

/// Bots attach `externalAdReply` link cards (title, thumbnail) to ordinary messages.
#[test]
fn a_link_card_without_ad_fields_is_not_an_ad() {
    let msg = json!({"key": {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": false, "id": "X3"},
        "message": {"extendedTextMessage": {"text": "menu", "contextInfo": {"externalAdReply": {
            "title": "Bot", "body": "Runtime 1h", "mediaType": 1, "thumbnailUrl": "https://example.com/t.jpg",
            "renderLargerThumbnail": true}}}}});
    assert!(matches!(outcome(msg), ParseOutcome::NoAdData { .. }));

    // With the attribution flag it is an ad, even without IDs.
    let mut flagged = json!({"key": {"remoteJid": "5511987654321@s.whatsapp.net", "id": "X4"},
        "message": {"extendedTextMessage": {"contextInfo": {"externalAdReply": {
            "title": "Oferta", "showAdAttribution": true}}}}});
    let ParseOutcome::AdMarkerOnly(r) = outcome(flagged.take()) else {
        panic!("expected AdMarkerOnly")
    };
    assert_eq!(r.headline.as_deref(), Some("Oferta"));
}

#[test]
fn the_business_own_messages_carry_no_attribution() {
    let mut msg: Value =
        serde_json::from_slice(fixture!("evolution_messages_upsert_conversation.json")).unwrap();
    msg["data"]["key"]["fromMe"] = json!(true);
    assert_eq!(
        outcome(msg),
        ParseOutcome::NoAdData {
            sender: None,
            message_id: s("3EB0A1B2C3D4E5F6"),
        }
    );
}

/// Disappearing messages wrap the content in `ephemeralMessage.message`.
#[test]
fn ad_data_inside_an_ephemeral_wrapper_is_found() {
    let msg = json!({"key": {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": false, "id": "X5"},
        "message": {"ephemeralMessage": {"message": {"extendedTextMessage": {"text": "oi", "contextInfo": {
            "expiration": 604800,
            "externalAdReply": {"sourceId": "120200000000000011", "sourceType": "ad", "ctwaClid": "eph-clid"}}}}}}});
    let ParseOutcome::Referral(r) = outcome(msg) else {
        panic!("expected a Referral")
    };
    assert_eq!(r.source_id.as_deref(), Some("120200000000000011"));
    assert_eq!(r.ctwa_clid.as_deref(), Some("eph-clid"));
    assert_eq!(r.shape, PayloadShape::Baileys);
}

/// Evolution copies the content's contextInfo to `data.contextInfo`; when one copy lacks the
/// click ID the richer one wins and the other only fills gaps.
#[test]
fn the_richest_spot_wins_and_copies_of_the_same_ad_fill_its_gaps() {
    let msg = json!({"event": "messages.upsert", "instance": "i", "data": {
        "key": {"remoteJid": "5511987654321@s.whatsapp.net", "id": "X6"},
        "contextInfo": {"externalAdReply": {"sourceId": "120200000000000012", "title": "Título"}},
        "message": {"extendedTextMessage": {"contextInfo": {"conversionSource": "FB_Ads",
            "externalAdReply": {"sourceId": "120200000000000012", "ctwaClid": "rich", "sourceType": "ad"}}}}}});
    let ParseOutcome::Referral(r) = outcome(msg) else {
        panic!("expected a Referral")
    };
    assert_eq!(r.ctwa_clid.as_deref(), Some("rich"));
    assert_eq!(r.headline.as_deref(), Some("Título"));
    assert_eq!(r.conversion_source.as_deref(), Some("FB_Ads"));
}

#[test]
fn spots_naming_different_ads_are_not_merged() {
    let msg = json!({"key": {"remoteJid": "5511987654321@s.whatsapp.net", "id": "X7"},
        "contextInfo": {"externalAdReply": {"sourceId": "111111111111111111", "title": "Outro anúncio"}},
        "message": {"extendedTextMessage": {"contextInfo": {
            "externalAdReply": {"sourceId": "222222222222222222", "ctwaClid": "clid-2"}}}}});
    let ParseOutcome::Referral(r) = outcome(msg) else {
        panic!("expected a Referral")
    };
    assert_eq!(r.source_id.as_deref(), Some("222222222222222222"));
    assert_eq!(r.headline, None);
}

/// A wa.me link is an entry point, not an ad.
#[test]
fn a_click_to_chat_link_entry_point_alone_is_not_an_ad() {
    let msg = json!({"key": {"remoteJid": "5511987654321@s.whatsapp.net", "id": "X8"},
        "message": {"extendedTextMessage": {"text": "oi", "contextInfo": {
            "entryPointConversionSource": "click_to_chat_link", "entryPointConversionApp": "whatsapp"}}}});
    assert!(matches!(outcome(msg), ParseOutcome::NoAdData { .. }));
}

#[test]
fn empty_and_blank_strings_are_absent() {
    let msg = json!({"key": {"remoteJid": "5511987654321@s.whatsapp.net", "id": "X9"},
        "message": {"extendedTextMessage": {"contextInfo": {"externalAdReply": {
            "sourceId": "   ", "ctwaClid": "", "sourceType": " ad ", "title": "  Oferta  "}}}}});
    let ParseOutcome::AdMarkerOnly(r) = outcome(msg) else {
        panic!("expected AdMarkerOnly")
    };
    assert_eq!((r.source_id, r.ctwa_clid), (None, None));
    assert_eq!(r.source_type.as_deref(), Some("ad"));
    assert_eq!(r.headline.as_deref(), Some("Oferta"));
}

#[test]
fn a_float_source_id_is_not_stored_with_lost_digits() {
    let msg = json!({"from": "5511987654321", "id": "wamid.F", "timestamp": "1789433294", "type": "text",
        "referral": {"source_id": 1.2024624437665058e17, "ctwa_clid": "c"}});
    let ParseOutcome::Referral(r) = outcome(msg) else {
        panic!("expected a Referral")
    };
    assert_eq!(r.source_id, None);
}

#[test]
fn group_messages_take_the_sender_from_the_participant() {
    let msg = json!({"key": {"remoteJid": "120363000000000000@g.us", "participant": "5511987654321@s.whatsapp.net",
        "participantAlt": "213709100187796@lid", "fromMe": false, "id": "G1"},
        "message": {"conversation": "oi"}, "pushName": "Maria"});
    assert_eq!(
        outcome(msg),
        ParseOutcome::NoAdData {
            sender: sender(
                Some("5511987654321"),
                Some("213709100187796@lid"),
                Some("Maria")
            ),
            message_id: s("G1"),
        }
    );
}

#[test]
fn a_baileys_upsert_event_with_several_messages() {
    let event = json!({"type": "notify", "messages": [
        {"key": {"remoteJid": "5511911111111@s.whatsapp.net", "id": "M1"}, "message": {"conversation": "a"}},
        {"key": {"remoteJid": "5511922222222@s.whatsapp.net", "id": "M2"},
         "message": {"extendedTextMessage": {"contextInfo": {"externalAdReply": {"sourceId": "120200000000000013"}}}}}]});
    let ParseOutcome::Referral(r) = outcome(event) else {
        panic!("expected a Referral")
    };
    assert_eq!(
        (r.shape, r.message_id.as_deref()),
        (PayloadShape::Baileys, Some("M2"))
    );
}

// ---------------------------------------------------------------------------------------------
// whatsmeow-based gateways
// ---------------------------------------------------------------------------------------------

/// wuzapi-style event: whatsmeow proto casing (`sourceID`, `sourceURL`, `thumbnailURL`), a device
/// suffix on the sender JID, and an RFC 3339 timestamp with an offset.
#[test]
fn whatsmeow_source_id_casing() {
    let expected = AdReferral {
        source_id: s("120233344455566677"),
        source_type: s("ad"),
        source_url: s("https://www.instagram.com/p/DzMoveis/"),
        source_app: s("instagram"),
        ctwa_clid: s("AfwhatsmeowCasingClid_abcXYZ-0987654321"),
        headline: s("Móveis planejados sob medida"),
        body: s("Projeto 3D grátis ao fechar o pedido."),
        media_type: Some(MediaType::Image),
        thumbnail_url: s("https://scontent.xx.fbcdn.net/v/t45.1600-4/illustrative_moveis_n.jpg"),
        conversion_source: s("FB_Ads"),
        entry_point_conversion_source: s("ctwa_ad"),
        message_id: s("3EB0C4D2E1F0A9B8C7D6"),
        sender: sender(
            Some("5511955554444"),
            Some("98765432109876@lid"),
            Some("Fernanda"),
        ),
        message_timestamp: at(1_789_433_294),
        ..empty(PayloadShape::Whatsmeow)
    };
    assert_eq!(
        referral(fixture!("whatsmeow_sourceID_casing.json")),
        expected
    );
}

/// Gateways that marshal Go structs as-is: PascalCase everywhere, `CtwaClid`, `MediaType: "VIDEO"`.
#[test]
fn whatsmeow_pascal_case() {
    let expected = AdReferral {
        source_id: s("120244455566677788"),
        source_type: s("ad"),
        source_url: s("https://fb.me/SoRtEiO"),
        source_app: s("facebook"),
        ctwa_clid: s("AfPascalCaseClid_1122334455-illustrative"),
        headline: s("Sorteio de aniversário"),
        body: s("Mande uma mensagem e concorra."),
        media_type: Some(MediaType::Video),
        video_url: s("https://www.facebook.com/reel/1000000000000004/"),
        thumbnail_url: s("https://scontent.xx.fbcdn.net/v/t15.5256-10/illustrative_sorteio_n.jpg"),
        conversion_source: s("FB_Ads"),
        entry_point_conversion_source: s("ctwa_ad"),
        message_id: s("3EB0PASCALCASE0001"),
        sender: sender(Some("554899990000"), None, Some("Rafael")),
        message_timestamp: at(1_789_433_294),
        ..empty(PayloadShape::Whatsmeow)
    };
    assert_eq!(referral(fixture!("whatsmeow_pascal_case.json")), expected);
}

/// uazapi v2 (`EventType: messages`): ad data in `message.content.contextInfo`, the timestamp in
/// milliseconds, the sender as a LID with the phone in `sender_pn`.
#[test]
fn uazapi_messages_event() {
    let expected = AdReferral {
        source_id: s("120248170000000001"),
        source_type: s("ad"),
        source_url: s("https://fb.me/uAzApIaD"),
        source_app: s("facebook"),
        ctwa_clid: s("Afj8G_uazapiIllustrativeClid-0011223344"),
        headline: s("Estou online agora"),
        body: s("É só chamar e receber o material."),
        media_type: Some(MediaType::Image),
        conversion_source: s("FB_Ads"),
        entry_point_conversion_source: s("ctwa_ad"),
        message_id: s("3EB0UAZAPI0000000001"),
        sender: sender(
            Some("556182040000"),
            Some("190000000000001@lid"),
            Some("Reinaldo"),
        ),
        message_timestamp: at(1_789_433_294),
        ..empty(PayloadShape::Whatsmeow)
    };
    assert_eq!(referral(fixture!("uazapi_messages_event.json")), expected);
}

/// uazapi v1 envelope with the ad fields flattened into `content` (no `contextInfo`), and the
/// phone as bare digits in `sender_pn` while `chatid` is a LID.
#[test]
fn uazapi_flat() {
    let expected = AdReferral {
        source_id: s("120250000000000002"),
        source_type: s("ad"),
        source_url: s("https://fb.me/CoNsOrC"),
        source_app: s("facebook"),
        ctwa_clid: s("AfUazapiFlatClid_5544332211-illustrative"),
        headline: s("Consórcio sem juros"),
        body: s("Simule agora pelo WhatsApp."),
        media_type: Some(MediaType::Video),
        video_url: s("https://www.facebook.com/reel/1000000000000005/"),
        thumbnail_url: s(
            "https://scontent.xx.fbcdn.net/v/t15.5256-10/illustrative_consorcio_n.jpg",
        ),
        conversion_source: s("FB_Ads"),
        entry_point_conversion_source: s("ctwa_ad"),
        message_id: s("AC429C9CDF29E4C66D35EB8F85460000"),
        sender: sender(
            Some("554399800000"),
            Some("180182700000000@lid"),
            Some("Eliane"),
        ),
        message_timestamp: at(1_789_433_294),
        ..empty(PayloadShape::Whatsmeow)
    };
    assert_eq!(referral(fixture!("uazapi_flat.json")), expected);
}

// ---------------------------------------------------------------------------------------------
// Garbage and limits
// ---------------------------------------------------------------------------------------------

#[test]
fn truncated_payload() {
    assert_eq!(
        parse_bytes(fixture!("truncated.json.txt")),
        Err(ParseError::Truncated)
    );
}

#[test]
fn not_json_payload() {
    assert_eq!(
        parse_bytes(fixture!("not_json.txt")),
        Err(ParseError::InvalidJson { line: 1, column: 1 })
    );
}

#[test]
fn empty_payloads() {
    assert_eq!(parse_bytes(b""), Err(ParseError::Empty));
    assert_eq!(parse_str(" \n\t "), Err(ParseError::Empty));
}

#[test]
fn json_that_is_not_an_object() {
    for (raw, found) in [
        ("\"hello\"", "string"),
        ("42", "number"),
        ("[1, 2]", "array"),
        ("null", "null"),
        ("true", "boolean"),
    ] {
        assert_eq!(
            parse_str(raw),
            Err(ParseError::NotAnObject { found }),
            "{raw}"
        );
    }
}

#[test]
fn an_object_of_no_known_shape() {
    assert!(matches!(
        parse_str(r#"{"hello": "world", "data": 5, "event": "x"}"#),
        Err(ParseError::UnrecognisedShape { .. })
    ));
}

#[test]
fn payload_size_limit() {
    assert_eq!(
        parse_bytes(&vec![b' '; MAX_PAYLOAD_BYTES + 1]),
        Err(ParseError::TooLarge {
            bytes: MAX_PAYLOAD_BYTES + 1,
            limit: MAX_PAYLOAD_BYTES
        })
    );
    // Exactly at the limit is accepted.
    let mut at_limit = br#"{"from":"5511987654321","id":"wamid.L","timestamp":"1789433294","type":"text","text":{"body":""#.to_vec();
    let tail = br#""}}"#;
    at_limit.resize(MAX_PAYLOAD_BYTES - tail.len(), b'a');
    at_limit.extend_from_slice(tail);
    assert_eq!(at_limit.len(), MAX_PAYLOAD_BYTES);
    assert!(matches!(
        parse_bytes(&at_limit),
        Ok(ParseOutcome::NoAdData { .. })
    ));
}

fn nested(levels: usize) -> String {
    format!(
        "{{\"a\":{}1{}}}",
        "[".repeat(levels - 1),
        "]".repeat(levels - 1)
    )
}

#[test]
fn nesting_limit() {
    // 64 levels (the object plus 63 arrays) are fine; the 65th is refused.
    assert!(matches!(
        parse_str(&nested(MAX_DEPTH)),
        Err(ParseError::UnrecognisedShape { .. })
    ));
    assert_eq!(
        parse_str(&nested(MAX_DEPTH + 1)),
        Err(ParseError::TooDeep { limit: MAX_DEPTH })
    );
    // Past serde_json's own limit of 128, and unbalanced garbage, get the same clear error.
    assert_eq!(
        parse_str(&nested(500)),
        Err(ParseError::TooDeep { limit: MAX_DEPTH })
    );
    assert_eq!(
        parse_bytes(&vec![b'['; 100_000]),
        Err(ParseError::TooDeep { limit: MAX_DEPTH })
    );
    // Brackets inside strings do not count.
    let in_string = format!(
        "{{\"from\":\"{}\",\"id\":\"1\",\"timestamp\":\"1\",\"type\":\"text\"}}",
        "[".repeat(200)
    );
    assert!(parse_str(&in_string).is_ok());
}

#[test]
fn a_deep_value_built_in_code_is_refused_without_recursion() {
    let mut value = json!(1);
    for _ in 0..1_000 {
        value = json!({ "contextInfo": value });
    }
    assert_eq!(
        parse_value(&value),
        Err(ParseError::TooDeep { limit: MAX_DEPTH })
    );
}

#[test]
fn a_json_string_holding_json_is_decoded_once() {
    let raw = std::str::from_utf8(fixture!("cloud_api_message_only_video_ad.json")).unwrap();
    let direct = parse_str(raw).unwrap();
    assert_eq!(
        parse_value(&Value::String(raw.to_owned())),
        Ok(direct.clone())
    );
    assert_eq!(parse_str(&serde_json::to_string(raw).unwrap()), Ok(direct));
    // Twice-encoded is refused rather than unwrapped without end.
    let twice = serde_json::to_string(&serde_json::to_string(raw).unwrap()).unwrap();
    assert_eq!(
        parse_str(&twice),
        Err(ParseError::NotAnObject { found: "string" })
    );
}

#[test]
fn a_byte_order_mark_is_tolerated() {
    let mut raw = b"\xEF\xBB\xBF".to_vec();
    raw.extend_from_slice(fixture!("baileys_raw_wamessage.json"));
    assert!(matches!(parse_bytes(&raw), Ok(ParseOutcome::Referral(_))));
}

/// Error texts go to logs and alerts: they must never carry message text or phone numbers.
#[test]
fn error_messages_carry_no_payload_content() {
    let phone = "5511987654321";
    let text = "segredo do cliente";
    let bad = [
        format!(r#"{{"from":"{phone}","text":{{"body":"{text}"#),
        format!(r#"{{"from":"{phone}" "text":"{text}"}}"#),
        format!(r#"{{"from":"{phone}","text":"{text}"}}"#),
        format!(r#""{phone} {text}""#),
        format!("{phone} {text}"),
    ];
    for raw in &bad {
        let err = parse_str(raw).expect_err(raw);
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(phone) && !shown.contains(text), "{shown}");
        assert!(!err.kind().is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers and cross-checks
// ---------------------------------------------------------------------------------------------

#[test]
fn timestamps_in_every_observed_form() {
    let cases = [
        (json!(1789433294), at(1_789_433_294)),
        (json!("1789433294"), at(1_789_433_294)),
        (json!(1789433294000u64), at(1_789_433_294)),
        (json!(1789433294.0), at(1_789_433_294)),
        (
            json!({"low": 1789433294, "high": 0, "unsigned": true}),
            at(1_789_433_294),
        ),
        (
            json!("2026-09-15T00:48:14.512Z"),
            at(1_789_433_294).map(|t| t + chrono::Duration::milliseconds(512)),
        ),
        (json!(0), None),
        (json!("0001-01-01T00:00:00Z"), None),
        (json!("ontem"), None),
        (json!(-5), None),
        (json!(u64::MAX), None),
    ];
    for (value, expected) in cases {
        let msg = json!({"key": {"remoteJid": "5511987654321@s.whatsapp.net", "id": "T"},
            "message": {"conversation": "oi"}, "messageTimestamp": value});
        let ParseOutcome::NoAdData { .. } = outcome(msg.clone()) else {
            panic!()
        };
        // The timestamp only shows on ad outcomes, so check it through one.
        let mut ad = msg;
        ad["message"] =
            json!({"extendedTextMessage": {"contextInfo": {"externalAdReply": {"sourceId": "1"}}}});
        let ParseOutcome::Referral(r) = outcome(ad) else {
            panic!()
        };
        assert_eq!(r.message_timestamp, expected, "{value}");
    }
}

#[test]
fn media_types_in_every_observed_form() {
    let cases = [
        (json!("image"), Some(MediaType::Image)),
        (json!("IMAGE"), Some(MediaType::Image)),
        (json!(1), Some(MediaType::Image)),
        (json!("video"), Some(MediaType::Video)),
        (json!("VIDEO"), Some(MediaType::Video)),
        (json!(2), Some(MediaType::Video)),
        (json!("2"), Some(MediaType::Video)),
        (json!(0), Some(MediaType::None)),
        (json!("NONE"), Some(MediaType::None)),
        (json!("carousel"), Some(MediaType::Unknown)),
        (json!(7), Some(MediaType::Unknown)),
        (json!(""), None),
        (json!({"0": 1}), None),
    ];
    for (value, expected) in cases {
        let msg = json!({"from": "5511987654321", "id": "wamid.M", "timestamp": "1789433294", "type": "text",
            "referral": {"source_id": "1", "media_type": value}});
        let ParseOutcome::Referral(r) = outcome(msg) else {
            panic!()
        };
        assert_eq!(r.media_type, expected, "{value}");
    }
}

#[test]
fn sender_identities_from_every_jid_form() {
    let cases = [
        ("5511987654321@s.whatsapp.net", Some("5511987654321"), None),
        (
            "5511987654321:23@s.whatsapp.net",
            Some("5511987654321"),
            None,
        ),
        ("5511987654321@c.us", Some("5511987654321"), None),
        ("+55 (11) 98765-4321", Some("5511987654321"), None),
        ("213709100187796@lid", None, Some("213709100187796@lid")),
        ("213709100187796:4@lid", None, Some("213709100187796@lid")),
        ("120363000000000000@g.us", None, None),
        ("status@broadcast", None, None),
        ("1234@s.whatsapp.net", None, None),
        ("1234567890123456@s.whatsapp.net", None, None),
        ("maria@s.whatsapp.net", None, None),
    ];
    for (jid, phone, lid) in cases {
        let msg = json!({"key": {"remoteJid": jid, "id": "J"}, "message": {"conversation": "oi"}});
        let got = outcome(msg);
        let expected = sender(phone, lid, None).filter(|_| phone.is_some() || lid.is_some());
        assert_eq!(got.sender(), expected.as_ref(), "{jid}");
        assert_eq!(got.message_id(), Some("J"));
    }
}

#[test]
fn sender_debug_output_is_redacted() {
    let shown = format!(
        "{:?}",
        sender(
            Some("5511987654321"),
            Some("213709100187796@lid"),
            Some("Maria")
        )
    );
    assert!(
        !shown.contains("5511987654321") && !shown.contains("Maria"),
        "{shown}"
    );
    assert!(!shown.contains("213709100187796"), "{shown}");
    assert!(shown.contains("4321"), "{shown}");
}

#[test]
fn serialised_names_are_snake_case() {
    let r = referral(fixture!("evolution_messages_upsert_conversation.json"));
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["shape"], "evolution");
    assert_eq!(v["media_type"], "video");
    assert_eq!(
        serde_json::to_value(PayloadShape::CloudApi).unwrap(),
        "cloud_api"
    );
    assert_eq!(serde_json::from_value::<AdReferral>(v).unwrap(), r);
    assert_eq!(MediaType::Video.as_str(), "video");
}

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/whatsapp")
}

/// Every fixture, including ones added later without a dedicated test: `.json` files parse, the
/// `.txt` garbage samples fail cleanly, and all three entry points agree.
#[test]
fn every_fixture_parses_consistently() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let raw = std::fs::read(&path).unwrap();
        let from_bytes = parse_bytes(&raw);
        if name.ends_with(".json") {
            let parsed = from_bytes.unwrap_or_else(|e| panic!("{name}: {e}"));
            let value: Value = serde_json::from_slice(&raw).unwrap();
            assert_eq!(parse_value(&value).as_ref(), Ok(&parsed), "{name}");
            assert_eq!(
                parse_str(std::str::from_utf8(&raw).unwrap()).as_ref(),
                Ok(&parsed),
                "{name}"
            );
        } else {
            assert!(from_bytes.is_err(), "{name} should be refused");
        }
        seen += 1;
    }
    assert!(seen >= 19, "only {seen} fixtures found");
}
