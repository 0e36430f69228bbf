//! `revguard chat-test`: a sample alert as each chat app gets it, or posted to them once.

use std::process::ExitCode;

use clap::Args;
use revguard_core::domain::detector::alerts::Transition;

use super::args::ChatArgs;

#[derive(Args)]
pub struct ChatTestArgs {
    #[command(flatten)]
    pub chat: ChatArgs,
    /// The transition shown: opened, escalated, reminder or resolved.
    #[arg(long, default_value = "opened", value_parser = parse_transition)]
    pub transition: Transition,
}

pub async fn run(args: ChatTestArgs) -> anyhow::Result<ExitCode> {
    let ChatTestArgs { chat, transition } = args;
    let webhooks = chat.webhooks()?;
    let sample = revguard_core::domain::chat::sample_alert(transition);
    let link = chat
        .dashboard_url
        .as_deref()
        .filter(|u| !u.trim().is_empty());
    if webhooks.is_empty() {
        for (app, body) in [
            (
                "slack",
                revguard_core::domain::chat::slack_message(&sample, link),
            ),
            (
                "teams",
                revguard_core::domain::chat::teams_message(&sample, link),
            ),
            (
                "chatbot",
                revguard_core::domain::chat::chatbot_notification(&sample, link),
            ),
        ] {
            println!("{}", serde_json::json!({ "app": app, "body": body }));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut ok = true;
    for (app, result) in revguard_local::chat::post_once(&webhooks, &sample, link).await {
        let line = match result {
            Ok(()) => serde_json::json!({ "app": app.as_str(), "posted": true }),
            Err(error) => {
                ok = false;
                serde_json::json!({ "app": app.as_str(), "posted": false, "error": error })
            }
        };
        println!("{line}");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn parse_transition(s: &str) -> Result<Transition, String> {
    serde_json::from_value::<Transition>(serde_json::Value::String(s.to_owned()))
        .ok()
        .filter(|t| t.is_published())
        .ok_or_else(|| format!("expected opened, escalated, reminder or resolved, got {s:?}"))
}
