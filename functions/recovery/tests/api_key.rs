//! The Stripe API key as the template deploys it: in a Secrets Manager secret (moto)
//! named by `STRIPE_API_KEY_SECRET_ARN`, read at cold start, used against localstripe,
//! and never shown. Its own test binary: it sets process-wide variables.

use revguard_aws::testing::{moto_config, unique_name};
use revguard_core::ports::StripeApi;

#[tokio::test]
async fn the_api_key_comes_from_secrets_manager_and_no_key_means_off() {
    let base = std::env::var("REVGUARD_LOCALSTRIPE_URL").unwrap_or_else(|_| {
        panic!("REVGUARD_LOCALSTRIPE_URL is not set: run the tests through scripts/test, which starts localstripe")
    });
    let sdk = moto_config().await;
    std::env::remove_var("STRIPE_API_KEY");
    std::env::remove_var("STRIPE_API_KEY_SECRET_ARN");
    std::env::set_var("STRIPE_API_BASE", &base);
    // No key: the recovery functions and the audit are off.
    assert!(revguard_aws::StripeEnv::from_env()
        .unwrap()
        .client(&sdk)
        .await
        .unwrap()
        .is_none());

    let arn = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(unique_name("stripe-api-key"))
        .secret_string("sk_test_from_secrets_manager")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    std::env::set_var("STRIPE_API_KEY_SECRET_ARN", &arn);
    let client = revguard_aws::StripeEnv::from_env()
        .unwrap()
        .client(&sdk)
        .await
        .unwrap()
        .expect("a client");
    assert!(!client.livemode());
    assert!(!format!("{client:?}").contains("from_secrets_manager"));
    // localstripe takes the key and answers.
    client.subscriptions().await.unwrap();

    // A secret holding something other than a key is refused, saying which variable.
    let bad = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(unique_name("stripe-api-key"))
        .secret_string("pk_test_publishable_is_not_enough")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    std::env::set_var("STRIPE_API_KEY_SECRET_ARN", &bad);
    let err = revguard_aws::StripeEnv::from_env()
        .unwrap()
        .client(&sdk)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("STRIPE_API_KEY"), "{err}");
    assert!(!err.to_string().contains("publishable_is"), "{err}");
}

/// A Stripe double that takes one key (`accepted`) and refuses every other with 401, as
/// Stripe does a revoked key; it records the key of each request.
async fn stripe_double(
    accepted: &str,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<String>>,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use axum::http::{HeaderMap, StatusCode};
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(accepted.to_owned()));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (a, s) = (accepted.clone(), seen.clone());
    let app = axum::Router::new().route(
        "/v1/subscriptions",
        axum::routing::get(move |headers: HeaderMap| {
            let (accepted, seen) = (a.clone(), s.clone());
            async move {
                let key = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .trim_start_matches("Bearer ")
                    .to_owned();
                seen.lock().unwrap().push(key.clone());
                if key == *accepted.lock().unwrap() {
                    (StatusCode::OK, r#"{"object":"list","data":[],"has_more":false}"#)
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        r#"{"error":{"type":"invalid_request_error","message":"Invalid API Key provided"}}"#,
                    )
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, accepted, seen)
}

#[tokio::test]
async fn a_key_rotated_while_warm_is_read_again_at_most_once_a_minute() {
    let sdk = moto_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let arn = secrets
        .create_secret()
        .name(unique_name("stripe-api-key"))
        .secret_string("sk_test_old_key")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let (base, accepted, seen) = stripe_double("sk_test_old_key").await;
    let client = revguard_aws::stripe_client_from_secret(secrets.clone(), &arn, &base)
        .await
        .unwrap()
        .expect("a client");
    client.subscriptions().await.unwrap();

    // Rotated as the stack's output says: the secret updated, the old key revoked.
    secrets
        .put_secret_value()
        .secret_id(&arn)
        .secret_string("sk_test_new_key")
        .send()
        .await
        .unwrap();
    *accepted.lock().unwrap() = "sk_test_new_key".into();
    client.subscriptions().await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        ["sk_test_old_key", "sk_test_old_key", "sk_test_new_key"],
        "the warm client read the new key after one refusal"
    );

    // Rotated again within the minute: not read again yet, so the call is refused.
    secrets
        .put_secret_value()
        .secret_id(&arn)
        .secret_string("sk_test_third_key")
        .send()
        .await
        .unwrap();
    *accepted.lock().unwrap() = "sk_test_third_key".into();
    let refused = client.subscriptions().await.unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    assert!(!refused.to_string().contains("new_key"), "{refused}");
    assert_eq!(
        seen.lock().unwrap().len(),
        4,
        "one request, no second re-read"
    );
}
