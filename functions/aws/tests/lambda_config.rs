//! The Lambdas' SDK configuration, from the environment Lambda gives them, against moto
//! server. One test: it sets process-wide environment variables.

use aws_sdk_dynamodb::config::ProvideCredentials;
use revguard_aws::testing::moto_endpoint;
use revguard_aws::{lambda_sdk_config, ConfigError};

#[tokio::test]
async fn the_lambda_environment_alone_configures_the_sdk() {
    let endpoint = moto_endpoint();
    std::env::remove_var("AWS_REGION");
    std::env::remove_var("AWS_DEFAULT_REGION");
    assert_eq!(
        lambda_sdk_config().unwrap_err(),
        ConfigError::Missing("AWS_REGION")
    );

    std::env::set_var("AWS_REGION", "eu-west-1");
    std::env::set_var("AWS_ACCESS_KEY_ID", "ASIATESTKEY");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test-secret");
    std::env::set_var("AWS_SESSION_TOKEN", "the-role-session-token");
    std::env::set_var("AWS_MAX_ATTEMPTS", "5");
    let config = lambda_sdk_config().unwrap();
    assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-1"));
    assert_eq!(config.endpoint_url(), Some(endpoint.as_str()));
    assert_eq!(config.retry_config().unwrap().max_attempts(), 5);
    let credentials = config
        .credentials_provider()
        .expect("credentials from the environment")
        .provide_credentials()
        .await
        .unwrap();
    assert_eq!(credentials.access_key_id(), "ASIATESTKEY");
    assert_eq!(credentials.session_token(), Some("the-role-session-token"));

    // A real client built on it reaches moto.
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    dynamodb.list_tables().send().await.unwrap();

    std::env::set_var("AWS_MAX_ATTEMPTS", "many");
    assert!(matches!(
        lambda_sdk_config().unwrap_err(),
        ConfigError::Invalid {
            name: "AWS_MAX_ATTEMPTS",
            ..
        }
    ));
}
