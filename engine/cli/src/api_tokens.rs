//! `wyvern api token create|list|revoke`: the operator API's tokens, made on the machine that
//! holds the store (the first admin token has to come from somewhere); with a node's config
//! on a shared store, the cluster's (one token for every node). The secret is printed
//! once; the store keeps only its SHA-256. Each change is audited as the local account.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use wyvern_core::{Clock, SystemClock};
use wyvern_store::{AuditAction, TokenRole};

use crate::inbox::{StoreArgs, open_store};

#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Bearer tokens for /api/v1: create (prints the secret once), list, revoke.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token. Roles: viewer (metadata), operator (bodies, retry, purge, replay), admin
    /// (tokens too). Prints the secret; keep it, it cannot be shown again.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// A name for the person or system holding it, e.g. alice or monitoring.
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["viewer", "operator", "admin"])]
        role: String,
    },
    /// List tokens (names and roles; secrets are not kept).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a token by name: calls with it get 401 from then on.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        name: String,
    },
}

pub async fn api(cmd: ApiCommand) -> anyhow::Result<ExitCode> {
    let ApiCommand::Token { command } = cmd;
    match command {
        TokenCommand::Create { store, name, role } => {
            if !wyvern_runtime::api::valid_token_name(&name) {
                bail!("name {name:?}: expected 1–64 letters, digits, -, _, . or @");
            }
            let role = TokenRole::parse(&role).context("role")?;
            let store = open_store(&store)?;
            crate::audit::record(
                store.audit.as_ref(),
                AuditAction::Token,
                None,
                None,
                Some(format!("create {name} ({})", role.as_str())),
            )
            .await?;
            let secret = wyvern_runtime::api::new_token_secret();
            let added = store
                .tokens
                .add(name.clone(), role, secret.clone(), SystemClock.now_millis())
                .await?;
            if !added {
                bail!("a token named {name:?} exists: revoke it first");
            }
            eprintln!(
                "token {name:?} ({}): keep it now, it is not shown again",
                role.as_str()
            );
            println!("{secret}");
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List { store } => {
            for t in open_store(&store)?.tokens.list().await? {
                println!(
                    "{:<24} {:<9} {}",
                    t.name,
                    t.role.as_str(),
                    wyvern_core::display_timestamp(t.created_ms)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { store, name } => {
            let store = open_store(&store)?;
            crate::audit::record(
                store.audit.as_ref(),
                AuditAction::Token,
                None,
                None,
                Some(format!("revoke {name}")),
            )
            .await?;
            if !store.tokens.revoke(name.clone()).await? {
                eprintln!("no token named {name:?}");
                return Ok(ExitCode::FAILURE);
            }
            eprintln!("token {name:?} revoked");
            Ok(ExitCode::SUCCESS)
        }
    }
}
