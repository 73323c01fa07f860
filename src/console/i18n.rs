//! The console's own texts in pt, en and es. Texts that come from elsewhere keep their source's
//! language: event labels and hints are the catalog's (localised), the doctor's findings and the
//! database's messages are in English, as `stagecast doctor` and `stagecast jobs` print them.

use crate::locale::{Locale, Localized};

macro_rules! texts {
    ($($key:ident => ($pt:expr, $en:expr, $es:expr)),* $(,)?) => {
        /// A text of the console.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum K { $($key),* }

        impl K {
            #[cfg(test)]
            pub const ALL: &'static [K] = &[$(K::$key),*];

            pub fn localized(self) -> Localized {
                match self { $(K::$key => Localized { pt: $pt, en: $en, es: $es }),* }
            }
        }
    };
}

texts! {
    Title => ("Console do stagecast", "stagecast console", "Consola de stagecast"),
    Overview => ("Visão geral", "Overview", "Resumen"),
    Jobs => ("Jobs", "Jobs", "Jobs"),
    Destinations => ("Destinos", "Destinations", "Destinos"),
    Stages => ("Etapas", "Stages", "Etapas"),
    Logout => ("Sair", "Log out", "Salir"),
    Language => ("Idioma", "Language", "Idioma"),
    SignedInAs => ("Conectado como", "Signed in as", "Conectado como"),
    RoleAdmin => ("administrador", "admin", "administrador"),
    RoleViewer => ("somente leitura", "read-only", "solo lectura"),
    LoginTitle => ("Entrar no console", "Sign in to the console", "Entrar a la consola"),
    LoginToken => ("Token de acesso", "Access token", "Token de acceso"),
    LoginButton => ("Entrar", "Sign in", "Entrar"),
    LoginHelp => (
        "Use o token que o operador configurou para você em STAGECAST_CONSOLE_USERS.",
        "Use the token the operator configured for you in STAGECAST_CONSOLE_USERS.",
        "Usa el token que el operador configuró para ti en STAGECAST_CONSOLE_USERS."
    ),
    LoginFailed => ("Token inválido.", "Invalid token.", "Token inválido."),
    LoginRequired => (
        "Entre com o seu token para continuar.",
        "Sign in with your token to continue.",
        "Entra con tu token para continuar."
    ),
    TooManyAttempts => (
        "Muitas tentativas. Aguarde alguns segundos.",
        "Too many attempts. Wait a few seconds.",
        "Demasiados intentos. Espera unos segundos."
    ),
    Backlog => ("Fila por tipo", "Backlog by kind", "Cola por tipo"),
    Kind => ("Tipo", "Kind", "Tipo"),
    Pending => ("Pendentes", "Pending", "Pendientes"),
    Running => ("Em execução", "Running", "En ejecución"),
    Failed => ("Falharam", "Failed", "Fallidos"),
    Cancelled => ("Cancelados", "Cancelled", "Cancelados"),
    Lag => ("Atraso (mais antigo devido)", "Lag (oldest due)", "Retraso (más antiguo pendiente)"),
    QueueEmpty => ("Nenhum job na fila.", "No job in the queue.", "Ningún job en la cola."),
    Deliveries24h => (
        "Entregas por destino (última hora e último dia)",
        "Deliveries per destination (last hour and day)",
        "Entregas por destino (última hora y último día)"
    ),
    Destination => ("Destino", "Destination", "Destino"),
    Delivered1h => ("Entregues 1 h", "Delivered 1 h", "Entregados 1 h"),
    Failed1h => ("Recusados 1 h", "Failed 1 h", "Rechazados 1 h"),
    Delivered24h => ("Entregues 24 h", "Delivered 24 h", "Entregados 24 h"),
    Failed24h => ("Recusados 24 h", "Failed 24 h", "Rechazados 24 h"),
    Retries24h => ("Novas tentativas 24 h", "Retries 24 h", "Reintentos 24 h"),
    Throttled1h => ("Limitados 1 h", "Throttled 1 h", "Limitados 1 h"),
    NoDeliveries => (
        "Nenhum evento enviado nas últimas 24 horas.",
        "No event sent in the last 24 hours.",
        "Ningún evento enviado en las últimas 24 horas."
    ),
    Capped => (
        "Mais de 1.000.000 de eventos no dia: as contagens são limites inferiores.",
        "Over 1,000,000 events in the day: the counts are lower bounds.",
        "Más de 1.000.000 de eventos en el día: los conteos son cotas inferiores."
    ),
    HeldTitle => ("Destinos retidos ou limitados", "Held or throttled destinations", "Destinos retenidos o limitados"),
    NoneHeld => ("Nenhum destino retido ou limitado.", "No destination is held or throttled.", "Ningún destino retenido o limitado."),
    ThrottledSince => ("limitado pela plataforma; último às", "throttled by the platform; last at", "limitado por la plataforma; último a las"),
    JobsWaitUntil => ("jobs aguardam para depois; o próximo às", "jobs wait for later; the next at", "jobs esperan para más tarde; el próximo a las"),
    LastAlerts => ("Últimos alertas", "Last alerts", "Últimas alertas"),
    NoAlerts => ("Nenhum alerta.", "No alert.", "Ninguna alerta."),
    When => ("Quando", "When", "Cuándo"),
    Cause => ("Causa", "Cause", "Causa"),
    Job => ("Job", "Job", "Job"),
    Customer => ("Cliente", "Customer", "Cliente"),
    Chat => ("Chat", "Chat", "Chat"),
    ChatPosted => ("publicado, mensagem", "posted, message", "publicado, mensaje"),
    ChatRefused => ("recusado pelo chat", "refused by the chat", "rechazado por el chat"),
    ChatNone => ("não publicado: sem chat", "not posted: no chat", "no publicado: sin chat"),
    Message => ("Mensagem", "Message", "Mensaje"),
    Filter => ("Filtrar", "Filter", "Filtrar"),
    Status => ("Situação", "Status", "Estado"),
    Any => ("qualquer", "any", "cualquiera"),
    Since => ("Desde", "Since", "Desde"),
    SinceHelp => (
        "data (2026-11-01), data e hora ou duração atrás (2h, 7days)",
        "a date (2026-11-01), a date and time, or a duration ago (2h, 7days)",
        "fecha (2026-11-01), fecha y hora o duración atrás (2h, 7days)"
    ),
    Limit => ("Limite", "Limit", "Límite"),
    Attempts => ("Tentativas", "Attempts", "Intentos"),
    Created => ("Criado (UTC)", "Created (UTC)", "Creado (UTC)"),
    LastErrorNote => ("Último erro / nota", "Last error / note", "Último error / nota"),
    NoJobs => ("Nenhum job corresponde.", "No job matches.", "Ningún job coincide."),
    NewestShown => ("Os mais recentes mostrados; aumente o limite para ver mais.", "The newest shown; raise the limit for more.", "Se muestran los más recientes; sube el límite para ver más."),
    BulkTitle => ("Ações sobre os jobs filtrados", "Act on the filtered jobs", "Acciones sobre los jobs filtrados"),
    BulkPickStatus => (
        "Escolha uma situação (falharam, cancelados, pendentes, em execução) para agir sobre vários jobs.",
        "Choose a status (failed, cancelled, pending, running) to act on several jobs.",
        "Elige un estado (fallidos, cancelados, pendientes, en ejecución) para actuar sobre varios jobs."
    ),
    ReplayMatching => ("Reenfileirar os que correspondem…", "Replay the matching jobs…", "Reencolar los que coinciden…"),
    CancelMatching => ("Cancelar os que correspondem…", "Cancel the matching jobs…", "Cancelar los que coinciden…"),
    Replay => ("Reenfileirar", "Replay", "Reencolar"),
    Cancel => ("Cancelar", "Cancel", "Cancelar"),
    Reason => ("Motivo (fica na auditoria)", "Reason (kept in the audit)", "Motivo (queda en la auditoría)"),
    ReasonRequired => ("O motivo é obrigatório.", "A reason is required.", "El motivo es obligatorio."),
    ReasonTooLong => (
        "O motivo tem mais de 500 caracteres.",
        "The reason is longer than 500 characters.",
        "El motivo tiene más de 500 caracteres."
    ),
    WouldReplay => ("jobs seriam reenfileirados", "jobs would be replayed", "jobs serían reencolados"),
    WouldCancel => ("jobs seriam cancelados", "jobs would be cancelled", "jobs serían cancelados"),
    SkippedPending => (
        "correspondem mas ficariam como estão: a mesma mudança de etapa já está pendente",
        "match but would stay as they are: the same stage change is already pending",
        "coinciden pero quedarían como están: el mismo cambio de etapa ya está pendiente"
    ),
    NothingToDo => ("Nenhum job a alterar.", "No job to change.", "Ningún job que cambiar."),
    CountChanged => (
        "O conjunto mudou desde a contagem; confira a nova contagem e confirme de novo.",
        "The set changed since it was counted; check the new count and confirm again.",
        "El conjunto cambió desde el conteo; revisa el nuevo conteo y confirma otra vez."
    ),
    Confirm => ("Confirmar", "Confirm", "Confirmar"),
    Replayed => ("jobs reenfileirados", "jobs replayed", "jobs reencolados"),
    CancelledN => ("jobs cancelados", "jobs cancelled", "jobs cancelados"),
    LeftAlone => ("deixados como estavam", "left as they were", "dejados como estaban"),
    JobReplayed => ("Job reenfileirado: pendente de novo, com novas tentativas.", "Job replayed: pending again, with a fresh attempt budget.", "Job reencolado: pendiente de nuevo, con nuevos intentos."),
    JobNotReplayed => ("O job já está pendente ou em execução: nada a reenfileirar.", "The job is already pending or running: nothing to replay.", "El job ya está pendiente o en ejecución: nada que reencolar."),
    JobCancelled => ("Job cancelado.", "Job cancelled.", "Job cancelado."),
    JobNotCancelled => ("O job já está cancelado ou concluído: nada a cancelar.", "The job is already cancelled or done: nothing to cancel.", "El job ya está cancelado o terminado: nada que cancelar."),
    Payload => ("Carga", "Payload", "Carga"),
    RunAt => ("Executa em", "Run at", "Se ejecuta a las"),
    Finished => ("Terminado", "Finished", "Terminado"),
    LeasedBy => ("Reservado por", "Leased by", "Reservado por"),
    DedupKey => ("Chave de deduplicação", "Dedup key", "Clave de deduplicación"),
    LastError => ("Último erro", "Last error", "Último error"),
    Note => ("Nota", "Note", "Nota"),
    Attempt => ("Tentativa", "Attempt", "Intento"),
    DeliveriesTitle => ("Entregas (cada tentativa)", "Deliveries (every attempt)", "Entregas (cada intento)"),
    NoDeliveriesJob => ("Nenhuma entrega registrada.", "No delivery recorded.", "Ninguna entrega registrada."),
    Sent => ("Enviado (PII em hash)", "Sent (PII hashed)", "Enviado (PII con hash)"),
    Answer => ("Resposta da plataforma", "The platform's answer", "Respuesta de la plataforma"),
    AlertsTitle => ("Alertas", "Alerts", "Alertas"),
    AdminActions => ("Ações de administração", "Admin actions", "Acciones de administración"),
    NoneYet => ("Nenhuma.", "None.", "Ninguna."),
    ByFilter => ("por filtro", "by filter", "por filtro"),
    ById => ("por id", "by id", "por id"),
    DbRole => ("papel no banco", "database role", "rol en la base"),
    Changed => ("alterados", "changed", "cambiados"),
    Actions => ("Ações", "Actions", "Acciones"),
    ReadOnlyNote => (
        "Acesso somente leitura: as ações exigem um usuário administrador.",
        "Read-only access: actions need an admin user.",
        "Acceso de solo lectura: las acciones requieren un usuario administrador."
    ),
    NotFound => ("Não encontrado.", "Not found.", "No encontrado."),
    Forbidden => (
        "Sem permissão: esta ação exige um usuário administrador.",
        "Forbidden: this action needs an admin user.",
        "Prohibido: esta acción requiere un usuario administrador."
    ),
    CsrfRejected => (
        "Pedido recusado: o formulário expirou ou não veio deste console. Recarregue a página e tente de novo.",
        "Request refused: the form expired or did not come from this console. Reload the page and try again.",
        "Solicitud rechazada: el formulario expiró o no vino de esta consola. Recarga la página e inténtalo de nuevo."
    ),
    BadRequest => ("Pedido inválido", "Bad request", "Solicitud inválida"),
    DatabaseError => ("Erro do banco de dados", "Database error", "Error de la base de datos"),
    Pixel => ("Pixel", "Pixel", "Píxel"),
    Active => ("ativo", "active", "activo"),
    Inactive => ("inativo", "inactive", "inactivo"),
    Default => ("padrão", "default", "predeterminado"),
    Token => ("Token", "Token", "Token"),
    TokenSealed => ("criptografado com a chave", "sealed with key", "cifrado con la clave"),
    TokenPlaintext => (
        "em texto puro, aguardando criptografia por um worker",
        "plaintext, waiting for a worker to seal it",
        "en texto plano, esperando que un worker lo cifre"
    ),
    TokenMissing => ("ausente: os eventos falham com token_missing", "missing: events fail with token_missing", "ausente: los eventos fallan con token_missing"),
    TokenNeverShown => (
        "O token nunca é mostrado nem lido por este console; `stagecast doctor` verifica-o na Graph API.",
        "The token is never shown nor read by this console; `stagecast doctor` checks it against the Graph API.",
        "El token nunca se muestra ni lo lee esta consola; `stagecast doctor` lo verifica en la Graph API."
    ),
    ActionSource => ("Origem da ação", "Action source", "Origen de la acción"),
    WorkerDefault => ("padrão do worker", "the worker's default", "predeterminado del worker"),
    Waba => ("Conta do WhatsApp Business", "WhatsApp Business account", "Cuenta de WhatsApp Business"),
    TestEvents => ("Eventos de teste", "Test events", "Eventos de prueba"),
    On => ("sim", "on", "sí"),
    Off => ("não", "off", "no"),
    Activity => ("Atividade", "Activity", "Actividad"),
    LastDelivered => ("última entrega", "last delivered", "última entrega"),
    Findings => ("Diagnóstico (stagecast doctor)", "Findings (stagecast doctor)", "Diagnóstico (stagecast doctor)"),
    NoFindings => ("Nada a apontar.", "Nothing to report.", "Nada que señalar."),
    Fix => ("Correção", "Fix", "Corrección"),
    NoPixels => ("Nenhum pixel configurado.", "No pixel configured.", "Ningún píxel configurado."),
    AllPixels => ("Todos os pixels", "All pixels", "Todos los píxeles"),
    Stage => ("Etapa", "Stage", "Etapa"),
    Events => ("Eventos", "Events", "Eventos"),
    NoEvents => ("nenhum evento", "no event", "ningún evento"),
    Disabled => ("desativado", "disabled", "desactivado"),
    Edit => ("Editar", "Edit", "Editar"),
    View => ("Ver", "View", "Ver"),
    NoStages => ("Nenhuma etapa.", "No stage.", "Ninguna etapa."),
    Platform => ("Plataforma", "Platform", "Plataforma"),
    Event => ("Evento", "Event", "Evento"),
    CustomName => ("Nome personalizado", "Custom name", "Nombre personalizado"),
    UseSalePrice => ("Preço de venda", "Sale price", "Precio de venta"),
    Value => ("Valor", "Value", "Valor"),
    Currency => ("Moeda", "Currency", "Moneda"),
    FormHelp => (
        "Preço de venda: usa o preço de venda do cliente quando houver. Valor: valor fixo, ou o valor quando não houver preço de venda. Moeda: código de 3 letras (BRL, USD); vazio usa a do cliente, da campanha ou a padrão. Nome personalizado: só para Outro. Para adicionar um evento, preencha a última linha.",
        "Sale price: use the customer's sale price when there is one. Value: a fixed value, or the value when there is no sale price. Currency: a 3-letter code (BRL, USD); empty uses the customer's, the campaign's or the default. Custom name: for Other only. To add an event, fill in the last row.",
        "Precio de venta: usa el precio de venta del cliente cuando lo haya. Valor: un valor fijo, o el valor cuando no hay precio de venta. Moneda: código de 3 letras (BRL, USD); vacío usa la del cliente, la campaña o la predeterminada. Nombre personalizado: solo para Otro. Para agregar un evento, completa la última fila."
    ),
    Enabled => ("Ativado", "Enabled", "Activado"),
    Remove => ("Remover", "Remove", "Quitar"),
    WhenToUse => ("Quando usar", "When to use", "Cuándo usarlo"),
    Check => ("Verificar", "Check", "Verificar"),
    Save => ("Salvar", "Save", "Guardar"),
    Saved => ("Salvo.", "Saved.", "Guardado."),
    Unchanged => ("Nada mudou: a etapa já tinha esta configuração.", "Nothing changed: the stage already had this configuration.", "Nada cambió: la etapa ya tenía esta configuración."),
    CheckOk => (
        "Válido: o worker enviaria estes eventos.",
        "Valid: the worker would send these events.",
        "Válido: el worker enviaría estos eventos."
    ),
    NotSaved => (
        "Não salvo: corrija os problemas abaixo.",
        "Not saved: correct the problems below.",
        "No guardado: corrige los problemas de abajo."
    ),
    CurrencyInvalid => (
        "a moeda deve ter 3 letras (código ISO 4217, ex. BRL)",
        "the currency must be 3 letters (an ISO 4217 code such as BRL)",
        "la moneda debe tener 3 letras (código ISO 4217, p. ej. BRL)"
    ),
    Catalog => ("Catálogo de eventos", "Event catalog", "Catálogo de eventos"),
    Name => ("Nome", "Name", "Nombre"),
    Label => ("Rótulo", "Label", "Etiqueta"),
    StagesHelp => (
        "Cada etapa envia os eventos configurados quando um cliente entra nela. O worker valida a configuração com o mesmo analisador usado aqui.",
        "Each stage sends its configured events when a customer enters it. The worker reads the configuration with the same parser used here.",
        "Cada etapa envía sus eventos configurados cuando un cliente entra en ella. El worker lee la configuración con el mismo analizador que se usa aquí."
    ),
    StandardEvents => ("Eventos padrão", "Standard events", "Eventos estándar"),
    MessagingEvents => ("Só para conversas de anúncios de mensagem", "Click-to-message conversations only", "Solo para conversaciones de anuncios de mensajes"),
}

/// The texts of one language.
#[derive(Debug, Clone, Copy)]
pub struct Tr(pub Locale);

impl Tr {
    pub fn s(self, k: K) -> &'static str {
        k.localized().get(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_exists_in_every_language() {
        for k in K::ALL {
            for l in Locale::ALL {
                let t = k.localized().get(l);
                assert!(!t.trim().is_empty(), "{k:?} {l}");
            }
        }
    }
}
