//! Chat alerts (docs/fallbacks.md): why an event was not delivered, written as a `system` message
//! in the customer's chat in the CRM's language, naming the fix. One alert per cause per stage
//! change (the dedup key), so retries and replays never spam the chat.

use serde::Serialize;

use crate::locale::{Locale, Localized};

/// Why an agent is being alerted. The `code` is stable: it is stored in `stagecast.alerts.cause`,
/// used as a metrics label, and documented in docs/operations.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertCause {
    NoCampaign,
    PixelMissing,
    PixelInactive,
    TokenMissing,
    TokenUnreadable,
    TokenInvalid,
    ApiError,
    PurchaseWithoutValue,
    EventTooOld,
    UnknownEventName,
    InvalidEventConfig,
    UnsupportedPlatform,
    DeliveryGaveUp,
    AdNotLinked,
    AdWithoutClickId,
    MissingLeadId,
    RequestRefused,
    BusinessMessagingOnlyEvent,
    UnsupportedActionSource,
    EventNotOnPlatform,
    ClickTooOld,
    ClickNotFound,
    ConversionActionMissing,
}

impl AlertCause {
    pub const ALL: [AlertCause; 23] = [
        AlertCause::NoCampaign,
        AlertCause::PixelMissing,
        AlertCause::PixelInactive,
        AlertCause::TokenMissing,
        AlertCause::TokenUnreadable,
        AlertCause::TokenInvalid,
        AlertCause::ApiError,
        AlertCause::PurchaseWithoutValue,
        AlertCause::EventTooOld,
        AlertCause::UnknownEventName,
        AlertCause::InvalidEventConfig,
        AlertCause::UnsupportedPlatform,
        AlertCause::DeliveryGaveUp,
        AlertCause::AdNotLinked,
        AlertCause::AdWithoutClickId,
        AlertCause::MissingLeadId,
        AlertCause::RequestRefused,
        AlertCause::BusinessMessagingOnlyEvent,
        AlertCause::UnsupportedActionSource,
        AlertCause::EventNotOnPlatform,
        AlertCause::ClickTooOld,
        AlertCause::ClickNotFound,
        AlertCause::ConversionActionMissing,
    ];

    pub fn code(self) -> &'static str {
        match self {
            AlertCause::NoCampaign => "no_campaign",
            AlertCause::PixelMissing => "pixel_missing",
            AlertCause::PixelInactive => "pixel_inactive",
            AlertCause::TokenMissing => "token_missing",
            AlertCause::TokenUnreadable => "token_unreadable",
            AlertCause::TokenInvalid => "token_invalid",
            AlertCause::ApiError => "api_error",
            AlertCause::PurchaseWithoutValue => "purchase_without_value",
            AlertCause::EventTooOld => "event_too_old",
            AlertCause::UnknownEventName => "unknown_event_name",
            AlertCause::InvalidEventConfig => "invalid_event_config",
            AlertCause::UnsupportedPlatform => "unsupported_platform",
            AlertCause::DeliveryGaveUp => "delivery_gave_up",
            AlertCause::AdNotLinked => "ad_not_linked",
            AlertCause::AdWithoutClickId => "ad_without_click_id",
            AlertCause::MissingLeadId => "missing_lead_id",
            AlertCause::RequestRefused => "request_refused",
            AlertCause::BusinessMessagingOnlyEvent => "business_messaging_only_event",
            AlertCause::UnsupportedActionSource => "unsupported_action_source",
            AlertCause::EventNotOnPlatform => "event_not_on_platform",
            AlertCause::ClickTooOld => "click_too_old",
            AlertCause::ClickNotFound => "click_not_found",
            AlertCause::ConversionActionMissing => "conversion_action_missing",
        }
    }

    /// Template with `{placeholders}` filled from [`AlertDetails`].
    fn template(self) -> Localized {
        match self {
            AlertCause::NoCampaign => Localized {
                pt: "O evento {event} ({stage}) não foi enviado ao {platform}: o cliente não tem campanha UTM associada. Associe uma campanha ao cliente, ou cadastre o ID do anúncio de origem na campanha, e reenvie.",
                en: "The {event} event ({stage}) was not sent to {platform}: the customer has no associated UTM campaign. Link a campaign to the customer, or add the originating ad id to a campaign, and replay it.",
                es: "El evento {event} ({stage}) no se envió a {platform}: el cliente no tiene una campaña UTM asociada. Asocie una campaña al cliente, o registre el ID del anuncio de origen en la campaña, y reenvíelo.",
            },
            AlertCause::PixelMissing => Localized {
                pt: "O evento {event} ({stage}) não foi enviado ao {platform}: a campanha {campaign} não tem pixel e não há pixel padrão ativo. Vincule um pixel à campanha ou marque um pixel como padrão.",
                en: "The {event} event ({stage}) was not sent to {platform}: campaign {campaign} has no pixel and there is no active default pixel. Link a pixel to the campaign or mark one as default.",
                es: "El evento {event} ({stage}) no se envió a {platform}: la campaña {campaign} no tiene píxel y no hay un píxel predeterminado activo. Vincule un píxel a la campaña o marque uno como predeterminado.",
            },
            AlertCause::PixelInactive => Localized {
                pt: "O evento {event} ({stage}) não foi enviado ao {platform}: o pixel {pixel} está inativo. Ative o pixel ou vincule outro à campanha.",
                en: "The {event} event ({stage}) was not sent to {platform}: pixel {pixel} is inactive. Activate it or link another pixel to the campaign.",
                es: "El evento {event} ({stage}) no se envió a {platform}: el píxel {pixel} está inactivo. Actívelo o vincule otro píxel a la campaña.",
            },
            AlertCause::TokenMissing => Localized {
                pt: "O evento {event} ({stage}) não foi enviado ao {platform}: o pixel {pixel} não tem token de acesso. Cadastre o token da API de Conversões no pixel.",
                en: "The {event} event ({stage}) was not sent to {platform}: pixel {pixel} has no access token. Add the Conversions API token to the pixel.",
                es: "El evento {event} ({stage}) no se envió a {platform}: el píxel {pixel} no tiene token de acceso. Registre el token de la API de Conversiones en el píxel.",
            },
            AlertCause::TokenUnreadable => Localized {
                pt: "O evento {event} ({stage}) não foi enviado ao {platform}: o token do pixel {pixel} não pode ser decifrado com as chaves configuradas. Peça ao administrador para conferir STAGECAST_KEYS ou cadastrar o token novamente.",
                en: "The {event} event ({stage}) was not sent to {platform}: the token of pixel {pixel} cannot be decrypted with the configured keys. Ask an administrator to check STAGECAST_KEYS or enter the token again.",
                es: "El evento {event} ({stage}) no se envió a {platform}: el token del píxel {pixel} no se puede descifrar con las claves configuradas. Pida al administrador que revise STAGECAST_KEYS o registre el token de nuevo.",
            },
            AlertCause::TokenInvalid => Localized {
                pt: "O {platform} recusou o token de acesso do pixel {pixel}: inválido ou expirado (código {code}, {trace_name} {trace_id}). Os eventos desse pixel (como {event}, {stage}) estão retidos, sem gastar tentativas: gere um novo token e cadastre-o no pixel, e eles serão enviados automaticamente; só falham os que passarem do prazo do {platform} antes disso.",
                en: "{platform} refused the access token of pixel {pixel}: invalid or expired (code {code}, {trace_name} {trace_id}). This pixel's events (such as {event}, {stage}) are held without spending attempts: generate a new token and save it on the pixel, and they are sent automatically; only those that pass {platform}'s age limit before then fail.",
                es: "{platform} rechazó el token de acceso del píxel {pixel}: no es válido o expiró (código {code}, {trace_name} {trace_id}). Los eventos de ese píxel (como {event}, {stage}) quedan retenidos sin gastar intentos: genere un nuevo token y regístrelo en el píxel, y se enviarán automáticamente; solo fallan los que superen el plazo de {platform} antes de eso.",
            },
            AlertCause::ApiError => Localized {
                pt: "O evento {event} ({stage}) foi recusado pelo {platform} (código {code}, subcódigo {subcode}, {trace_name} {trace_id}): {error}",
                en: "The {event} event ({stage}) was refused by {platform} (code {code}, subcode {subcode}, {trace_name} {trace_id}): {error}",
                es: "El evento {event} ({stage}) fue rechazado por {platform} (código {code}, subcódigo {subcode}, {trace_name} {trace_id}): {error}",
            },
            AlertCause::PurchaseWithoutValue => Localized {
                pt: "A compra ({stage}) não foi enviada ao {platform}: não há valor de venda. Preencha o valor da venda do cliente (ou um valor na configuração do evento) e reenvie; uma compra nunca é enviada com valor 0.",
                en: "The purchase ({stage}) was not sent to {platform}: there is no sale value. Fill in the customer's sale price (or a value in the event config) and replay it; a purchase is never sent with value 0.",
                es: "La compra ({stage}) no se envió a {platform}: no hay valor de venta. Complete el valor de venta del cliente (o un valor en la configuración del evento) y reenvíela; una compra nunca se envía con valor 0.",
            },
            AlertCause::EventTooOld => Localized {
                pt: "O evento {event} ({stage}) não foi enviado ao {platform}: a mudança de etapa tem mais de {window}, o prazo dos eventos desse tipo no {platform}.",
                en: "The {event} event ({stage}) was not sent to {platform}: the stage change is more than {window} old, past {platform}'s window for this kind of event.",
                es: "El evento {event} ({stage}) no se envió a {platform}: el cambio de etapa tiene más de {window}, el plazo de los eventos de este tipo en {platform}.",
            },
            AlertCause::UnknownEventName => Localized {
                pt: "A etapa {stage} está configurada com o evento desconhecido {event}{suggestion}. Corrija o nome na configuração da etapa ou use \"Other\" com um nome personalizado.",
                en: "Stage {stage} is configured with the unknown event {event}{suggestion}. Fix the name in the stage config or use \"Other\" with a custom name.",
                es: "La etapa {stage} está configurada con el evento desconocido {event}{suggestion}. Corrija el nombre en la configuración de la etapa o use \"Other\" con un nombre personalizado.",
            },
            AlertCause::InvalidEventConfig => Localized {
                pt: "A configuração de eventos da etapa {stage} é inválida ({error}). Nenhum evento dessa configuração foi enviado; corrija a etapa e reenvie.",
                en: "The event configuration of stage {stage} is invalid ({error}). No event of that config was sent; fix the stage and replay.",
                es: "La configuración de eventos de la etapa {stage} no es válida ({error}). No se envió ningún evento de esa configuración; corrija la etapa y reenvíe.",
            },
            AlertCause::UnsupportedPlatform => Localized {
                pt: "O evento {event} ({stage}) não foi enviado: a plataforma {platform} ainda não é suportada por esta versão do stagecast.",
                en: "The {event} event ({stage}) was not sent: platform {platform} is not supported by this version of stagecast yet.",
                es: "El evento {event} ({stage}) no se envió: la plataforma {platform} aún no es compatible con esta versión de stagecast.",
            },
            AlertCause::DeliveryGaveUp => Localized {
                pt: "O evento {event} ({stage}) não pôde ser enviado ao {platform} após várias tentativas ({error}). Um administrador pode reenviá-lo depois de resolver o problema.",
                en: "The {event} event ({stage}) could not be sent to {platform} after several attempts ({error}). An administrator can replay it once the problem is fixed.",
                es: "El evento {event} ({stage}) no pudo enviarse a {platform} tras varios intentos ({error}). Un administrador puede reenviarlo cuando se resuelva el problema.",
            },
            AlertCause::AdNotLinked => Localized {
                pt: "O cliente chegou por um anúncio de clique para WhatsApp (ID {ad_id}) que não corresponde a nenhuma campanha. Adicione o ID {ad_id} aos IDs de anúncio de uma campanha para atribuir as conversões.",
                en: "The customer came from a click-to-WhatsApp ad (id {ad_id}) that matches no campaign. Add {ad_id} to a campaign's ad ids so conversions are attributed.",
                es: "El cliente llegó por un anuncio de clic a WhatsApp (ID {ad_id}) que no corresponde a ninguna campaña. Agregue {ad_id} a los IDs de anuncio de una campaña para atribuir las conversiones.",
            },
            AlertCause::RequestRefused => Localized {
                pt: "O {platform} recusou as requisições do pixel {pixel}, não os eventos (código {code}, subcódigo {subcode}, {trace_name} {trace_id}): {error}. É um problema de configuração (versão da API, permissões do token, appsecret_proof, ID do pixel). Os eventos desse pixel (como {event}, {stage}) estão retidos sem gastar tentativas até a configuração mudar; peça ao administrador para conferir com o stagecast doctor.",
                en: "{platform} refused the requests of pixel {pixel}, not its events (code {code}, subcode {subcode}, {trace_name} {trace_id}): {error}. This is a configuration problem (API version, token permissions, appsecret_proof, pixel id). This pixel's events (such as {event}, {stage}) are held without spending attempts until the configuration changes; ask an administrator to check it with stagecast doctor.",
                es: "{platform} rechazó las solicitudes del píxel {pixel}, no sus eventos (código {code}, subcódigo {subcode}, {trace_name} {trace_id}): {error}. Es un problema de configuración (versión de la API, permisos del token, appsecret_proof, ID del píxel). Los eventos de ese píxel (como {event}, {stage}) quedan retenidos sin gastar intentos hasta que cambie la configuración; pida al administrador que lo revise con stagecast doctor.",
            },
            AlertCause::BusinessMessagingOnlyEvent => Localized {
                pt: "O evento {event} ({stage}) não foi enviado ao {platform}: esse nome só vale para conversas de anúncios de clique para WhatsApp (business_messaging), e este cliente não tem identificador de clique (ctwa_clid) ou o pixel {pixel} não tem conta do WhatsApp Business. Configure na etapa o evento padrão {suggestion_name}, que vale para todos os clientes.",
                en: "The {event} event ({stage}) was not sent to {platform}: that name is valid only for conversations from click-to-WhatsApp ads (business_messaging), and this customer has no click id (ctwa_clid) or pixel {pixel} no WhatsApp Business account. Configure the standard event {suggestion_name} on the stage, which is valid for every customer.",
                es: "El evento {event} ({stage}) no se envió a {platform}: ese nombre solo vale para conversaciones de anuncios de clic a WhatsApp (business_messaging), y este cliente no tiene identificador de clic (ctwa_clid) o el píxel {pixel} no tiene cuenta de WhatsApp Business. Configure en la etapa el evento estándar {suggestion_name}, que vale para todos los clientes.",
            },
            AlertCause::UnsupportedActionSource => Localized {
                pt: "O evento {event} ({stage}) não foi enviado ao {platform}: a origem do pixel {pixel} não é suportada ({error}). Mude a origem (action_source) do pixel, por exemplo para physical_store, chat ou system_generated, e reenvie.",
                en: "The {event} event ({stage}) was not sent to {platform}: the action source of pixel {pixel} is not supported ({error}). Change the pixel's action_source, e.g. to physical_store, chat or system_generated, and replay.",
                es: "El evento {event} ({stage}) no se envió a {platform}: el origen del píxel {pixel} no es compatible ({error}). Cambie el origen (action_source) del píxel, por ejemplo a physical_store, chat o system_generated, y reenvíe.",
            },
            AlertCause::AdWithoutClickId => Localized {
                pt: "Informação: o cliente chegou por um anúncio, mas a mensagem não trouxe o identificador de clique (ctwa_clid); as conversões serão atribuídas apenas pelos dados de contato.",
                en: "Info: the customer came from an ad, but the message carried no click id (ctwa_clid); conversions will be matched on contact data only.",
                es: "Información: el cliente llegó por un anuncio, pero el mensaje no trajo el identificador de clic (ctwa_clid); las conversiones se asociarán solo por los datos de contacto.",
            },
            AlertCause::MissingLeadId => Localized {
                pt: "O evento {event} ({stage}) não foi enviado ao {platform}: o pixel {pixel} envia Conversion Leads (action_source system_generated), que exigem o lead_id do formulário de Lead Ads, e o cliente não tem um válido (15 a 17 dígitos). Grave o lead_id do cliente, ou use outro action_source no pixel, e reenvie.",
                en: "The {event} event ({stage}) was not sent to {platform}: pixel {pixel} sends Conversion Leads (action_source system_generated), which need the Lead Ads form's lead_id, and the customer has no valid one (15 to 17 digits). Store the customer's lead_id, or give the pixel another action_source, and replay it.",
                es: "El evento {event} ({stage}) no se envió a {platform}: el píxel {pixel} envía Conversion Leads (action_source system_generated), que requieren el lead_id del formulario de Lead Ads, y el cliente no tiene uno válido (15 a 17 dígitos). Guarde el lead_id del cliente, o use otro action_source en el píxel, y reenvíelo.",
            },
            AlertCause::EventNotOnPlatform => Localized {
                pt: "O evento {event} ({stage}) não foi enviado ao {platform}: essa plataforma não tem evento equivalente{suggestion}. Escolha outro evento para o {platform} na configuração da etapa, ou use \"Other\" com um nome personalizado.",
                en: "The {event} event ({stage}) was not sent to {platform}: that platform has no equivalent event{suggestion}. Pick another event for {platform} in the stage config, or use \"Other\" with a custom name.",
                es: "El evento {event} ({stage}) no se envió a {platform}: esa plataforma no tiene un evento equivalente{suggestion}. Elija otro evento para {platform} en la configuración de la etapa, o use \"Other\" con un nombre personalizado.",
            },
            AlertCause::ClickTooOld => Localized {
                pt: "O evento {event} ({stage}) não foi aceito pelo {platform}: o clique no anúncio é mais antigo que a janela de conversão da ação ({code}). A conversão não pode mais ser atribuída a esse clique; se isso for frequente, aumente a janela de conversão da ação no {platform}.",
                en: "The {event} event ({stage}) was not accepted by {platform}: the ad click is older than the conversion action's click-through window ({code}). The conversion can no longer be attributed to that click; if this is frequent, widen the conversion action's window in {platform}.",
                es: "El evento {event} ({stage}) no fue aceptado por {platform}: el clic en el anuncio es más antiguo que la ventana de conversión de la acción ({code}). La conversión ya no se puede atribuir a ese clic; si ocurre con frecuencia, amplíe la ventana de conversión de la acción en {platform}.",
            },
            AlertCause::ClickNotFound => Localized {
                pt: "O evento {event} ({stage}) não foi aceito pelo {platform}: o {platform} não encontrou nesta conta o clique no anúncio deste cliente ({code}). Normalmente o cliente não veio de um anúncio desta conta, ou o identificador de clique (gclid) gravado é de outra conta ou está incompleto. Nada a fazer para este cliente; se acontecer com todos, peça ao administrador para conferir se o pixel {pixel} tem o ID de cliente da conta que recebe os cliques.",
                en: "The {event} event ({stage}) was not accepted by {platform}: {platform} found no ad click of this customer in this account ({code}). Usually the customer did not come from an ad of this account, or the stored click id (gclid) belongs to another account or is truncated. Nothing to do for this customer; if it happens to every customer, ask an administrator to check that pixel {pixel} has the customer id of the account that gets the clicks.",
                es: "El evento {event} ({stage}) no fue aceptado por {platform}: {platform} no encontró en esta cuenta el clic en el anuncio de este cliente ({code}). Normalmente el cliente no vino de un anuncio de esta cuenta, o el identificador de clic (gclid) guardado es de otra cuenta o está incompleto. Nada que hacer para este cliente; si ocurre con todos, pida al administrador que revise que el píxel {pixel} tenga el ID de cliente de la cuenta que recibe los clics.",
            },
            AlertCause::ConversionActionMissing => Localized {
                pt: "O evento {event} ({stage}) não foi enviado ao {platform}: o pixel {pixel} não tem a ação de conversão (conversion_action_id). Peça ao administrador para preencher no pixel o ID da ação de conversão do {platform} do tipo Importação de cliques e reenvie; a configuração da etapa está correta.",
                en: "The {event} event ({stage}) was not sent to {platform}: pixel {pixel} has no conversion action (conversion_action_id). Ask an administrator to fill in the pixel's {platform} conversion action id (an Import from clicks action) and replay it; the stage's configuration is fine.",
                es: "El evento {event} ({stage}) no se envió a {platform}: el píxel {pixel} no tiene la acción de conversión (conversion_action_id). Pida al administrador que complete en el píxel el ID de la acción de conversión de {platform} del tipo Importación de clics y reenvíelo; la configuración de la etapa es correcta.",
            },
        }
    }
}

/// Facts an alert may quote. None of them is PII: names of stages, events, pixels and campaigns,
/// API codes and trace ids, and error text that never embeds customer data.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlertDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// The platform's error code, as text (alerts written before 20261201150000 hold a number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subcode: Option<i64>,
    /// The platform's request id for its support (alerts written before 20261201150000 call
    /// it `fbtrace_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// What the platform calls `trace_id` (`DeliveryError::trace_name`), for the text only.
    #[serde(skip)]
    pub trace_name: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ad_id: Option<String>,
    /// The age window applied to an `event_too_old` event, in seconds (absent: Meta's own
    /// 7 days, e.g. when Meta refused the event with subcode 2804003).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u64>,
}

/// An alert ready to be recorded.
#[derive(Debug, Clone)]
pub struct Alert {
    pub cause: AlertCause,
    pub details: AlertDetails,
}

impl Alert {
    pub fn new(cause: AlertCause, details: AlertDetails) -> Self {
        Self { cause, details }
    }

    /// The chat text in `locale`, prefixed so agents see at a glance it is an automatic notice.
    pub fn render(&self, locale: Locale) -> String {
        let d = &self.details;
        let unknown = match locale {
            Locale::Pt => "?",
            Locale::En => "?",
            Locale::Es => "?",
        };
        let none = |v: &Option<String>| v.clone().unwrap_or_else(|| unknown.to_string());
        let num = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".to_string());
        let code = d.code.clone().unwrap_or_else(|| "-".to_string());
        // The trace id under the name the platform's support knows it by.
        let trace_name = d.trace_name.unwrap_or("trace_id");
        let suggestion = match (&d.suggestion, locale) {
            (Some(s), Locale::Pt) => format!(" (você quis dizer \"{s}\"?)"),
            (Some(s), Locale::En) => format!(" (did you mean \"{s}\"?)"),
            (Some(s), Locale::Es) => format!(" (¿quiso decir \"{s}\"?)"),
            (None, _) => String::new(),
        };
        let quoted = |v: &Option<String>| format!("\"{}\"", none(v));
        let body = self
            .cause
            .template()
            .get(locale)
            .replace("{event}", &quoted(&d.event_name))
            .replace("{stage}", &none(&d.stage_name))
            .replace("{platform}", &platform_display(d.platform.as_deref()))
            .replace("{pixel}", &none(&d.pixel))
            .replace("{campaign}", &quoted(&d.campaign))
            .replace("{code}", &code)
            .replace("{subcode}", &num(d.subcode))
            .replace("{trace_name}", trace_name)
            .replace("{trace_id}", &none(&d.trace_id))
            .replace("{error}", &none(&d.error))
            .replace("{ad_id}", &none(&d.ad_id))
            .replace("{suggestion_name}", &quoted(&d.suggestion))
            .replace("{suggestion}", &suggestion)
            .replace("{window}", &window_text(d.max_age_secs, locale));
        format!("⚠️ stagecast: {body}")
    }
}

/// An age window as people say it: whole days (rounded; the default 7 days less a 10-minute
/// margin reads "7 days"), or hours below a day. Absent: Meta's documented 7 days.
fn window_text(secs: Option<u64>, locale: Locale) -> String {
    const DAY: u64 = 24 * 3600;
    let secs = secs.unwrap_or(7 * DAY);
    let (n, one, many) = if secs >= DAY {
        let days = (secs + DAY / 2) / DAY;
        match locale {
            Locale::Pt => (days, "dia", "dias"),
            Locale::En => (days, "day", "days"),
            Locale::Es => (days, "día", "días"),
        }
    } else {
        let hours = secs.div_ceil(3600).max(1);
        match locale {
            Locale::Pt | Locale::Es => (hours, "hora", "horas"),
            Locale::En => (hours, "hour", "hours"),
        }
    };
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A bounded metrics label for a cause code read back from the database.
pub fn cause_label(code: &str) -> &'static str {
    AlertCause::ALL
        .iter()
        .find(|c| c.code() == code)
        .map(|c| c.code())
        .unwrap_or("other")
}

/// How platforms are named to people.
pub fn platform_display(platform: Option<&str>) -> String {
    match platform {
        Some("facebook") => "Meta".to_string(),
        Some("google_ads") => "Google Ads".to_string(),
        Some("tiktok") => "TikTok".to_string(),
        Some(other) => other.to_string(),
        None => "?".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> AlertDetails {
        AlertDetails {
            platform: Some("facebook".into()),
            event_name: Some("Purchase".into()),
            stage_name: Some("Comprou".into()),
            pixel: Some("1234".into()),
            campaign: Some("Black Friday".into()),
            code: Some("190".into()),
            subcode: Some(463),
            trace_id: Some("AbC123".into()),
            trace_name: Some("fbtrace_id"),
            error: Some("Invalid parameter".into()),
            suggestion: Some("Purchase".into()),
            ad_id: Some("120226305854810726".into()),
            max_age_secs: None,
        }
    }

    #[test]
    fn event_too_old_names_the_window_applied() {
        let with = |secs: Option<u64>, platform: &str| AlertDetails {
            max_age_secs: secs,
            platform: Some(platform.into()),
            ..details()
        };
        let meta_default = Some(7 * 24 * 3600 - 600);
        let en =
            Alert::new(AlertCause::EventTooOld, with(meta_default, "facebook")).render(Locale::En);
        assert!(
            en.contains("more than 7 days old") && en.contains("Meta"),
            "{en}"
        );
        let store = Some(62 * 24 * 3600);
        for (locale, want) in [
            (Locale::Pt, "mais de 62 dias"),
            (Locale::En, "more than 62 days"),
            (Locale::Es, "más de 62 días"),
        ] {
            let text = Alert::new(AlertCause::EventTooOld, with(store, "facebook")).render(locale);
            assert!(text.contains(want) && !text.contains("7 d"), "{text}");
        }
        let tiktok = Alert::new(
            AlertCause::EventTooOld,
            with(Some(28 * 24 * 3600), "tiktok"),
        )
        .render(Locale::Pt);
        assert!(
            tiktok.contains("mais de 28 dias")
                && tiktok.contains("TikTok")
                && !tiktok.contains("Meta"),
            "{tiktok}"
        );
        let refused =
            Alert::new(AlertCause::EventTooOld, with(None, "facebook")).render(Locale::Es);
        assert!(
            refused.contains("más de 7 días"),
            "Meta's own refusal: its 7 days: {refused}"
        );
        let hours =
            Alert::new(AlertCause::EventTooOld, with(Some(3600), "tiktok")).render(Locale::En);
        assert!(hours.contains("more than 1 hour old"), "{hours}");
    }

    #[test]
    fn every_cause_renders_in_every_locale_without_placeholders() {
        for cause in AlertCause::ALL {
            for locale in Locale::ALL {
                let text = Alert::new(cause, details()).render(locale);
                assert!(text.starts_with("⚠️ stagecast: "), "{text}");
                assert!(
                    !text.contains('{') && !text.contains('}'),
                    "unfilled placeholder in {cause:?}/{locale}: {text}"
                );
            }
        }
    }

    #[test]
    fn codes_are_unique_and_snake_case() {
        let codes: std::collections::HashSet<_> =
            AlertCause::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes.len(), AlertCause::ALL.len());
        assert!(codes
            .iter()
            .all(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_')));
    }

    #[test]
    fn token_invalid_names_code_and_trace_and_the_fix() {
        let text = Alert::new(AlertCause::TokenInvalid, details()).render(Locale::En);
        assert!(text.contains("code 190"), "{text}");
        assert!(text.contains("AbC123"), "{text}");
        assert!(text.contains("generate a new token"), "{text}");
        assert!(
            text.contains("held without spending attempts") && text.contains("sent automatically"),
            "{text}"
        );
        assert!(text.contains("Meta"), "{text}");
        let pt = Alert::new(AlertCause::NoCampaign, details()).render(Locale::Pt);
        assert!(pt.contains("não tem campanha UTM"), "{pt}");
    }

    #[test]
    fn business_messaging_only_names_the_standard_event_to_use() {
        let d = AlertDetails {
            event_name: Some("QualifiedLead".into()),
            suggestion: Some("Lead".into()),
            ..details()
        };
        for locale in [Locale::Pt, Locale::En, Locale::Es] {
            let text = Alert::new(AlertCause::BusinessMessagingOnlyEvent, d.clone()).render(locale);
            assert!(
                text.contains("\"QualifiedLead\"") && text.contains("\"Lead\""),
                "{text}"
            );
            assert!(!text.contains('{'), "{text}");
        }
    }

    #[test]
    fn missing_details_render_placeholders_not_braces() {
        let text = Alert::new(AlertCause::ApiError, AlertDetails::default()).render(Locale::Es);
        assert!(text.contains("código -"), "{text}");
    }
}
