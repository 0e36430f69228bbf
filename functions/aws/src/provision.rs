//! Creates the tables and queues the adapters expect, as `template.yaml` declares them.
//! Used by the tests against moto and by anyone trying the adapters by hand.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};

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

/// An on-demand table with a string hash key and TTL on `expires_at`.
async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    key: &str,
) -> Result<(), BoxError> {
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()?,
        )
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
