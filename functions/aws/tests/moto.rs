//! The AWS adapters against moto server, with the real SDK clients: the same port
//! contracts the SQLite store keeps, plus what only AWS has (attributes, TTL).

use aws_sdk_dynamodb::types::AttributeValue;
use revguard_aws::provision::{
    create_alerts_table, create_counters_table, create_events_table, create_pk_table, create_queue,
    create_state_table,
};
use revguard_aws::testing::{moto_config, table_keys, unique_name, unreachable_config};
use revguard_aws::{DynamoAlerts, DynamoBilling, DynamoEventLog, SqsQueue};
use revguard_core::ports::{EventLog, Queue, QueueError, StoreError};
use revguard_core::QueueMessage;
use revguard_testkit::contract;

async fn event_log() -> (DynamoEventLog, aws_sdk_dynamodb::Client, String) {
    let sdk = moto_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique_name("events");
    create_events_table(&client, &table)
        .await
        .expect("create table in moto");
    (DynamoEventLog::new(client.clone(), &table), client, table)
}

#[tokio::test]
async fn dynamodb_event_log_keeps_the_contract() {
    let (log, _, _) = event_log().await;
    contract::event_log_contract(&log, "dynamo").await;
    contract::event_log_race_contract(&log, "dynamo").await;
}

#[tokio::test]
async fn dynamodb_billing_counters_and_alerts_keep_the_contracts() {
    let client = aws_sdk_dynamodb::Client::new(&moto_config().await);
    let (state, counters, alerts) = (
        unique_name("state"),
        unique_name("counters"),
        unique_name("alerts"),
    );
    create_state_table(&client, &state)
        .await
        .expect("create the state table in moto");
    create_counters_table(&client, &counters)
        .await
        .expect("create table in moto");
    create_alerts_table(&client, &alerts)
        .await
        .expect("create the alerts table in moto");
    let billing = DynamoBilling::new(client.clone(), &state, &counters).with_alerts_table(&alerts);
    contract::billing_store_contract(&billing, &billing.counters_reader(), "dynamo").await;
    contract::alert_store_contract(
        &DynamoAlerts::new(client, &alerts),
        &billing,
        || {},
        "dynamo",
    )
    .await;
}

#[tokio::test]
async fn dynamodb_keeps_connected_accounts_apart() {
    let client = aws_sdk_dynamodb::Client::new(&moto_config().await);
    let (state, counters) = (unique_name("state"), unique_name("counters"));
    create_state_table(&client, &state).await.unwrap();
    create_counters_table(&client, &counters).await.unwrap();
    let billing = DynamoBilling::new(client.clone(), &state, &counters);
    contract::accounts_contract(&billing, &billing.counters_reader(), "dynamo").await;
}

/// A stack written before Connect: its items, as they were written, read as the
/// platform's, and a connected account's items with the same ids stay beside them.
#[tokio::test]
async fn items_written_before_connect_are_the_platform_s() {
    use revguard_core::domain::metric::Metric;
    use revguard_core::ports::{Account, BillingStore, CountersReader, StateKeys};
    let client = aws_sdk_dynamodb::Client::new(&moto_config().await);
    let (state, counters) = (unique_name("state"), unique_name("counters"));
    create_state_table(&client, &state).await.unwrap();
    create_counters_table(&client, &counters).await.unwrap();
    let hour = 1_767_999_600;
    let sub = serde_json::json!({
        "id": "sub_old", "customer": "cus_old", "livemode": true, "status": "past_due", "currency": "usd", "mrr": 4900,
        "items": [], "has_metered": false, "trial_end": null, "current_period_end": null, "canceled_at": null,
        "cancel_at_period_end": false, "deleted": false,
        "version": { "created": 1_700_000_000, "event_id": "evt_v" }
    });
    let put = |table: &str, item: Vec<(&str, AttributeValue)>| {
        let mut request = client.put_item().table_name(table);
        for (k, v) in item {
            request = request.item(k, v);
        }
        request.send()
    };
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: i64| AttributeValue::N(v.to_string());
    put(
        &state,
        vec![
            ("pk", s("sub#sub_old")),
            ("state", s(&sub.to_string())),
            ("ver", n(3)),
            ("customer", s("cus_old")),
        ],
    )
    .await
    .unwrap();
    put(
        &counters,
        vec![
            ("pk", s(&format!("live#{hour}"))),
            ("refunds", n(5)),
            ("shards", AttributeValue::Ns(vec!["3".into()])),
        ],
    )
    .await
    .unwrap();
    put(
        &counters,
        vec![("pk", s(&format!("live#{hour}#3"))), ("refunds", n(2))],
    )
    .await
    .unwrap();
    let billing = DynamoBilling::new(client.clone(), &state, &counters);
    let keys = |account: Account| StateKeys {
        account,
        subscriptions: ["sub_old".to_owned()].into(),
        ..Default::default()
    };
    let platform = billing.load(&keys(Account::PLATFORM)).await.unwrap();
    assert_eq!(platform.subscriptions["sub_old"].value.status, "past_due");
    assert_eq!(platform.subscriptions["sub_old"].version, 3);
    let reader = billing.counters_reader();
    let series = reader
        .counters(true, &Account::PLATFORM, hour, hour + 3600)
        .await
        .unwrap();
    assert_eq!(
        series[&hour][&Metric::Refunds],
        7,
        "its hour item and its shard, as before"
    );
    assert!(reader
        .connected(true, hour, hour + 3600)
        .await
        .unwrap()
        .is_empty());

    let connected = Account::connected("acct_1Old").unwrap();
    assert!(
        billing
            .load(&keys(connected.clone()))
            .await
            .unwrap()
            .subscriptions
            .is_empty(),
        "a connected account does not see the platform's subscription"
    );
}

#[tokio::test]
async fn dynamodb_items_are_small_and_expire() {
    let (log, client, table) = event_log().await;
    let record = contract::sample_record("evt_item_shape", 1_700_000_000);
    log.insert_if_absent(&record).await.unwrap();
    let item = client
        .get_item()
        .table_name(&table)
        .key("event_id", AttributeValue::S("evt_item_shape".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(
        item["expires_at"],
        AttributeValue::N(record.expires_at.to_string())
    );
    assert_eq!(item["status"], AttributeValue::S("received".into()));
    assert_eq!(item["livemode"], AttributeValue::Bool(false));
    assert!(
        !item.contains_key("payload"),
        "payloads ride in the message, not the log"
    );
    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description.unwrap();
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
}

#[tokio::test]
async fn sqs_queue_delivers_body_and_attributes() {
    let sdk = moto_config().await;
    let client = aws_sdk_sqs::Client::new(&sdk);
    let url = create_queue(&client, &unique_name("queue")).await.unwrap();
    let queue = SqsQueue::new(client.clone(), &url, 250_000);
    let messages = contract::sample_messages("sqs");
    contract::queue_send_contract(&queue, &messages).await;

    let received = client
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(received.len(), messages.len());
    for m in &received {
        let decoded = QueueMessage::decode(m.body().unwrap()).unwrap();
        let sent = messages
            .iter()
            .find(|s| s.event_id == decoded.event_id)
            .unwrap();
        assert_eq!(&decoded, sent);
        let attrs = m.message_attributes().unwrap();
        assert_eq!(
            attrs["event_type"].string_value(),
            Some(sent.event_type.as_str())
        );
        assert_eq!(
            attrs["livemode"].string_value(),
            Some(if sent.livemode { "true" } else { "false" })
        );
        assert_eq!(
            attrs["event_id"].string_value(),
            Some(sent.event_id.as_str())
        );
    }
}

#[tokio::test]
async fn sqs_refuses_messages_over_its_limit_before_sending() {
    let sdk = moto_config().await;
    let client = aws_sdk_sqs::Client::new(&sdk);
    let url = create_queue(&client, &unique_name("queue")).await.unwrap();
    let queue = SqsQueue::new(client, &url, 1024);
    let mut m = contract::sample_messages("big").remove(0);
    m.payload = revguard_core::Payload::Inline(format!("\"{}\"", "x".repeat(2000)));
    assert!(matches!(queue.send(&m).await, Err(QueueError::TooLarge(_))));
}

#[tokio::test]
async fn outages_are_reported_as_unavailable() {
    let sdk = unreachable_config().await;
    let log = DynamoEventLog::new(aws_sdk_dynamodb::Client::new(&sdk), "nowhere");
    let err = log
        .insert_if_absent(&contract::sample_record("evt_x", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        "http://127.0.0.1:9/q",
        250_000,
    );
    let err = queue
        .send(&contract::sample_messages("x")[0])
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn signing_secrets_come_from_secrets_manager_at_cold_start() {
    let sdk = moto_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = unique_name("stripe-webhook-secret");
    let arn = client
        .create_secret()
        .name(&name)
        .secret_string("whsec_new_one, whsec_old_one")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let secrets = revguard_aws::read_webhook_secrets(&sdk, &arn)
        .await
        .unwrap();
    assert_eq!(secrets.iter().count(), 2);
    assert!(!format!("{secrets:?}").contains("new_one"), "never printed");
    let err = revguard_aws::read_webhook_secrets(
        &sdk,
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing",
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("STRIPE_WEBHOOK_SECRET_ARN"),
        "{err}"
    );
}

#[tokio::test]
async fn counters_added_on_different_shards_read_back_as_one_hour() {
    use revguard_core::domain::billing::CounterUpdate;
    use revguard_core::domain::metric::Metric;
    use revguard_core::ports::{AppliedEvent, BillingCommit, BillingStore, CountersReader};

    let client = aws_sdk_dynamodb::Client::new(&moto_config().await);
    let (state, counters) = (unique_name("state"), unique_name("counters"));
    create_pk_table(&client, &state)
        .await
        .expect("create table");
    create_counters_table(&client, &counters)
        .await
        .expect("create table");
    let hour = 1_768_003_200;
    let commit = |event_id: &str, failed: i64, lag: i64| BillingCommit {
        events: vec![AppliedEvent {
            event_id: event_id.into(),
            charge: None,
            received_at: hour + 60,
            counters: vec![
                CounterUpdate {
                    livemode: true,
                    hour,
                    metric: Metric::PaymentsFailed,
                    value: failed,
                },
                CounterUpdate {
                    livemode: true,
                    hour,
                    metric: Metric::LagMaxSecs,
                    value: lag,
                },
                CounterUpdate {
                    livemode: true,
                    hour: 0,
                    metric: Metric::MrrTotal("usd".into()),
                    value: failed * 100,
                },
            ],
            findings: vec![],
            notifications: vec![],
        }],
        now: hour + 60,
        ..Default::default()
    };
    // Three processes on two shards (two of them share shard 3; shard 0 is where every
    // process starts, the hour's own item).
    let writers = [0, 3, 3].map(|shard| {
        DynamoBilling::new(client.clone(), &state, &counters).with_counter_shard(shard)
    });
    for (i, (w, (failed, lag))) in writers.iter().zip([(2, 30), (3, 90), (4, 10)]).enumerate() {
        w.commit(&commit(&format!("evt_shard_{i}"), failed, lag))
            .await
            .unwrap();
    }

    let series = writers[0]
        .counters_reader()
        .counters(
            true,
            &revguard_core::ports::Account::PLATFORM,
            hour,
            hour + 3600,
        )
        .await
        .unwrap();
    assert_eq!(
        series[&hour][&Metric::PaymentsFailed],
        9,
        "sums add over shards"
    );
    assert_eq!(
        series[&hour][&Metric::LagMaxSecs],
        90,
        "maxima take the largest"
    );
    assert_eq!(
        series[&0][&Metric::MrrTotal("usd".into())],
        900,
        "the all-time gauges are sharded too"
    );

    let keys = table_keys(&client, &counters).await;
    assert_eq!(
        keys,
        [
            "live#0".to_owned(),
            "live#0#3".into(),
            format!("live#{hour}"),
            format!("live#{hour}#3"),
        ],
        "shard 0 is the hour's item (with the maxima and the shards it names)"
    );
}

/// An event about a charge keeps its marker in the charge's item with the customer: no
/// marker item and no separate link write. A marker item such an event got before markers
/// moved to charges still counts, so an upgrade applies nothing twice.
#[tokio::test]
async fn events_about_a_charge_are_marked_on_the_charge_and_old_markers_still_count() {
    use revguard_core::ports::{AppliedEvent, BillingCommit, BillingStore, CommitError, EventKey};

    let client = aws_sdk_dynamodb::Client::new(&moto_config().await);
    let (state, counters) = (unique_name("state"), unique_name("counters"));
    create_state_table(&client, &state).await.unwrap();
    create_counters_table(&client, &counters).await.unwrap();
    let billing = DynamoBilling::new(client.clone(), &state, &counters);
    let event = |id: &str| AppliedEvent {
        event_id: id.into(),
        charge: Some("ch_m".into()),
        received_at: 1_768_003_260,
        counters: vec![],
        findings: vec![],
        notifications: vec![],
    };
    let key = |id: &str| EventKey {
        account: Default::default(),
        id: id.into(),
        charge: Some("ch_m".into()),
    };
    billing
        .commit(&BillingCommit {
            events: vec![event("evt_m1"), event("evt_m2")],
            charge_links: vec![("ch_m".into(), "cus_m".into())],
            now: 1_768_003_300,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut keys = table_keys(&client, &state).await;
    keys.sort();
    assert_eq!(keys, ["charge#ch_m"], "one item: the charge's");
    let item = client
        .get_item()
        .table_name(&state)
        .key("pk", AttributeValue::S("charge#ch_m".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(item["customer"].as_s().unwrap(), "cus_m");
    let mut applied = item["applied"].as_ss().unwrap().clone();
    applied.sort();
    assert_eq!(applied, ["evt_m1", "evt_m2"]);
    assert!(matches!(
        billing
            .commit(&BillingCommit {
                events: vec![event("evt_m2")],
                now: 1_768_003_400,
                ..Default::default()
            })
            .await,
        Err(CommitError::Conflict)
    ));

    // A marker item from before the upgrade.
    client
        .put_item()
        .table_name(&state)
        .item("pk", AttributeValue::S("applied#evt_m0".into()))
        .item("applied_at", AttributeValue::N("1768000000".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        billing
            .applied(&[key("evt_m0"), key("evt_m1"), key("evt_m9")])
            .await
            .unwrap(),
        ["evt_m0".to_owned(), "evt_m1".to_owned()].into()
    );
}
