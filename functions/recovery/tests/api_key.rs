//! The Stripe API key as the template deploys it: in a Secrets Manager secret (moto)
//! named by `STRIPE_API_KEY_SECRET_ARN`, read at cold start, used against localstripe,
//! and never shown. Its own test binary: it sets process-wide variables.

use revguard_aws::testing::{moto_config, unique_name};
use revguard_core::recovery::StripeApi;

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
    assert!(revguard_aws::stripe_client_from_env(&sdk)
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
    let client = revguard_aws::stripe_client_from_env(&sdk)
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
    let err = revguard_aws::stripe_client_from_env(&sdk)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("STRIPE_API_KEY"), "{err}");
    assert!(!err.to_string().contains("publishable_is"), "{err}");
}
