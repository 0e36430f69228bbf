//! `revguard dead-letters`: list, show or redrive the messages the worker could not apply.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};

use super::args::{open_existing, ApplyArgs, DbArg};

#[derive(Args)]
pub struct DeadLettersArgs {
    #[command(subcommand)]
    pub action: DeadLetterAction,
}

pub async fn run(args: DeadLettersArgs) -> anyhow::Result<ExitCode> {
    let DeadLettersArgs { action } = args;
    use revguard_core::ports::DeadLetterAdmin;
    let db = match &action {
        DeadLetterAction::List { db, .. }
        | DeadLetterAction::Show { db, .. }
        | DeadLetterAction::Redrive { db, .. } => db.clone(),
    };
    let store = open_existing(&db)?;
    match action {
        DeadLetterAction::List { limit, .. } => {
            for d in store.dead_letters(limit).await? {
                println!("{}", serde_json::to_string(&d)?);
            }
        }
        DeadLetterAction::Show { id, .. } => match store.dead_letter_by_id(&id).await? {
            Some(d) => println!("{}", serde_json::to_string_pretty(&d)?),
            None => bail!("no dead letter {id}"),
        },
        DeadLetterAction::Redrive {
            ids, all, apply, ..
        } => {
            let moved = store.redrive((!all).then_some(ids.as_slice())).await?;
            let mut line = serde_json::json!({ "redriven": moved });
            apply.apply(&store, &db, &mut line).await?;
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
pub enum DeadLetterAction {
    /// One JSON line per dead letter: id, event, error, receive count, when.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        db: DbArg,
    },
    /// One dead letter with its message body.
    Show {
        id: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// Move dead letters back to the queue (after the cause is fixed): the ids given, or
    /// --all.
    Redrive {
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[command(flatten)]
        db: DbArg,
        #[command(flatten)]
        apply: ApplyArgs,
    },
}
