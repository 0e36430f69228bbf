//! Whose billing an event, a state item or an alert is: the platform's own Stripe account,
//! or one of its Connect accounts (`"account": "acct_…"` on the event). A leaf module.
//!
//! The platform's keys are the keys revguard always wrote, byte for byte; a connected
//! account's are the same keys behind `<acct>#`. So a store written before Connect is the
//! platform's as it stands, and a platform with no connected accounts writes what it did.

use serde::{Deserialize, Serialize};

/// The longest account id taken into a key. Stripe's are about 21 characters.
const MAX_ACCOUNT_ID_LEN: usize = 64;

/// One Stripe account: the platform's own (`None`), or a connected account.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Option<String>", into = "Option<String>")]
pub struct Account(Option<String>);

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a Stripe account id (acct_ followed by letters and digits)")]
pub struct AccountError(pub String);

impl Account {
    /// The platform's own account.
    pub const PLATFORM: Account = Account(None);

    /// A connected account, if `id` is a Stripe account id: `acct_` then letters and
    /// digits, at most 64 characters. Nothing else may enter a key (a `#` would let one
    /// account's keys reach another's).
    pub fn connected(id: &str) -> Result<Self, AccountError> {
        let valid = id.len() <= MAX_ACCOUNT_ID_LEN
            && id.strip_prefix("acct_").is_some_and(|rest| {
                !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric())
            });
        if valid {
            Ok(Account(Some(id.to_owned())))
        } else {
            Err(AccountError(id.chars().take(80).collect()))
        }
    }

    /// An event's `account`: absent is the platform's own.
    pub fn of_event(account: Option<&str>) -> Result<Self, AccountError> {
        account.map_or(Ok(Account::PLATFORM), Account::connected)
    }

    pub fn id(&self) -> Option<&str> {
        self.0.as_deref()
    }

    pub fn is_platform(&self) -> bool {
        self.0.is_none()
    }

    /// A store key of this account: the platform's own key as it is, a connected
    /// account's behind `<acct>#`.
    pub fn key(&self, key: &str) -> String {
        match &self.0 {
            None => key.to_owned(),
            Some(id) => format!("{id}#{key}"),
        }
    }

    /// The prefix of this account's keys (empty for the platform).
    pub fn key_prefix(&self) -> String {
        self.key("")
    }

    /// Splits a store key into its account and the platform-shaped key.
    pub fn split_key(key: &str) -> (Account, &str) {
        match key.split_once('#') {
            Some((id, rest)) if id.starts_with("acct_") => match Account::connected(id) {
                Ok(account) => (account, rest),
                Err(_) => (Account::PLATFORM, key),
            },
            _ => (Account::PLATFORM, key),
        }
    }

    /// The account as an embedded store's column holds it: `''` for the platform (a NULL
    /// would be distinct from every other NULL in a key).
    pub fn column(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }

    /// The account from its column value.
    pub fn from_column(value: &str) -> Self {
        if value.is_empty() {
            Account::PLATFORM
        } else {
            Account(Some(value.to_owned()))
        }
    }

    /// How people read it: the account id, or `platform`.
    pub fn label(&self) -> &str {
        self.0.as_deref().unwrap_or("platform")
    }
}

impl TryFrom<Option<String>> for Account {
    type Error = AccountError;
    fn try_from(value: Option<String>) -> Result<Self, Self::Error> {
        Account::of_event(value.as_deref())
    }
}

impl From<Account> for Option<String> {
    fn from(a: Account) -> Self {
        a.0
    }
}

impl std::fmt::Display for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// What an alert, a finding or an operator's question is about: one account (the
/// platform's own, or a connected one), or the platform as a whole, its accounts added up.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Option<String>", into = "Option<String>")]
pub enum Scope {
    Account(Account),
    #[default]
    Platform,
    All,
}

impl Scope {
    /// The word an operator passes (`?account=`, `--account`): absent or `platform` for
    /// the platform's own account, `all` for the whole platform, else an account id.
    pub fn parse(value: Option<&str>) -> Result<Self, AccountError> {
        match value.map(str::trim) {
            None | Some("") | Some("platform") => Ok(Scope::Platform),
            Some("all") => Ok(Scope::All),
            Some(id) => Account::connected(id).map(Scope::Account),
        }
    }

    pub fn of(account: &Account) -> Self {
        if account.is_platform() {
            Scope::Platform
        } else {
            Scope::Account(account.clone())
        }
    }

    /// The one account this scope is, if it is one (`None` for the whole platform).
    pub fn account(&self) -> Option<Account> {
        match self {
            Scope::Platform => Some(Account::PLATFORM),
            Scope::Account(a) => Some(a.clone()),
            Scope::All => None,
        }
    }

    pub fn is_platform(&self) -> bool {
        *self == Scope::Platform
    }

    /// The prefix of a finding key in this scope, so that each scope's alerts are apart:
    /// none for the platform's own account (the alert ids revguard always had),
    /// `<acct>:` for a connected account, `all:` for the whole platform.
    pub fn key_prefix(&self) -> String {
        match self {
            Scope::Platform => String::new(),
            Scope::Account(a) => format!("{}:", a.label()),
            Scope::All => "all:".to_owned(),
        }
    }

    pub fn label(&self) -> &str {
        match self {
            Scope::Platform => "platform",
            Scope::Account(a) => a.label(),
            Scope::All => "all",
        }
    }
}

impl TryFrom<Option<String>> for Scope {
    type Error = AccountError;
    fn try_from(value: Option<String>) -> Result<Self, Self::Error> {
        Scope::parse(value.as_deref())
    }
}

impl From<Scope> for Option<String> {
    fn from(s: Scope) -> Self {
        match s {
            Scope::Platform => None,
            other => Some(other.label().to_owned()),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stripe_account_ids_enter_a_key() {
        assert_eq!(
            Account::connected("acct_1Abc").unwrap().key("sub#sub_1"),
            "acct_1Abc#sub#sub_1"
        );
        assert_eq!(Account::PLATFORM.key("sub#sub_1"), "sub#sub_1");
        for bad in [
            "",
            "acct_",
            "acct_x#y",
            "cus_1",
            "acct_a b",
            &"acct_".repeat(20),
        ] {
            assert!(Account::connected(bad).is_err(), "{bad:?} refused");
        }
    }

    #[test]
    fn a_key_splits_back_into_its_account() {
        let a = Account::connected("acct_9").unwrap();
        assert_eq!(Account::split_key(&a.key("live#100")), (a, "live#100"));
        assert_eq!(
            Account::split_key("live#100"),
            (Account::PLATFORM, "live#100")
        );
    }

    #[test]
    fn scopes_read_and_write_as_operators_say_them() {
        assert_eq!(Scope::parse(None).unwrap(), Scope::Platform);
        assert_eq!(Scope::parse(Some("all")).unwrap(), Scope::All);
        let s = Scope::parse(Some("acct_7")).unwrap();
        assert_eq!(s.key_prefix(), "acct_7:");
        assert!(Scope::parse(Some("acct_7#x")).is_err());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"acct_7\"");
        assert_eq!(
            serde_json::from_str::<Scope>("null").unwrap(),
            Scope::Platform
        );
        assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), s);
    }
}
