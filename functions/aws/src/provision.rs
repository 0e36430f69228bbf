//! Creates the tables and queues the adapters expect, as `template.yaml` declares them.
//! Used by the tests against moto and by anyone trying the adapters by hand.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

use crate::alerts::{ACTIVE_INDEX, ATTR_ACTIVE};
use crate::dynamo::{ATTR_ID, ATTR_TTL};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The event-log table: `event_id` hash key, on-demand, TTL on `expires_at`.
pub async fn create_events_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(), BoxError> {
    create_table(client, name, ATTR_ID).await
}

/// A table keyed by `pk` alone (the worker's state and counters tables).
pub async fn create_pk_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(), BoxError> {
    create_table(client, name, "pk").await
}

/// The alerts table: keyed by `pk`, with the sparse index [`ACTIVE_INDEX`] on `active`
/// (hash) and `pk` (range) holding only what a detector run reads, and TTL on `expires_at`.
pub async fn create_alerts_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(), BoxError> {
    let index = GlobalSecondaryIndex::builder()
        .index_name(ACTIVE_INDEX)
        .key_schema(key_element(ATTR_ACTIVE, KeyType::Hash)?)
        .key_schema(key_element("pk", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()?;
    let request = client
        .create_table()
        .attribute_definitions(string_attribute(ATTR_ACTIVE)?)
        .global_secondary_indexes(index);
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
