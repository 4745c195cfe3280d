//! `cargo xtask admin` (`devstack admin`): tenants and users of a deployed stack (or of a local stack's
//! DynamoDB, with `AWS_ENDPOINT_URL_DYNAMODB`). Uses the standard AWS credentials and region of the
//! shell.

use anyhow::{bail, Context, Result};
use cellbridge::identity::admin::{add_tenant, add_user, NewUser};
use cellbridge::identity::dynamodb::{DynamoAccounts, ACCOUNTS_TABLE_ENV};
use cellbridge::identity::role::{Role, Roles};
use std::io::BufRead;

#[derive(clap::Subcommand)]
pub enum AdminCommand {
    /// Create a tenant; nothing changes if it exists.
    CreateTenant {
        /// Tenant id: 1 to 64 letters, digits, '-' or '_'. It is part of every record's key.
        tenant: String,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        table: TableArg,
    },
    /// Create a user of an existing tenant. The password is read from standard input (one line),
    /// so it stays out of shell history and process lists.
    CreateUser {
        /// Login name, e.g. an email address; compared without case.
        username: String,
        #[arg(long)]
        tenant: String,
        /// viewer (read), operator (bulk changes, commands), admin (users, policies); repeatable.
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        #[command(flatten)]
        table: TableArg,
    },
}

#[derive(clap::Args)]
pub struct TableArg {
    /// The stack's accounts table (its `AccountsTableName` output).
    #[arg(long, env = ACCOUNTS_TABLE_ENV)]
    table: String,
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text)
        .ok_or_else(|| format!("{text:?} is not a role: use viewer, operator or admin"))
}

pub async fn run(command: AdminCommand) -> Result<()> {
    let config = cellbridge::common::aws::load_config().await?;
    let store = |table: &TableArg| {
        DynamoAccounts::new(cellbridge::common::aws::dynamodb(&config), &table.table)
    };
    let now = time::OffsetDateTime::now_utc();
    match command {
        AdminCommand::CreateTenant {
            tenant,
            name,
            table,
        } => {
            if add_tenant(&store(&table), &tenant, &name, now).await? {
                println!("created tenant {tenant}");
            } else {
                println!("tenant {tenant} already exists; left unchanged");
            }
        }
        AdminCommand::CreateUser {
            username,
            tenant,
            roles,
            table,
        } => {
            let password = read_password()?;
            let roles = Roles::new(roles);
            let created = add_user(
                &store(&table),
                NewUser {
                    username: &username,
                    tenant: &tenant,
                    roles: roles.clone(),
                    password: &password,
                },
                now,
            )
            .await
            .context("the user was not created")?;
            println!(
                "created user {created} of tenant {tenant} ({})",
                roles.to_names()
            );
        }
    }
    Ok(())
}

fn read_password() -> Result<String> {
    eprintln!("password (one line on standard input):");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("no password on standard input; pipe one in, e.g. `printf '%s\\n' \"$PASSWORD\" | cargo xtask admin create-user ...`");
    }
    Ok(password)
}
