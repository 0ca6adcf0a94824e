//! Identity rules: a journey by hand, and a property against brute force
//! (connected components of the applied links, latest trait per component)
//! with replays, lost inserts replayed later, merges of two histories, trait
//! changes and deletions; the emitted rows, kept by highest version as
//! ClickHouse keeps them, always equal the state.
use super::*;
use proptest::prelude::*;

fn event(user: &str, other: Option<&str>, traits: &[(&str, &str)], ts_ms: i64) -> IdentityEvent {
    IdentityEvent {
        app_id: "app".into(),
        event_id: format!("{user}-{ts_ms}"),
        user: user.into(),
        other: other.map(str::to_owned),
        traits: traits
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ts_ms,
    }
}

fn rows(change: &Change) -> Vec<(&str, &str, u64)> {
    change
        .mappings
        .iter()
        .map(|r| (r.distinct_id.as_str(), r.person_id.as_str(), r.version))
        .collect()
}

#[test]
fn an_anonymous_visitor_who_signs_up_on_two_devices_is_one_person() {
    let mut ids = Identities::new();
    // Browsed anonymously on a laptop, then signed up: the user joins the anonymous person.
    let signup = event("user-1", Some("anon-laptop"), &[("plan", "free")], 10);
    let change = ids.apply(&signup);
    assert_eq!(
        rows(&change),
        vec![
            ("anon-laptop", "anon-laptop", 1),
            ("user-1", "anon-laptop", 2)
        ]
    );
    let person = change.person.clone().unwrap();
    assert_eq!(
        (person.person_id.as_str(), person.version),
        ("anon-laptop", 3)
    );
    assert_eq!(person.traits, vec![("plan".to_owned(), "free".to_owned())]);
    // A replay changes nothing and answers the current rows (a lost insert is redone).
    let again = ids.apply(&signup);
    assert_eq!(rows(&again), rows(&change));
    assert_eq!(ids.version(), 3);
    // Logged in on a phone that had browsed anonymously: the phone joins.
    let change = ids.apply(&event("user-1", Some("anon-phone"), &[], 20));
    assert_eq!(rows(&change), vec![("anon-phone", "anon-laptop", 4)]);
    // An older identify does not override a later trait; a newer one does.
    assert!(
        ids.apply(&event("user-1", None, &[("plan", "old")], 5))
            .person
            .unwrap()
            .version
            == 3
    );
    let upgraded = ids.apply(&event("anon-phone", None, &[("plan", "pro")], 30));
    assert_eq!(upgraded.person.unwrap().version, 5);
    // A second history (another user with their own anonymous past and
    // traits) is aliased into this one: both its ids move, its traits merge.
    ids.apply(&event(
        "user-2",
        Some("anon-tablet"),
        &[("plan", "team"), ("seats", "4")],
        25,
    ));
    let change = ids.apply(&event("user-1", Some("user-2"), &[], 40));
    let moved: BTreeSet<&str> = change
        .mappings
        .iter()
        .map(|r| r.distinct_id.as_str())
        .collect();
    assert_eq!(moved, BTreeSet::from(["anon-tablet", "user-2"]));
    assert!(change.mappings.iter().all(|r| r.person_id == "anon-laptop"));
    assert_eq!(
        ids.traits("anon-laptop"),
        vec![
            ("plan".to_owned(), "pro".to_owned()),
            ("seats".to_owned(), "4".to_owned())
        ]
    );
    // Deleted: every id is tombstoned, and a replayed link cannot revive it.
    let gone = ids.delete("user-2");
    assert_eq!(gone.len(), 5);
    assert!(ids.is_deleted("anon-phone"));
    assert_eq!(ids.apply(&signup), Change::default());
    let fresh = ids.apply(&event("user-9", Some("anon-phone"), &[], 50));
    assert!(fresh.mappings.is_empty(), "a tombstoned id is not linked");
    assert_eq!(ids.person("never-linked"), "never-linked");
}

use tally_testkit::journeys::components;

/// The "ClickHouse tables": highest version per distinct id and per person.
#[derive(Default)]
struct Tables {
    ids: HashMap<String, (String, u64)>,
    persons: HashMap<String, (Vec<(String, String)>, u64)>,
}

impl Tables {
    fn insert(&mut self, change: Change) {
        for row in change.mappings {
            let held = self
                .ids
                .entry(row.distinct_id)
                .or_insert((String::new(), 0));
            if row.version >= held.1 {
                *held = (row.person_id, row.version);
            }
        }
        if let Some(person) = change.person {
            let held = self.persons.entry(person.person_id).or_default();
            if person.version >= held.1 {
                *held = (person.traits, person.version);
            }
        }
    }
}

/// An applied event as brute force keeps it: its link (if applied) and its traits.
struct Applied {
    user: String,
    link: Option<String>,
    traits: Vec<(String, String)>,
    ts_ms: i64,
}

proptest! {
    #[test]
    fn persons_are_the_components_of_the_links_with_the_latest_traits(
        steps in proptest::collection::vec((0u8..8, 0u8..10, 0u8..4, 0u8..3, 0u8..30), 1..80),
    ) {
        let mut ids = Identities::new();
        let mut tables = Tables::default();
        let mut history: Vec<IdentityEvent> = Vec::new();
        let mut applied: Vec<Applied> = Vec::new();
        let mut deleted: HashSet<String> = HashSet::new();
        let mut lost: Vec<IdentityEvent> = Vec::new();
        for (step, (u, a, plan, seats, action)) in steps.into_iter().enumerate() {
            let user = format!("id{u}");
            match action {
                0 => {
                    let gone = ids.delete(&user);
                    prop_assert!(gone.contains(&user));
                    deleted.extend(gone);
                    continue;
                }
                // A replay of an earlier event (same content).
                1 | 2 if !history.is_empty() => {
                    let again = history[usize::from(a) * history.len() / 10].clone();
                    let before = ids.version();
                    tables.insert(ids.apply(&again));
                    prop_assert_eq!(ids.version(), before, "a replay changes nothing");
                    continue;
                }
                // A lost insert is replayed later (after other events).
                3 if !lost.is_empty() => {
                    let again = lost.remove(0);
                    tables.insert(ids.apply(&again));
                    continue;
                }
                _ => {}
            }
            let other = (a < 8).then(|| format!("id{a}")).filter(|o| *o != user);
            let mut traits = Vec::new();
            if plan > 0 { traits.push(("plan".to_owned(), format!("p{plan}"))); }
            if seats > 0 { traits.push(("seats".to_owned(), format!("{seats}"))); }
            // Event times out of order: late identifies.
            let ts_ms = i64::try_from((step * 7919) % 97).unwrap();
            let e = IdentityEvent {
                app_id: "app".into(), event_id: format!("e{step}"), user: user.clone(),
                other: other.clone(), traits: traits.clone(), ts_ms,
            };
            let change = ids.apply(&e);
            if deleted.contains(&user) {
                prop_assert_eq!(change, Change::default());
                continue;
            }
            let link = other.filter(|o| !deleted.contains(o));
            applied.push(Applied { user, link, traits, ts_ms });
            if action == 4 { lost.push(e.clone()); } else { tables.insert(change); }
            history.push(e);
        }
        for again in lost.drain(..) {
            tables.insert(ids.apply(&again));
        }
        // Brute force over what was applied and not deleted since.
        let alive = |id: &String| !deleted.contains(id);
        let links: Vec<(String, String)> = applied.iter()
            .filter_map(|a| a.link.clone().map(|l| (a.user.clone(), l)))
            .filter(|(u, l)| alive(u) && alive(l))
            .collect();
        let comps = components(&links);
        let root = |id: &String| comps.get(id).cloned().unwrap_or_else(|| id.clone());
        let mut person_of_root: HashMap<String, String> = HashMap::new();
        for (id, r) in &comps {
            let person = ids.person(id);
            let known = person_of_root.entry(r.clone()).or_insert(person.clone());
            prop_assert_eq!(&*known, &person, "one person per component");
            prop_assert_eq!(comps.get(&person), Some(r), "the person id is a member");
            prop_assert_eq!(tables.ids.get(id).map(|(p, _)| p.clone()), Some(person.clone()), "row of {}", id);
        }
        let distinct: HashSet<&String> = person_of_root.values().collect();
        prop_assert_eq!(distinct.len(), person_of_root.len(), "components apart");
        // Latest trait per component (greater (time, value) wins).
        let mut want: HashMap<String, BTreeMap<String, (i64, String)>> = HashMap::new();
        for a in applied.iter().filter(|a| alive(&a.user)) {
            let held = want.entry(root(&a.user)).or_default();
            for (k, v) in &a.traits {
                let stamped = (a.ts_ms, v.clone());
                if held.get(k).is_none_or(|c| *c < stamped) { held.insert(k.clone(), stamped); }
            }
        }
        for (r, traits) in want.into_iter().filter(|(_, t)| !t.is_empty()) {
            let person = ids.person(&r);
            let expected: Vec<(String, String)> = traits.into_iter().map(|(k, (_, v))| (k, v)).collect();
            prop_assert_eq!(ids.traits(&person), expected.clone());
            prop_assert_eq!(tables.persons.get(&person).map(|(t, _)| t.clone()), Some(expected), "traits row of {}", person);
        }
    }
}
