//! `tally-admin users …`: dashboard users and their memberships.
//!
//! ```text
//! tally-admin users create EMAIL [--password-stdin]   create (or reset the password of)
//!                                                      a user; without --password-stdin a
//!                                                      random password is made and printed
//! tally-admin users grant EMAIL APP_ID --role viewer|admin
//! tally-admin users revoke EMAIL APP_ID
//! tally-admin users list
//! ```
//! A password never goes on the command line (where `ps` shows it).

use tally_common::accounts::{self, Role};

fn email(args: &[String], at: usize) -> Result<String, String> {
    let raw = args.get(at).ok_or("an e-mail address is required")?;
    accounts::normalize_email(raw).map_err(|e| e.to_string())
}

/// A random password of 20 base-62 characters (the session token's alphabet).
fn generated_password() -> String {
    accounts::generate_session_token()[3..23].to_owned()
}

pub async fn run(client: &tokio_postgres::Client, args: &[String]) -> Result<(), String> {
    let pg = |e: tokio_postgres::Error| format!("postgresql: {e}");
    match args.first().map(String::as_str) {
        Some("create") => {
            let email = email(args, 1)?;
            let (password, print) = if args.iter().any(|a| a == "--password-stdin") {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|e| format!("reading the password: {e}"))?;
                (line.trim_end_matches(['\r', '\n']).to_owned(), false)
            } else {
                (generated_password(), true)
            };
            let hash = tokio::task::spawn_blocking(move || {
                accounts::hash_password(&password).map(|h| (h, password))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            let id = accounts::upsert_user(client, &email, &hash.0)
                .await
                .map_err(pg)?;
            println!("user {email} (id {id})");
            if print {
                println!("password: {}", hash.1);
            }
            Ok(())
        }
        Some("grant") => {
            let email = email(args, 1)?;
            let app = args.get(2).ok_or("an app id is required")?;
            let role = crate::flag(args, "--role")
                .pop()
                .as_deref()
                .and_then(Role::parse)
                .ok_or("--role viewer|admin is required")?;
            if !accounts::grant(client, &email, app, role)
                .await
                .map_err(pg)?
            {
                return Err(format!("no user {email} or no app {app}"));
            }
            println!("{email} is {} of {app}", role.as_str());
            Ok(())
        }
        Some("revoke") => {
            let email = email(args, 1)?;
            let app = args.get(2).ok_or("an app id is required")?;
            if !accounts::revoke(client, &email, app).await.map_err(pg)? {
                return Err(format!("{email} is not a member of {app}"));
            }
            println!("{email} is no longer a member of {app}");
            Ok(())
        }
        Some("list") => {
            for (email, apps) in accounts::list_users(client).await.map_err(pg)? {
                let apps: Vec<String> = apps.iter().map(|(a, r)| format!("{a}:{r}")).collect();
                println!("{email}\t{}", apps.join(" "));
            }
            Ok(())
        }
        _ => Err("usage: tally-admin users create|grant|revoke|list …".into()),
    }
}
