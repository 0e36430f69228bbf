//! The pieces every DynamoDB adapter of this crate shares: attribute codecs, the key
//! attribute, the keys of the alerts table that the worker writes and the detector reads,
//! and batched reads by key. A leaf: it imports no other module of the crate.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodb::Client;
use revguard_core::domain::detector::Finding;
use revguard_core::ports::StoreError;

/// The key attribute of every table but the event log.
pub const PK: &str = "pk";

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// The sparse index of what a detector run reads: hash key `active`, range key `pk`.
pub const ACTIVE_INDEX: &str = "active";
/// The attribute of that index; present (as [`ACTIVE`]) only on items a run must read.
pub const ATTR_ACTIVE: &str = "active";
pub const ACTIVE: &str = "1";

pub fn pending_pk(f: &Finding) -> String {
    format!(
        "pending#{}#{}",
        if f.livemode { "live" } else { "test" },
        f.key
    )
}

/// How a read may see the table. An eventually consistent read costs half a strong one and
/// may miss a write of the last second or so: right wherever a conditional write checks
/// what was read (a stale read then costs a retry, never a wrong write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    Strong,
    Eventual,
}

/// Reads of items by `pk`, 100 keys a request (DynamoDB's limit); unprocessed keys are
/// asked again after a backoff, a bounded number of times.
pub(crate) async fn batch_get(
    client: &Client,
    table: &str,
    pks: &[String],
    read: Read,
) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
    batch_get_by(client, table, PK, pks, read).await
}

/// [`batch_get`] for a table whose key attribute is `key_attr`.
pub(crate) async fn batch_get_by(
    client: &Client,
    table: &str,
    key_attr: &str,
    pks: &[String],
    read: Read,
) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
    let mut out = Vec::new();
    let policy = revguard_core::usecases::retry::Backoff::UNPROCESSED_KEYS;
    for chunk in pks.chunks(100) {
        let mut keys: Vec<HashMap<String, AttributeValue>> = chunk
            .iter()
            .map(|pk| HashMap::from([(key_attr.to_owned(), s(pk))]))
            .collect();
        let seed = revguard_core::usecases::retry::seed_of(&chunk[0]);
        let mut attempt = 1;
        while !keys.is_empty() {
            if attempt > 1 {
                if policy.gives_up_after(attempt - 1) {
                    return Err(StoreError::unavailable(format!(
                        "{} keys of {table} still unprocessed after {} attempts",
                        keys.len(),
                        attempt - 1
                    )));
                }
                tokio::time::sleep(policy.delay(attempt - 1, seed)).await;
            }
            attempt += 1;
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(read == Read::Strong)
                .build()
                .map_err(corrupt)?;
            let response = client
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await
                .map_err(StoreError::unavailable)?;
            out.extend(
                response
                    .responses
                    .and_then(|mut r| r.remove(table))
                    .unwrap_or_default(),
            );
            keys = response
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .map(|k| k.keys)
                .unwrap_or_default();
        }
    }
    Ok(out)
}

/// The `pk`s a keys-only index holds under one hash key (`attr` = `value`), those beginning
/// with `pk_prefix` if given, page after page (eventually consistent, as index reads are).
pub(crate) async fn index_pks(
    client: &Client,
    table: &str,
    index: &str,
    (attr, value): (&str, &str),
    pk_prefix: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let mut query = client
            .query()
            .table_name(table)
            .index_name(index)
            .expression_attribute_names("#k", attr)
            .expression_attribute_values(":v", s(value));
        query = match pk_prefix {
            Some(prefix) => query
                .key_condition_expression("#k = :v AND begins_with(pk, :p)")
                .expression_attribute_values(":p", s(prefix)),
            None => query.key_condition_expression("#k = :v"),
        };
        let page = match query.set_exclusive_start_key(start.take()).send().await {
            Ok(page) => page,
            Err(e) if is_index_being_built(&e) => {
                tracing::warn!(index, "the index is still being built (a stack update added it): read as empty until it is active");
                return Ok(Vec::new());
            }
            Err(e) => return Err(StoreError::unavailable(e)),
        };
        out.extend(
            page.items()
                .iter()
                .filter_map(|i| i.get(PK)?.as_s().ok().cloned()),
        );
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return Ok(out),
        }
    }
}

/// Whether DynamoDB refused a read because the index is still being built: a stack update
/// that adds an index returns before DynamoDB has filled it ("Cannot read from backfilling
/// global secondary index").
pub(crate) fn is_index_being_built<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
    e.code() == Some("ValidationException")
        && e.message().is_some_and(|m| m.contains("backfilling"))
}
