//! Email, embedded: alerts to on call, notifications to the team and the digest to
//! finance, over SMTP with TLS, so that a small install needs no chat app to be told.
//!
//! What a message says is rendered when it is owed and stored with the delivery (see
//! `crate::chat`); the server's URL, with its credentials, is only in memory.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use revguard_core::domain::billing::Notification;
use revguard_core::domain::detector::alerts::AlertMessage;
use serde::Deserialize;
use serde_json::{json, Value};

use revguard_core::ports::PostFailure;

#[derive(Debug, thiserror::Error)]
pub enum EmailConfigError {
    // The URL is not repeated: it may hold a password.
    #[error("the SMTP URL is not smtp:// or smtps:// with a host")]
    NotSmtp,
    #[error("the SMTP URL sends in clear to {0}: use smtps://, or smtp://…?tls=required for STARTTLS (plain smtp:// is for a relay on this machine only)")]
    Cleartext(String),
    #[error("the SMTP URL cannot be used: {0}")]
    Transport(String),
    #[error("{0} is not an email address: {1}")]
    Address(String, String),
    #[error("email needs a sender (--email-from) and at least one recipient")]
    Incomplete,
}

/// The SMTP server and the sender. Its `Debug` shows neither the URL nor credentials.
#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Smtp(from {}, [redacted])", self.from)
    }
}

impl Smtp {
    /// `url`: `smtps://user:pass@host[:465]`, or `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS); plain `smtp://` only to a loopback relay.
    pub fn new(url: &str, from: &str, timeout: Duration) -> Result<Self, EmailConfigError> {
        let parsed = reqwest::Url::parse(url.trim()).map_err(|_| EmailConfigError::NotSmtp)?;
        let host = parsed
            .host_str()
            .ok_or(EmailConfigError::NotSmtp)?
            .to_owned();
        // lettre reads the first `tls` parameter: so does this check.
        let tls_required = parsed
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .is_some_and(|(_, v)| v == "required");
        match parsed.scheme() {
            "smtps" => {}
            "smtp" if tls_required => {}
            "smtp" if is_loopback(&host) => {}
            "smtp" => return Err(EmailConfigError::Cleartext(host)),
            _ => return Err(EmailConfigError::NotSmtp),
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.trim())
            // lettre's errors do not repeat the URL.
            .map_err(|e| EmailConfigError::Transport(e.to_string()))?
            .timeout(Some(timeout))
            .build();
        Ok(Self {
            transport,
            from: mailbox(from)?,
        })
    }

    /// Sends a mail as stored with its delivery ([`alert_mail`], [`notification_mail`]).
    pub(crate) async fn send_stored(&self, stored: &str) -> Result<(), PostFailure> {
        let give_up = |error: String| PostFailure {
            error,
            retry: false,
            retry_after: None,
        };
        let mail: StoredMail = serde_json::from_str(stored)
            .map_err(|e| give_up(format!("a stored mail is not readable: {e}")))?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN);
        for to in &mail.to {
            builder = builder.to(mailbox(to).map_err(|e| give_up(e.to_string()))?);
        }
        let message = builder
            .body(mail.text)
            .map_err(|e| give_up(format!("the mail cannot be built: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => Err(PostFailure {
                // A permanent refusal (5xx: a bad recipient, a refused sender) will not
                // change on its own; anything else (timeouts, 4xx, connection) may.
                retry: !e.is_permanent(),
                error: format!("SMTP: {}", revguard_core::error_chain(&e)),
                retry_after: None,
            }),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn mailbox(address: &str) -> Result<Mailbox, EmailConfigError> {
    address
        .trim()
        .parse()
        .map_err(|e: lettre::address::AddressError| {
            EmailConfigError::Address(address.trim().to_owned(), e.to_string())
        })
}

/// Who is emailed what: on call the alerts, the team its notifications, finance the
/// digest. An empty list is not emailed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipients {
    pub alerts: Vec<String>,
    pub team: Vec<String>,
    pub finance: Vec<String>,
}

impl Recipients {
    /// From comma-separated lists, each address checked.
    pub fn parse(alerts: &str, team: &str, finance: &str) -> Result<Self, EmailConfigError> {
        let list = |s: &str| -> Result<Vec<String>, EmailConfigError> {
            s.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| mailbox(a).map(|_| a.to_owned()))
                .collect()
        };
        Ok(Self {
            alerts: list(alerts)?,
            team: list(team)?,
            finance: list(finance)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty() && self.team.is_empty() && self.finance.is_empty()
    }
}

/// A mail as stored with its delivery.
#[derive(Debug, Deserialize)]
struct StoredMail {
    to: Vec<String>,
    subject: String,
    text: String,
}

/// An alert transition's mail: the same subject and text as the alerts topic's email.
pub fn alert_mail(to: &[String], m: &AlertMessage, link: Option<&str>) -> Value {
    let mut text = m.email.clone();
    if let Some(link) = link {
        text.push_str(&format!("\n\nDashboard: {link}\n"));
    }
    json!({ "to": to, "subject": m.subject, "text": text })
}

/// A notification's mail for the team: its subject, what it is about, and its details.
pub fn notification_mail(to: &[String], n: &Notification) -> Value {
    let mut text = format!("{}\n\n", n.subject);
    if let Some(customer) = &n.customer {
        text.push_str(&format!("Customer: {customer}\n"));
    }
    if let Some(stage) = &n.stage {
        text.push_str(&format!("Stage: {stage}\n"));
    }
    text.push_str(&format!(
        "Mode: {}\nEvent: {}\nAt: {}\n\n",
        if n.livemode { "live" } else { "test" },
        n.event_id,
        revguard_core::domain::time::datetime(n.created)
    ));
    if let Some(details) = n.details.as_object() {
        for (name, value) in details {
            let shown = match value {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            text.push_str(&format!("{name}: {shown}\n"));
        }
    }
    json!({ "to": to, "subject": n.subject, "text": text })
}

/// A digest's mail for finance.
pub fn digest_mail(to: &[String], subject: &str, text: &str) -> Value {
    json!({ "to": to, "subject": subject, "text": text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_cross_the_network_in_clear() {
        let t = Duration::from_secs(5);
        let err = Smtp::new("smtp://u:secretpw@mail.example.com:25", "a@b.c", t).unwrap_err();
        assert!(matches!(err, EmailConfigError::Cleartext(_)), "{err}");
        assert!(!err.to_string().contains("secretpw"));
        assert!(Smtp::new("smtp://u:p@mail.example.com:587?tls=required", "a@b.c", t).is_ok());
        assert!(Smtp::new(
            "smtp://u:p@mail.example.com:587?tls=opportunistic&tls=required",
            "a@b.c",
            t
        )
        .is_err());
        assert!(Smtp::new("smtps://u:p@mail.example.com", "a@b.c", t).is_ok());
        assert!(Smtp::new("smtp://127.0.0.1:2525", "a@b.c", t).is_ok());
        let debug = format!(
            "{:?}",
            Smtp::new("smtps://u:secretpw@h", "a@b.c", t).unwrap()
        );
        assert!(!debug.contains("secretpw"), "{debug}");
        assert!(matches!(
            Smtp::new("http://h", "a@b.c", t),
            Err(EmailConfigError::NotSmtp)
        ));
    }

    #[test]
    fn recipients_are_checked_and_split() {
        let r = Recipients::parse("oncall@x.io, ops@x.io", "", "cfo@x.io").unwrap();
        assert_eq!(r.alerts, ["oncall@x.io", "ops@x.io"]);
        assert!(r.team.is_empty());
        assert!(Recipients::parse("not an address", "", "").is_err());
    }
}
