//! The event catalog: every event name a CRM stage can be configured to send to Meta.
//!
//! - Meta's 17 pixel standard events plus `PageView` (18 names; the standard events of
//!   <https://developers.facebook.com/documentation/meta-pixel/reference>, and `PageView`, the
//!   pixel's base event, which the Conversions API was seen to accept too).
//! - The business-messaging (Click-to-WhatsApp) names that have no pixel counterpart (Meta's
//!   business-messaging page, <https://developers.facebook.com/documentation/ads-commerce/conversions-api/business-messaging>),
//!   flagged [`EventKind::BusinessMessagingOnly`].
//! - `Other`, which stands for a custom event name given in `custom_event_name`.
//!
//! Labels and "when to use" lines are written for marketers configuring CRM stages, in pt (Brazil),
//! en and es. Meta's names are case-sensitive, so lookups are exact; [`suggest`] helps with typos.

use std::fmt;

use crate::locale::Localized;

/// Where an event name can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A Meta pixel standard event (usable with every action source).
    Standard,
    /// Only valid with `action_source = business_messaging` (Click-to-WhatsApp conversations).
    BusinessMessagingOnly,
    /// The `Other` entry: the real name is the stage's custom event name.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventDef {
    /// Meta's exact, case-sensitive name.
    pub name: &'static str,
    pub label: Localized,
    pub when_to_use: Localized,
    /// The name to send with `action_source = business_messaging`, when Meta has one.
    pub business_messaging_name: Option<&'static str>,
    pub kind: EventKind,
    /// Meta rejects the event without `value` and `currency` (subcode 2804009).
    pub requires_value: bool,
}

const fn l(pt: &'static str, en: &'static str, es: &'static str) -> Localized {
    Localized { pt, en, es }
}

const fn std_event(
    name: &'static str,
    label: Localized,
    when_to_use: Localized,
    business_messaging_name: Option<&'static str>,
) -> EventDef {
    EventDef {
        name,
        label,
        when_to_use,
        business_messaging_name,
        kind: EventKind::Standard,
        requires_value: false,
    }
}

const fn bm_event(name: &'static str, label: Localized, when_to_use: Localized) -> EventDef {
    EventDef {
        name,
        label,
        when_to_use,
        business_messaging_name: Some(name),
        kind: EventKind::BusinessMessagingOnly,
        requires_value: false,
    }
}

/// The name of the catalog entry that stands for a custom event.
pub const OTHER: &str = "Other";

/// Conservative limit for custom event names. Meta's exact limit is unverified (50 is the figure
/// commonly cited for pixel custom events); staying within it is always safe.
pub const CUSTOM_NAME_MAX_CHARS: usize = 50;

static CATALOG: [EventDef; 29] = [
    // Meta pixel standard events, in Meta's order.
    std_event(
        "AddPaymentInfo",
        l("Adicionar dados de pagamento", "Add payment info", "Agregar información de pago"),
        l(
            "O cliente informou os dados de pagamento (cartão, Pix, boleto) durante a compra.",
            "The customer entered payment details (card, bank transfer) while buying.",
            "El cliente ingresó sus datos de pago (tarjeta, transferencia) durante la compra.",
        ),
        None,
    ),
    std_event(
        "AddToCart",
        l("Adicionar ao carrinho", "Add to cart", "Agregar al carrito"),
        l(
            "O cliente escolheu o produto ou serviço que quer comprar, mas ainda não fechou o pedido.",
            "The customer picked the product or service they want but has not placed the order yet.",
            "El cliente eligió el producto o servicio que quiere, pero aún no cerró el pedido.",
        ),
        Some("AddToCart"),
    ),
    std_event(
        "AddToWishlist",
        l("Adicionar à lista de desejos", "Add to wishlist", "Agregar a la lista de deseos"),
        l(
            "O cliente guardou um produto para comprar depois.",
            "The customer saved a product to buy later.",
            "El cliente guardó un producto para comprarlo más tarde.",
        ),
        None,
    ),
    std_event(
        "CompleteRegistration",
        l("Cadastro concluído", "Complete registration", "Registro completado"),
        l(
            "O cliente concluiu um cadastro: criou conta, preencheu a ficha ou se inscreveu num evento.",
            "The customer finished signing up: created an account, filled in a form or registered for an event.",
            "El cliente completó un registro: creó una cuenta, llenó un formulario o se inscribió en un evento.",
        ),
        None,
    ),
    std_event(
        "Contact",
        l("Contato", "Contact", "Contacto"),
        l(
            "O cliente entrou em contato (mensagem, ligação, e-mail). Use na etapa de primeiro contato.",
            "The customer got in touch (message, call, email). Use it for the first-contact stage.",
            "El cliente se puso en contacto (mensaje, llamada, correo). Úsalo en la etapa de primer contacto.",
        ),
        None,
    ),
    std_event(
        "CustomizeProduct",
        l("Personalizar produto", "Customize product", "Personalizar producto"),
        l(
            "O cliente personalizou um produto (tamanho, cor, configuração) antes de comprar.",
            "The customer customised a product (size, colour, configuration) before buying.",
            "El cliente personalizó un producto (talla, color, configuración) antes de comprar.",
        ),
        None,
    ),
    std_event(
        "Donate",
        l("Doação", "Donate", "Donación"),
        l(
            "O cliente fez uma doação para a sua organização.",
            "The customer made a donation to your organisation.",
            "El cliente hizo una donación a la organización.",
        ),
        None,
    ),
    std_event(
        "FindLocation",
        l("Buscar localização", "Find location", "Buscar ubicación"),
        l(
            "O cliente pediu o endereço ou procurou uma loja ou unidade para visitar.",
            "The customer asked for your address or looked for a store or branch to visit.",
            "El cliente pidió la dirección o buscó una tienda o sucursal para visitar.",
        ),
        None,
    ),
    std_event(
        "InitiateCheckout",
        l("Iniciar finalização da compra", "Initiate checkout", "Iniciar pago"),
        l(
            "O cliente começou a fechar o pedido: pediu o link de pagamento ou o orçamento final.",
            "The customer started closing the order: asked for the payment link or the final quote.",
            "El cliente empezó a cerrar el pedido: pidió el enlace de pago o el presupuesto final.",
        ),
        Some("InitiateCheckout"),
    ),
    std_event(
        "Lead",
        l("Lead", "Lead", "Lead (cliente potencial)"),
        l(
            "O cliente demonstrou interesse e deixou os dados para ser atendido. A etapa mais comum para novos leads.",
            "The customer showed interest and left their details to be contacted. The usual stage for new leads.",
            "El cliente mostró interés y dejó sus datos para ser atendido. La etapa habitual para nuevos leads.",
        ),
        Some("LeadSubmitted"),
    ),
    EventDef {
        requires_value: true,
        ..std_event(
            "Purchase",
            l("Compra", "Purchase", "Compra"),
            l(
                "A venda foi fechada e paga. Exige valor e moeda: sem valor, o evento não é enviado.",
                "The sale was closed and paid. Needs a value and currency: without a value the event is not sent.",
                "La venta se cerró y se pagó. Requiere valor y moneda: sin valor, el evento no se envía.",
            ),
            Some("Purchase"),
        )
    },
    std_event(
        "Schedule",
        l("Agendamento", "Schedule", "Agendamiento"),
        l(
            "O cliente agendou uma consulta, visita, aula experimental ou reunião.",
            "The customer booked an appointment, visit, trial class or meeting.",
            "El cliente agendó una cita, visita, clase de prueba o reunión.",
        ),
        None,
    ),
    std_event(
        "Search",
        l("Pesquisa", "Search", "Búsqueda"),
        l(
            "O cliente pesquisou produtos ou serviços no seu site ou app.",
            "The customer searched for products or services on your site or app.",
            "El cliente buscó productos o servicios en el sitio o la app de la empresa.",
        ),
        None,
    ),
    std_event(
        "StartTrial",
        l("Iniciar período de teste", "Start trial", "Iniciar prueba"),
        l(
            "O cliente começou um teste gratuito de um produto ou serviço.",
            "The customer started a free trial of a product or service.",
            "El cliente comenzó una prueba gratuita de un producto o servicio.",
        ),
        None,
    ),
    std_event(
        "SubmitApplication",
        l("Enviar inscrição", "Submit application", "Enviar solicitud"),
        l(
            "O cliente enviou uma inscrição: matrícula, candidatura a vaga ou a um programa.",
            "The customer submitted an application: an enrolment, a job or a programme.",
            "El cliente envió una solicitud: matrícula, postulación a un empleo o a un programa.",
        ),
        None,
    ),
    std_event(
        "Subscribe",
        l("Assinatura", "Subscribe", "Suscripción"),
        l(
            "O cliente assinou um plano ou serviço pago recorrente.",
            "The customer subscribed to a paid recurring plan or service.",
            "El cliente se suscribió a un plan o servicio de pago recurrente.",
        ),
        None,
    ),
    std_event(
        "ViewContent",
        l("Visualizar conteúdo", "View content", "Ver contenido"),
        l(
            "O cliente viu um produto, catálogo ou página importante. Raramente é uma etapa de CRM.",
            "The customer viewed a product, catalogue or key page. Rarely a CRM stage.",
            "El cliente vio un producto, catálogo o página importante. Rara vez es una etapa de CRM.",
        ),
        Some("ViewContent"),
    ),
    // The pixel's default event; CAPI accepts it too.
    std_event(
        "PageView",
        l("Visualização de página", "Page view", "Vista de página"),
        l(
            "Uma página do site foi aberta. É um evento de navegação do pixel e quase nunca serve como etapa de CRM.",
            "A website page was opened. It is a pixel browsing event and almost never fits a CRM stage.",
            "Se abrió una página del sitio. Es un evento de navegación del píxel y casi nunca sirve como etapa de CRM.",
        ),
        None,
    ),
    // Business-messaging (Click-to-WhatsApp) only.
    bm_event(
        "LeadSubmitted",
        l("Lead enviado (conversa)", "Lead submitted (conversation)", "Lead enviado (conversación)"),
        l(
            "Uma conversa iniciada por anúncio de WhatsApp virou lead. Só para conversas vindas de anúncios de mensagem.",
            "A conversation started from a WhatsApp ad became a lead. Only for conversations from click-to-message ads.",
            "Una conversación iniciada por un anuncio de WhatsApp se convirtió en lead. Solo para conversaciones de anuncios de mensajes.",
        ),
    ),
    bm_event(
        "QualifiedLead",
        l("Lead qualificado", "Qualified lead", "Lead calificado"),
        l(
            "A equipe qualificou o lead da conversa (perfil certo, interesse real). Só para conversas vindas de anúncios de mensagem.",
            "Your team qualified the lead from the conversation (right profile, real interest). Only for conversations from click-to-message ads.",
            "Tu equipo calificó el lead de la conversación (perfil adecuado, interés real). Solo para conversaciones de anuncios de mensajes.",
        ),
    ),
    bm_event(
        "OrderCreated",
        l("Pedido criado", "Order created", "Pedido creado"),
        l(
            "Um pedido foi registrado a partir da conversa. Só para conversas vindas de anúncios de mensagem.",
            "An order was placed from the conversation. Only for conversations from click-to-message ads.",
            "Se registró un pedido a partir de la conversación. Solo para conversaciones de anuncios de mensajes.",
        ),
    ),
    bm_event(
        "OrderShipped",
        l("Pedido enviado", "Order shipped", "Pedido despachado"),
        l(
            "O pedido feito na conversa foi despachado. Só para conversas vindas de anúncios de mensagem.",
            "The order placed in the conversation was shipped. Only for conversations from click-to-message ads.",
            "El pedido hecho en la conversación fue despachado. Solo para conversaciones de anuncios de mensajes.",
        ),
    ),
    bm_event(
        "OrderDelivered",
        l("Pedido entregue", "Order delivered", "Pedido entregado"),
        l(
            "O pedido feito na conversa foi entregue ao cliente. Só para conversas vindas de anúncios de mensagem.",
            "The order placed in the conversation was delivered. Only for conversations from click-to-message ads.",
            "El pedido hecho en la conversación fue entregado al cliente. Solo para conversaciones de anuncios de mensajes.",
        ),
    ),
    bm_event(
        "OrderCanceled",
        l("Pedido cancelado", "Order canceled", "Pedido cancelado"),
        l(
            "O pedido feito na conversa foi cancelado. Só para conversas vindas de anúncios de mensagem.",
            "The order placed in the conversation was canceled. Only for conversations from click-to-message ads.",
            "El pedido hecho en la conversación fue cancelado. Solo para conversaciones de anuncios de mensajes.",
        ),
    ),
    bm_event(
        "OrderReturned",
        l("Pedido devolvido", "Order returned", "Pedido devuelto"),
        l(
            "O cliente devolveu o pedido feito na conversa. Só para conversas vindas de anúncios de mensagem.",
            "The customer returned the order placed in the conversation. Only for conversations from click-to-message ads.",
            "El cliente devolvió el pedido hecho en la conversación. Solo para conversaciones de anuncios de mensajes.",
        ),
    ),
    bm_event(
        "CartAbandoned",
        l("Carrinho abandonado", "Cart abandoned", "Carrito abandonado"),
        l(
            "O cliente escolheu produtos na conversa, mas desistiu antes de comprar. Só para conversas vindas de anúncios de mensagem.",
            "The customer picked products in the conversation but gave up before buying. Only for conversations from click-to-message ads.",
            "El cliente eligió productos en la conversación, pero desistió antes de comprar. Solo para conversaciones de anuncios de mensajes.",
        ),
    ),
    bm_event(
        "RatingProvided",
        l("Nota enviada", "Rating provided", "Calificación enviada"),
        l(
            "O cliente deu uma nota ao atendimento ou ao produto na conversa. Só para conversas vindas de anúncios de mensagem.",
            "The customer rated the service or product in the conversation. Only for conversations from click-to-message ads.",
            "El cliente calificó la atención o el producto en la conversación. Solo para conversaciones de anuncios de mensajes.",
        ),
    ),
    bm_event(
        "ReviewProvided",
        l("Avaliação escrita enviada", "Review provided", "Reseña enviada"),
        l(
            "O cliente escreveu uma avaliação do atendimento ou do produto na conversa. Só para conversas vindas de anúncios de mensagem.",
            "The customer wrote a review of the service or product in the conversation. Only for conversations from click-to-message ads.",
            "El cliente escribió una reseña de la atención o del producto en la conversación. Solo para conversaciones de anuncios de mensajes.",
        ),
    ),
    EventDef {
        name: OTHER,
        label: l("Outro (evento personalizado)", "Other (custom event)", "Otro (evento personalizado)"),
        when_to_use: l(
            "Nenhum evento padrão descreve a etapa: informe um nome personalizado (até 50 caracteres, neutro, sem termos de saúde ou finanças).",
            "No standard event describes the stage: enter a custom name (up to 50 characters, neutral, no health or financial terms).",
            "Ningún evento estándar describe la etapa: indica un nombre personalizado (hasta 50 caracteres, neutro, sin términos de salud o finanzas).",
        ),
        business_messaging_name: None,
        kind: EventKind::Other,
        requires_value: false,
    },
];

/// Every catalog entry: the 18 standard names, the business-messaging-only names, then `Other`.
pub fn all() -> &'static [EventDef] {
    &CATALOG
}

/// Exact, case-sensitive lookup (Meta treats `purchase` as a custom event, not `Purchase`).
pub fn lookup(name: &str) -> Option<&'static EventDef> {
    CATALOG.iter().find(|d| d.name == name)
}

/// Lowercase letters and digits only, so `add_to_cart`, `Add To Cart` and `AddToCart` compare equal.
fn fold(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Edit distance over chars; inputs here are short names, so the O(n·m) table is fine.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            let best = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
            cur.push(best);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The catalog name a near-miss probably meant: same letters ignoring case, spaces and
/// punctuation (`purchase`, `add_to_cart`), else at most 2 edits away (`Purchse`, `Leads`).
/// `None` for exact names and for anything further off.
pub fn suggest(name: &str) -> Option<&'static str> {
    if lookup(name).is_some() {
        return None;
    }
    let folded = fold(name);
    // Guards the edit-distance loop against huge inputs; no catalog name is this long.
    if folded.is_empty() || folded.chars().count() > 40 {
        return None;
    }
    if let Some(d) = CATALOG.iter().find(|d| fold(d.name) == folded) {
        return Some(d.name);
    }
    CATALOG
        .iter()
        .map(|d| (levenshtein(&folded, &fold(d.name)), d.name))
        .filter(|(dist, _)| *dist <= 2)
        .min_by_key(|(dist, _)| *dist)
        .map(|(_, n)| n)
}

/// The standard name to configure instead of a business-messaging-only name, for customers who
/// did not come from a click-to-WhatsApp ad (the alert `business_messaging_only_event` names it).
/// Names with no standard counterpart suggest `Other` (a custom name).
pub fn standard_alternative(name: &str) -> &'static str {
    match name {
        "LeadSubmitted" | "QualifiedLead" => "Lead",
        "OrderCreated" | "OrderShipped" | "OrderDelivered" => "Purchase",
        "CartAbandoned" => "AddToCart",
        _ => OTHER,
    }
}

/// The event a stage sends: a catalog entry or a custom name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventName {
    Standard(&'static EventDef),
    Custom(String),
}

impl EventName {
    pub fn as_str(&self) -> &str {
        match self {
            EventName::Standard(d) => d.name,
            EventName::Custom(s) => s,
        }
    }

    pub fn requires_value(&self) -> bool {
        match self {
            EventName::Standard(d) => d.requires_value,
            EventName::Custom(_) => false,
        }
    }

    /// The name to use with `action_source = business_messaging`, if Meta has one.
    pub fn business_messaging_name(&self) -> Option<&str> {
        match self {
            EventName::Standard(d) => d.business_messaging_name,
            EventName::Custom(_) => None,
        }
    }

    pub fn kind(&self) -> EventKind {
        match self {
            EventName::Standard(d) => d.kind,
            EventName::Custom(_) => EventKind::Other,
        }
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a stage's event configuration cannot be sent. Stage configuration is not PII, so names
/// may appear in messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("unknown event name {name:?}{}", did_you_mean(.suggestion))]
    UnknownEventName {
        name: String,
        suggestion: Option<&'static str>,
    },
    #[error("invalid custom event name: {reason}")]
    InvalidCustomName { reason: &'static str },
    #[error("the stage has no event name")]
    MissingEventName,
    #[error("event \"Other\" needs a custom event name")]
    MissingCustomName,
}

fn did_you_mean(suggestion: &Option<&'static str>) -> String {
    suggestion
        .map(|s| format!(": did you mean {s:?}?"))
        .unwrap_or_default()
}

/// Checks a custom event name and returns it trimmed.
fn custom_name(raw: &str) -> Result<String, CatalogError> {
    let name = raw.trim();
    if name.chars().any(char::is_control) {
        return Err(CatalogError::InvalidCustomName {
            reason: "it contains control characters",
        });
    }
    if name.chars().count() > CUSTOM_NAME_MAX_CHARS {
        return Err(CatalogError::InvalidCustomName {
            reason: "it is longer than 50 characters",
        });
    }
    Ok(name.to_owned())
}

/// Resolves a stage config's `event_name` and optional `custom_event_name`.
///
/// - A catalog name (exact, surrounding whitespace ignored) → [`EventName::Standard`], even if a
///   `custom_event_name` is also present: CRM forms often keep a stale custom name after the
///   user switches back to a standard event, and silently sending a custom event instead of,
///   say, `Purchase` would lose the conversion.
/// - `Other`, an unknown name, or no name, with a non-empty `custom_event_name` → the custom
///   name ([`EventName::Custom`]); a custom name that is exactly a catalog name resolves to that
///   entry, because Meta treats it as the standard event (and `Purchase` then needs a value).
/// - `Other` without a custom name → [`CatalogError::MissingCustomName`]; an unknown name without
///   one → [`CatalogError::UnknownEventName`] with a suggestion; neither → `MissingEventName`.
///
/// Custom names are trimmed, 1..=[`CUSTOM_NAME_MAX_CHARS`] characters, with no control characters.
pub fn resolve(
    event_name: Option<&str>,
    custom_event_name: Option<&str>,
) -> Result<EventName, CatalogError> {
    let event_name = event_name.map(str::trim).filter(|s| !s.is_empty());
    let custom = custom_event_name.map(str::trim).filter(|s| !s.is_empty());

    if let Some(def) = event_name.and_then(lookup) {
        if def.kind != EventKind::Other {
            return Ok(EventName::Standard(def));
        }
    }
    match (event_name, custom) {
        (_, Some(raw)) => {
            let name = custom_name(raw)?;
            Ok(match lookup(&name) {
                Some(def) if def.kind != EventKind::Other => EventName::Standard(def),
                Some(_) => {
                    return Err(CatalogError::InvalidCustomName {
                        reason: "\"Other\" is not an event name",
                    })
                }
                None => EventName::Custom(name),
            })
        }
        (Some(OTHER), None) => Err(CatalogError::MissingCustomName),
        (Some(name), None) => Err(CatalogError::UnknownEventName {
            name: name.to_owned(),
            suggestion: suggest(name),
        }),
        (None, None) => Err(CatalogError::MissingEventName),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locale::Locale;
    use std::collections::HashSet;

    const STANDARD_18: [&str; 18] = [
        "AddPaymentInfo",
        "AddToCart",
        "AddToWishlist",
        "CompleteRegistration",
        "Contact",
        "CustomizeProduct",
        "Donate",
        "FindLocation",
        "InitiateCheckout",
        "Lead",
        "Purchase",
        "Schedule",
        "Search",
        "StartTrial",
        "SubmitApplication",
        "Subscribe",
        "ViewContent",
        "PageView",
    ];

    const BM_ONLY: [&str; 10] = [
        "LeadSubmitted",
        "QualifiedLead",
        "OrderCreated",
        "OrderShipped",
        "OrderDelivered",
        "OrderCanceled",
        "OrderReturned",
        "CartAbandoned",
        "RatingProvided",
        "ReviewProvided",
    ];

    #[test]
    fn standard_names_and_other_present_exactly_once() {
        for name in STANDARD_18.iter().chain(&BM_ONLY).chain(&[OTHER]) {
            assert_eq!(
                all().iter().filter(|d| d.name == *name).count(),
                1,
                "{name}"
            );
        }
        let standard: HashSet<_> = all()
            .iter()
            .filter(|d| d.kind == EventKind::Standard)
            .map(|d| d.name)
            .collect();
        assert_eq!(standard, STANDARD_18.into_iter().collect());
        let bm: HashSet<_> = all()
            .iter()
            .filter(|d| d.kind == EventKind::BusinessMessagingOnly)
            .map(|d| d.name)
            .collect();
        assert_eq!(bm, BM_ONLY.into_iter().collect());
        assert_eq!(all().len(), 18 + 10 + 1);
        assert_eq!(all().last().map(|d| d.name), Some(OTHER));
    }

    #[test]
    fn every_entry_has_texts_in_every_language() {
        for d in all() {
            for locale in Locale::ALL {
                for text in [d.label.get(locale), d.when_to_use.get(locale)] {
                    assert!(!text.trim().is_empty(), "{} {locale}", d.name);
                    assert_eq!(text, text.trim(), "{} {locale}", d.name);
                }
                assert!(
                    d.when_to_use.get(locale).ends_with('.'),
                    "{} {locale}",
                    d.name
                );
            }
        }
    }

    #[test]
    fn business_messaging_names() {
        let bm = |n: &str| lookup(n).and_then(|d| d.business_messaging_name);
        assert_eq!(bm("Lead"), Some("LeadSubmitted"));
        for same in ["Purchase", "InitiateCheckout", "AddToCart", "ViewContent"] {
            assert_eq!(bm(same), Some(same));
        }
        for none in ["Contact", "Schedule", "PageView", OTHER] {
            assert_eq!(bm(none), None);
        }
        for name in BM_ONLY {
            assert_eq!(bm(name), Some(name));
        }
        // Every BM name we map to is one of Meta's supported BM events (its business-messaging page).
        let supported: HashSet<_> = BM_ONLY
            .iter()
            .chain(&["Purchase", "InitiateCheckout", "AddToCart", "ViewContent"])
            .collect();
        for d in all() {
            if let Some(n) = d.business_messaging_name {
                assert!(supported.contains(&n), "{n}");
            }
        }
    }

    #[test]
    fn only_purchase_requires_value() {
        let requiring: Vec<_> = all()
            .iter()
            .filter(|d| d.requires_value)
            .map(|d| d.name)
            .collect();
        assert_eq!(requiring, ["Purchase"]);
    }

    #[test]
    fn lookup_is_exact_and_case_sensitive() {
        assert_eq!(lookup("Purchase").map(|d| d.name), Some("Purchase"));
        assert_eq!(
            lookup("QualifiedLead").map(|d| d.kind),
            Some(EventKind::BusinessMessagingOnly)
        );
        assert!(lookup("purchase").is_none());
        assert!(lookup(" Purchase").is_none());
        assert!(lookup("").is_none());
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("purchase"), Some("Purchase"));
        assert_eq!(suggest("add_to_cart"), Some("AddToCart"));
        assert_eq!(suggest("Page View"), Some("PageView"));
        assert_eq!(suggest("Purchse"), Some("Purchase"));
        assert_eq!(suggest("Leads"), Some("Lead"));
        assert_eq!(suggest("other"), Some(OTHER));
        assert_eq!(suggest("Purchase"), None);
        assert_eq!(suggest("Venda fechada"), None);
        assert_eq!(suggest(""), None);
        assert_eq!(suggest(&"x".repeat(10_000)), None);
    }

    #[test]
    fn resolve_standard_names() {
        let r = resolve(Some("Purchase"), None).unwrap();
        assert_eq!(r.as_str(), "Purchase");
        assert!(r.requires_value());
        assert_eq!(r.business_messaging_name(), Some("Purchase"));
        assert_eq!(
            resolve(Some(" Lead "), None)
                .unwrap()
                .business_messaging_name(),
            Some("LeadSubmitted")
        );
        assert_eq!(
            resolve(Some("QualifiedLead"), None).unwrap().kind(),
            EventKind::BusinessMessagingOnly
        );
        // A standard name wins over a stale custom name.
        assert_eq!(
            resolve(Some("Purchase"), Some("Venda")).unwrap().as_str(),
            "Purchase"
        );
    }

    #[test]
    fn resolve_custom_names() {
        let r = resolve(Some("Other"), Some("  Visita realizada ")).unwrap();
        assert_eq!(r, EventName::Custom("Visita realizada".into()));
        assert!(!r.requires_value());
        assert_eq!(r.business_messaging_name(), None);
        assert_eq!(r.to_string(), "Visita realizada");
        // Unknown or missing event_name plus a custom name: the custom name.
        assert_eq!(
            resolve(Some("Venda"), Some("Venda")).unwrap().as_str(),
            "Venda"
        );
        assert_eq!(resolve(None, Some("Venda")).unwrap().as_str(), "Venda");
        // A custom name that is a catalog name is that event.
        let p = resolve(Some("Other"), Some("Purchase")).unwrap();
        assert!(matches!(p, EventName::Standard(d) if d.name == "Purchase"));
        // Exactly 50 characters is fine, 51 is not; multibyte characters count once.
        assert!(resolve(Some("Other"), Some(&"é".repeat(50))).is_ok());
        assert_eq!(
            resolve(Some("Other"), Some(&"a".repeat(51))),
            Err(CatalogError::InvalidCustomName {
                reason: "it is longer than 50 characters"
            })
        );
        assert!(matches!(
            resolve(Some("Other"), Some("Venda\nfechada")),
            Err(CatalogError::InvalidCustomName { .. })
        ));
        assert!(matches!(
            resolve(Some("Other"), Some("Other")),
            Err(CatalogError::InvalidCustomName { .. })
        ));
    }

    #[test]
    fn resolve_errors() {
        assert_eq!(
            resolve(Some("Other"), None),
            Err(CatalogError::MissingCustomName)
        );
        assert_eq!(
            resolve(Some("Other"), Some("   ")),
            Err(CatalogError::MissingCustomName)
        );
        assert_eq!(resolve(None, None), Err(CatalogError::MissingEventName));
        assert_eq!(
            resolve(Some("  "), Some("")),
            Err(CatalogError::MissingEventName)
        );
        let err = resolve(Some("purchase"), None).unwrap_err();
        assert_eq!(
            err,
            CatalogError::UnknownEventName {
                name: "purchase".into(),
                suggestion: Some("Purchase")
            }
        );
        assert_eq!(
            err.to_string(),
            "unknown event name \"purchase\": did you mean \"Purchase\"?"
        );
        let err = resolve(Some("Venda fechada"), None).unwrap_err();
        assert_eq!(err.to_string(), "unknown event name \"Venda fechada\"");
    }
}
