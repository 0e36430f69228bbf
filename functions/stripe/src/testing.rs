//! localstripe for tests (feature `test-util`): a stateful emulator of Stripe's API
//! that scripts/test starts, driven the way the recovery tests drive Stripe.

use std::collections::BTreeMap;

use serde_json::Value;

/// localstripe's address, as scripts/test exports it; a clear failure without it.
pub fn localstripe_url() -> String {
    std::env::var("REVGUARD_LOCALSTRIPE_URL").unwrap_or_else(|_| {
        panic!(
            "REVGUARD_LOCALSTRIPE_URL is not set: run the tests through scripts/test, which \
             installs localstripe (pip install localstripe==1.15.10) and starts it"
        )
    })
}

/// localstripe, driven as a test drives Stripe: form posts, and the objects a story needs.
pub struct LocalStripe {
    pub http: reqwest::Client,
    pub base: String,
    key: String,
}

impl LocalStripe {
    /// At `REVGUARD_LOCALSTRIPE_URL`, with a secret key of the test's choosing.
    pub fn new(key: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: localstripe_url(),
            key: key.to_owned(),
        }
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, form: &[(&str, &str)]) -> Value {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect();
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {value}");
        value
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        self.send(reqwest::Method::POST, path, form).await
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn flush(&self) {
        self.send(reqwest::Method::DELETE, "/_config/data", &[])
            .await;
    }

    /// Sends every event, signed with `secret`, to `url`.
    pub async fn webhook_to(&self, url: &str, secret: &str) {
        self.post(
            "/_config/webhooks/revguard",
            &[("url", url), ("secret", secret)],
        )
        .await;
    }

    pub async fn customer(&self) -> String {
        let token = self
            .post(
                "/v1/tokens",
                &[
                    ("card[number]", "4242424242424242"),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2031"),
                    ("card[cvc]", "123"),
                ],
            )
            .await;
        let customer = self
            .post(
                "/v1/customers",
                &[("source", token["id"].as_str().unwrap())],
            )
            .await;
        customer["id"].as_str().unwrap().to_owned()
    }

    pub async fn subscribe(&self, customer: &str, plan: &str) -> String {
        let sub = self
            .post(
                "/v1/subscriptions",
                &[("customer", customer), ("items[0][plan]", plan)],
            )
            .await;
        assert_eq!(sub["status"], "active", "{sub}");
        sub["id"].as_str().unwrap().to_owned()
    }

    pub async fn cancel(&self, sub: &str) {
        self.send(
            reqwest::Method::DELETE,
            &format!("/v1/subscriptions/{sub}"),
            &[],
        )
        .await;
    }

    /// Every subscription: id → (status, quantity).
    pub async fn subscriptions(&self) -> BTreeMap<String, (String, i64)> {
        let list = self.get("/v1/subscriptions?status=all&limit=100").await;
        assert_eq!(list["has_more"], false);
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap().to_owned(),
                    (
                        s["status"].as_str().unwrap().to_owned(),
                        s["quantity"].as_i64().unwrap(),
                    ),
                )
            })
            .collect()
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
