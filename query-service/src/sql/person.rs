//! Persons in statements (issue 16): counting and grouping by person instead
//! of by distinct id, and current person traits as fields (`person.plan`).
//!
//! An events statement that needs persons joins the app's current identity
//! mapping ([`join`], the shape shared with the report refresher in
//! [`tally_schemas::person::join_sql`]); [`PERSON`] is then the person of
//! every event row, and a trait is read from the joined `pm_keys`/`pm_values`.

use super::Bind;
pub use tally_schemas::person::PERSON;

/// Prefix of a person-trait field (`person.plan`).
pub const PERSON_TRAIT: &str = "person.";
/// The value expression of a trait (one bind: its name).
pub const TRAIT_VALUE: &str = "pm_values[indexOf(pm_keys, ?)]";

/// The join of `app_id`'s current mapping (with the persons' traits when
/// `traits`) and its binds.
pub fn join(app_id: &str, traits: bool) -> (String, Vec<Bind>) {
    let (text, apps) = tally_schemas::person::join_sql(traits);
    (text, vec![Bind::Text(app_id.to_owned()); apps])
}

/// Whether statement text reads person traits (needs [`join`] with traits).
pub fn reads_traits<'a>(texts: impl IntoIterator<Item = &'a str>) -> bool {
    texts.into_iter().any(|text| text.contains("pm_values"))
}

/// The events source (`events` and its join) of a statement that counts
/// persons, reading traits when any of `texts` does.
pub fn events_source<'a>(
    app_id: &str,
    texts: impl IntoIterator<Item = &'a str>,
) -> (String, Vec<Bind>) {
    let (join, binds) = join(app_id, reads_traits(texts));
    (format!("events{join}"), binds)
}
