//! Site domains per app (`app_domains`, migration 0011): Plausible's and
//! Umami's trackers name a site instead of sending a key, and the gateway maps
//! the domain to the one app that allows it. Domains are stored normalised
//! (`tally_schemas::ids::normalize_domain`); a domain belongs to at most one
//! app. The gateway's key snapshot carries them ([`entries`]), so a domain
//! added a moment ago works at once, as a new key does.

use crate::postgres::KeyOwner;
use tally_schemas::ids::{domain_entry, normalize_domain};
use tokio_postgres::Client;

/// Why a domain could not be added.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Not a host name.
    #[error("{0:?} is not a site domain (a host name such as shop.example)")]
    Invalid(String),
    /// The domain is another app's.
    #[error("{domain} already belongs to app {app_id}")]
    Taken {
        /// The domain.
        domain: String,
        /// Its app.
        app_id: String,
    },
    /// No such app.
    #[error("no app {0}")]
    NoApp(String),
    /// PostgreSQL failed.
    #[error("postgresql: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// Lets `app_id` receive events naming `domain`; returns the stored form.
pub async fn add(client: &Client, app_id: &str, domain: &str) -> Result<String, DomainError> {
    let domain = normalize_domain(domain).ok_or_else(|| DomainError::Invalid(domain.to_owned()))?;
    let exists = client
        .query_opt("SELECT 1 FROM apps WHERE app_id = $1", &[&app_id])
        .await?
        .is_some();
    if !exists {
        return Err(DomainError::NoApp(app_id.to_owned()));
    }
    let owner = claim(client, app_id, &domain).await?;
    if owner != app_id {
        return Err(DomainError::Taken {
            domain,
            app_id: owner,
        });
    }
    Ok(domain)
}

/// Stops `app_id` receiving events naming `domain`; whether it had it.
pub async fn remove(client: &Client, app_id: &str, domain: &str) -> Result<bool, DomainError> {
    let domain = normalize_domain(domain).ok_or_else(|| DomainError::Invalid(domain.to_owned()))?;
    Ok(release(client, app_id, &domain).await?)
}

/// Gives the normalised `domain` to `app_id` unless another app has it;
/// returns the app that has it now (`app_id`, or the other one). `app_id`
/// must exist.
pub async fn claim(
    client: &Client,
    app_id: &str,
    domain: &str,
) -> Result<String, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "INSERT INTO app_domains (domain, app_id) VALUES ($1, $2) \
             ON CONFLICT (domain) DO UPDATE SET domain = EXCLUDED.domain RETURNING app_id",
            &[&domain, &app_id],
        )
        .await?
        .get(0))
}

/// Takes the normalised `domain` from `app_id`; whether it had it.
pub async fn release(
    client: &Client,
    app_id: &str,
    domain: &str,
) -> Result<bool, tokio_postgres::Error> {
    let removed = client
        .execute(
            "DELETE FROM app_domains WHERE domain = $1 AND app_id = $2",
            &[&domain, &app_id],
        )
        .await?;
    Ok(removed == 1)
}

/// The domains of `app_id`, sorted.
pub async fn list(client: &Client, app_id: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT domain FROM app_domains WHERE app_id = $1 ORDER BY domain",
            &[&app_id],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Every domain as a key-snapshot entry (`domain_entry`) → its app.
pub async fn entries(client: &Client) -> Result<Vec<(String, KeyOwner)>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT d.domain, d.app_id, COALESCE(a.retention_days, 0) FROM app_domains d \
             JOIN apps a ON a.app_id = d.app_id",
            &[],
        )
        .await?
        .iter()
        .map(|row| {
            let domain: String = row.get(0);
            let days: i32 = row.get(2);
            let owner = KeyOwner {
                app_id: row.get(1),
                retention_days: u16::try_from(days).unwrap_or(0),
            };
            (domain_entry(&domain), owner)
        })
        .collect())
}
