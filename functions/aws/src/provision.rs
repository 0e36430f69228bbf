//! Creates the tables and queues the adapters expect, as `template.yaml` declares them.
//! Used by the tests against moto and by anyone trying the adapters by hand.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

use crate::alerts::{ACTIVE_INDEX, ATTR_ACTIVE};
use crate::dynamo::{ATTR_ID, ATTR_TTL};
use crate::read_model::{CUSTOMER_INDEX, RESOLVED_INDEX, STAGE_INDEX};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The event-log table: `event_id` hash key, on-demand, TTL on `expires_at`.
/// The event log: keyed by `event_id`, with the sparse index of subscription events by
/// day ([`crate::dynamo::MRR_DAY_INDEX`], all attributes) that the digest reads.
pub async fn create_events_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(), BoxError> {
    let request = client
        .create_table()
        .attribute_definitions(string_attribute(crate::dynamo::ATTR_MRR_DAY)?)
        .global_secondary_indexes(index(
            crate::dynamo::MRR_DAY_INDEX,
            crate::dynamo::ATTR_MRR_DAY,
            ATTR_ID,
            ProjectionType::All,
        )?);
    create_table_with(client, request, name, ATTR_ID).await
}

/// A table keyed by `pk` alone (the worker's state and counters tables).
pub async fn create_pk_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(), BoxError> {
    create_table(client, name, "pk").await
}

/// The counters table: keyed by `pk`, with the keys-only sparse index
/// [`crate::billing::DAY_INDEX`] (`day`, `pk`) of connected accounts' items.
pub async fn create_counters_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(), BoxError> {
    let request = client
        .create_table()
        .attribute_definitions(string_attribute(crate::billing::ATTR_DAY)?)
        .global_secondary_indexes(index(
            crate::billing::DAY_INDEX,
            crate::billing::ATTR_DAY,
            "pk",
            ProjectionType::KeysOnly,
        )?);
    create_table_with(client, request, name, "pk").await
}

/// The worker's state table: keyed by `pk`, with the read model's keys-only sparse indexes
/// [`CUSTOMER_INDEX`] (`customer`, `pk`) and [`STAGE_INDEX`] (`stage`, `pk`).
pub async fn create_state_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(), BoxError> {
    let request = client
        .create_table()
        .attribute_definitions(string_attribute("customer")?)
        .attribute_definitions(string_attribute("stage")?)
        .global_secondary_indexes(index(
            CUSTOMER_INDEX,
            "customer",
            "pk",
            ProjectionType::KeysOnly,
        )?)
        .global_secondary_indexes(index(STAGE_INDEX, "stage", "pk", ProjectionType::KeysOnly)?);
    create_table_with(client, request, name, "pk").await
}

fn index(
    name: &str,
    hash: &str,
    range: &str,
    projection: ProjectionType,
) -> Result<GlobalSecondaryIndex, BoxError> {
    Ok(GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key_element(hash, KeyType::Hash)?)
        .key_schema(key_element(range, KeyType::Range)?)
        .projection(Projection::builder().projection_type(projection).build())
        .build()?)
}

/// The alerts table: keyed by `pk`, with the sparse index [`ACTIVE_INDEX`] on `active`
/// (hash) and `pk` (range) holding only what a detector run reads, the sparse index
/// [`RESOLVED_INDEX`] on `resolved` and `resolved_at` (the resolved alerts, for the
/// operator API), and TTL on `expires_at`.
pub async fn create_alerts_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(), BoxError> {
    let request = client
        .create_table()
        .attribute_definitions(string_attribute(ATTR_ACTIVE)?)
        .attribute_definitions(string_attribute("resolved")?)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("resolved_at")
                .attribute_type(ScalarAttributeType::N)
                .build()?,
        )
        .global_secondary_indexes(index(ACTIVE_INDEX, ATTR_ACTIVE, "pk", ProjectionType::All)?)
        .global_secondary_indexes(index(
            RESOLVED_INDEX,
            "resolved",
            "resolved_at",
            ProjectionType::All,
        )?);
    create_table_with(client, request, name, "pk").await
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, BoxError> {
    Ok(AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()?)
}

fn key_element(name: &str, key_type: KeyType) -> Result<KeySchemaElement, BoxError> {
    Ok(KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()?)
}

/// An on-demand table with a string hash key and TTL on `expires_at`.
async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    key: &str,
) -> Result<(), BoxError> {
    create_table_with(client, client.create_table(), name, key).await
}

async fn create_table_with(
    client: &aws_sdk_dynamodb::Client,
    request: aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder,
    name: &str,
    key: &str,
) -> Result<(), BoxError> {
    request
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute(key)?)
        .key_schema(key_element(key, KeyType::Hash)?)
        .send()
        .await?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(ATTR_TTL)
                .enabled(true)
                .build()?,
        )
        .send()
        .await?;
    Ok(())
}

/// A queue; returns its URL.
pub async fn create_queue(client: &aws_sdk_sqs::Client, name: &str) -> Result<String, BoxError> {
    let out = client.create_queue().queue_name(name).send().await?;
    Ok(out.queue_url.ok_or("no queue url")?)
}

/// An SNS topic; returns its ARN.
pub async fn create_topic(client: &aws_sdk_sns::Client, name: &str) -> Result<String, BoxError> {
    let out = client.create_topic().name(name).send().await?;
    Ok(out.topic_arn.ok_or("no topic arn")?)
}
