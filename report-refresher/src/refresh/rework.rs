//! The steps of a run that follow changes of persons (see
//! [`crate::changed`]): finishing person deletions, and rewriting what moved
//! and deleted ids touch.

use super::{Day, Laps, Refresher, DAYS_PER_STATEMENT, HOURS_PER_STATEMENT};
use crate::changed;
use crate::error::RefreshError;
use crate::state::Deletion;
use crate::statements::{self, Ends};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Member {
    distinct_id: String,
    person: String,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct IdHour {
    hour: u32,
}

impl Refresher {
    /// The hours (epoch seconds) in which the app's `ids` have derived events.
    pub(super) async fn hours_of(
        &self,
        app: &str,
        ids: &[String],
    ) -> Result<BTreeSet<u32>, RefreshError> {
        let hours = self.fetch::<IdHour>(&changed::hours(app, ids)).await?;
        Ok(hours.into_iter().map(|r| r.hour).collect())
    }

    /// Person deletions, once no mutation is running: the jobs of an app
    /// whose persons have no row left finish with this run (their rows are
    /// re-derived); a job whose rows came back after its mutations (events in
    /// flight at the deletion) gets its mutations again. Returns the jobs this
    /// run finishes.
    pub(super) async fn deletions(&self) -> Result<Vec<Deletion>, RefreshError> {
        let mut by_app: BTreeMap<String, Vec<Deletion>> = BTreeMap::new();
        for job in self.state.open_deletions().await? {
            by_app.entry(job.app_id.clone()).or_default().push(job);
        }
        if by_app.is_empty() {
            return Ok(Vec::new());
        }
        let running: u64 = self
            .clickhouse
            .query(&self.cluster_form(statements::PENDING_MUTATIONS_SQL))
            .fetch_one()
            .await?;
        if running > 0 {
            return Ok(Vec::new());
        }
        let mut finished = Vec::new();
        for (app, jobs) in by_app {
            // One look for all of the app's jobs (the usual case: none left).
            let ids: Vec<String> = jobs.iter().flat_map(|j| j.distinct_ids.clone()).collect();
            let persons: Vec<String> = jobs.iter().map(|j| j.person_id.clone()).collect();
            let left: u64 = statements::remaining(&app, &persons, &ids)
                .query(&self.clickhouse)
                .fetch_one()
                .await?;
            if left == 0 {
                finished.extend(jobs);
                continue;
            }
            for job in jobs {
                let person = std::slice::from_ref(&job.person_id);
                let left: u64 = statements::remaining(&app, person, &job.distinct_ids)
                    .query(&self.clickhouse)
                    .fetch_one()
                    .await?;
                if left == 0 {
                    finished.push(job);
                    continue;
                }
                tracing::info!(
                    job = job.id,
                    left,
                    "rows of a deleted person remain: deleting again"
                );
                // Their days join the job's (readers answer them from raw rows).
                let days = statements::person_days(&app, &job.distinct_ids);
                let days: Vec<Day> = self.fetch(&days).await?;
                self.state
                    .add_deletion_days(job.id, days.into_iter().map(|d| d.day).collect())
                    .await?;
                for stmt in statements::deletes(&app, &job.person_id, &job.distinct_ids) {
                    stmt.query(&self.clickhouse).execute().await?;
                }
            }
        }
        Ok(finished)
    }

    /// Rewrites what the app's ids in `moved` (now in another person)
    /// touch, with `version`, key by key ([`crate::changed`]). Returns the
    /// days touched, recorded as pending before any write.
    pub(super) async fn rework_moves(
        &self,
        app: &str,
        moved: &BTreeSet<String>,
        version: u64,
        laps: &mut Laps,
    ) -> Result<BTreeSet<String>, RefreshError> {
        let moved_list: Vec<String> = moved.iter().cloned().collect();
        let members: Vec<Member> = self.fetch(&changed::members(app, &moved_list)).await?;
        let now: BTreeMap<String, String> = members
            .into_iter()
            .map(|m| (m.distinct_id, m.person))
            .collect();
        let moves: Vec<(String, String)> = moved
            .iter()
            .filter_map(|id| Some((id.clone(), now.get(id)?.clone())))
            .filter(|(id, person)| id != person)
            .collect();
        let hours = self.hours_of(app, &moved_list).await?;
        let days = changed::days_of(&hours);
        laps.lap("rework_find");
        if days.is_empty() {
            return Ok(days);
        }
        let pending: Vec<(String, String)> =
            days.iter().map(|d| (app.to_owned(), d.clone())).collect();
        self.state.add_pending(&pending).await?;
        changed::pages_keys(app, &moved_list, version)
            .query(&self.clickhouse)
            .execute()
            .await?;
        laps.lap("rework_pages");
        if !moves.is_empty() {
            let day_list: Vec<String> = days.iter().cloned().collect();
            for chunk in day_list.chunks(DAYS_PER_STATEMENT) {
                let chunk: BTreeSet<String> = chunk.iter().cloned().collect();
                for stmt in changed::activity_moves(app, &chunk, &moves, version) {
                    stmt.query(&self.clickhouse).execute().await?;
                }
            }
        }
        laps.lap("rework_activity");
        Ok(days)
    }

    /// Rewrites what the app's deleted ids (and persons) in `deleted` touch,
    /// with `version`: their hours from `events` (those on days from `since`:
    /// earlier days have no raw rows left), their activity rows zeroed.
    /// Returns the days touched.
    pub(super) async fn rework_deleted(
        &self,
        app: &str,
        deleted: &BTreeSet<String>,
        (version, ends, since): (u64, &Ends, &str),
        laps: &mut Laps,
    ) -> Result<BTreeSet<String>, RefreshError> {
        let list: Vec<String> = deleted.iter().cloned().collect();
        let hours = self.hours_of(app, &list).await?;
        let hour_list: Vec<u32> = hours
            .iter()
            .copied()
            .filter(|h| changed::day(*h).as_str() >= since)
            .collect();
        for chunk in hour_list.chunks(HOURS_PER_STATEMENT) {
            let chunk: BTreeSet<u32> = chunk.iter().copied().collect();
            for stmt in changed::pages_hours(app, &chunk, version, ends) {
                stmt.query(&self.clickhouse).execute().await?;
            }
        }
        let days = changed::days_of(&hours);
        let day_list: Vec<String> = days.iter().cloned().collect();
        for chunk in day_list.chunks(DAYS_PER_STATEMENT) {
            let chunk: BTreeSet<String> = chunk.iter().cloned().collect();
            changed::activity_deleted(app, &chunk, &list, version)
                .query(&self.clickhouse)
                .execute()
                .await?;
        }
        laps.lap("rework_deleted");
        Ok(days)
    }
}
