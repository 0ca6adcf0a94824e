//! Persons in statements (issue 16): counting and grouping by person instead
//! of by distinct id, and current person traits as fields (`person.plan`).
//!
//! An events statement that needs persons joins the app's current identity
//! mapping ([`join`]): `ANY LEFT JOIN (…) AS pm USING distinct_id`, which adds
//! `pm_person` (the person of a linked distinct id, `''` for an id never
//! linked, since `join_use_nulls` is off) and — when traits are asked for —
//! `pm_keys`/`pm_values`, the person's current traits. [`PERSON`] is then the
//! person of every event row: the linked person, else the distinct id itself.
//! The mapping is the highest version of each distinct id in
//! `person_distinct_ids`; traits the highest version of each person in
//! `persons`; a person never linked but with traits (an identify without an
//! anonymous id) has no mapping row and is added by a `UNION ALL`. One JOIN
//! per `SELECT` (ClickHouse 18.16 knows no other), every joined subquery
//! aliased (current ClickHouse requires it); probed on 18.16.1 and 26.9.

use super::Bind;

/// The person of an event row of a statement with [`join`].
pub const PERSON: &str = "if(pm_person = '', distinct_id, pm_person)";
/// Prefix of a person-trait field (`person.plan`).
pub const PERSON_TRAIT: &str = "person.";
/// The value expression of a trait (one bind: its name).
pub const TRAIT_VALUE: &str = "pm_values[indexOf(pm_keys, ?)]";

/// ` ANY LEFT JOIN (…) AS pm USING distinct_id` of `app_id`'s current
/// mapping (with the persons' traits when `traits`), and its binds.
pub fn join(app_id: &str, traits: bool) -> (String, Vec<Bind>) {
    let mapping = "SELECT distinct_id, argMax(person_id, version) AS pm_person \
                   FROM person_distinct_ids WHERE app_id = ? GROUP BY distinct_id";
    let app = || Bind::Text(app_id.to_owned());
    if !traits {
        return (
            format!(" ANY LEFT JOIN ({mapping}) AS pm USING distinct_id"),
            vec![app()],
        );
    }
    let text = format!(
        " ANY LEFT JOIN (SELECT distinct_id, pm_person, pm_keys, pm_values FROM ({mapping} \
         UNION ALL SELECT person_id AS distinct_id, person_id AS pm_person FROM persons \
         WHERE app_id = ? AND person_id NOT IN (SELECT distinct_id FROM person_distinct_ids \
         WHERE app_id = ?) GROUP BY person_id) AS pu ANY LEFT JOIN (SELECT person_id AS pm_person, \
         argMax(prop_keys, version) AS pm_keys, argMax(prop_values, version) AS pm_values \
         FROM persons WHERE app_id = ? GROUP BY person_id) AS pt USING pm_person) AS pm \
         USING distinct_id"
    );
    (text, vec![app(), app(), app(), app()])
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
