//! Identity rules: a journey by hand, and a property against brute force
//! (connected components of the applied links) with replays, merges of two
//! histories and deletions; the emitted rows, kept by highest version as
//! ClickHouse keeps them, always equal the state.
use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

#[test]
fn an_anonymous_visitor_who_signs_up_on_two_devices_is_one_person() {
    let mut ids = Identities::new();
    // Browsed anonymously on a laptop, then signed up: the user joins the anonymous person.
    let rows = ids.link("e1", "user-1", "anon-laptop");
    assert_eq!(
        rows.iter()
            .map(|r| (r.distinct_id.as_str(), r.person_id.as_str(), r.version))
            .collect::<Vec<_>>(),
        vec![
            ("anon-laptop", "anon-laptop", 1),
            ("user-1", "anon-laptop", 2)
        ]
    );
    // Logged in on a phone that had browsed anonymously: the phone joins.
    let rows = ids.link("e2", "user-1", "anon-phone");
    assert_eq!(rows.len(), 1);
    assert_eq!(ids.person("anon-phone"), "anon-laptop");
    // A replay of the first identify changes nothing; so does a repeat link.
    assert!(ids.link("e1", "user-1", "anon-laptop").is_empty());
    assert!(ids.link("e3", "user-1", "anon-laptop").is_empty());
    // A second history (another user with their own anonymous past) is
    // aliased into this one: all three of its ids move.
    ids.link("e4", "user-2", "anon-tablet");
    let rows = ids.link("e5", "user-1", "user-2");
    let moved: BTreeSet<&str> = rows.iter().map(|r| r.distinct_id.as_str()).collect();
    assert_eq!(moved, BTreeSet::from(["anon-tablet", "user-2"]));
    assert!(rows.iter().all(|r| r.person_id == "anon-laptop"));
    // Deleted: every id is tombstoned, and a replayed link cannot revive it.
    let gone = ids.delete("user-2");
    assert_eq!(gone.len(), 5);
    assert!(ids.is_deleted("anon-phone"));
    assert!(ids.link("e6", "user-1", "anon-new").is_empty());
    assert_eq!(ids.person("never-linked"), "never-linked");
}

/// Connected components of `links` over `ids`: id → smallest id of its component.
fn components(links: &[(String, String)]) -> HashMap<String, String> {
    let mut parent: HashMap<String, String> = HashMap::new();
    fn find(parent: &mut HashMap<String, String>, x: &str) -> String {
        let p = parent.get(x).cloned().unwrap_or_else(|| x.to_owned());
        if p == x {
            return p;
        }
        let root = find(parent, &p);
        parent.insert(x.to_owned(), root.clone());
        root
    }
    for (a, b) in links {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            let (small, big) = if ra < rb { (ra, rb) } else { (rb, ra) };
            parent.insert(big, small);
        }
    }
    let keys: BTreeSet<String> = links
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    keys.into_iter()
        .map(|k| (k.clone(), find(&mut parent, &k)))
        .collect()
}

proptest! {
    #[test]
    fn persons_are_the_components_of_the_links(
        steps in proptest::collection::vec((0u8..12, 0u8..8, 0u8..8, 0u8..20), 1..60),
    ) {
        let mut ids = Identities::new();
        let mut applied_links: Vec<(String, String)> = Vec::new();
        let mut seen_events: HashSet<String> = HashSet::new();
        let mut deleted: HashSet<String> = HashSet::new();
        let mut table: HashMap<String, (String, u64)> = HashMap::new();
        let mut last_version = 0;
        for (event, u, a, action) in steps {
            let (event_id, user, other) = (format!("e{event}"), format!("id{u}"), format!("id{a}"));
            if action == 0 {
                // A deletion: brute force drops the component's links.
                let person = ids.person(&user);
                let gone = ids.delete(&user);
                let comps = components(&applied_links);
                let root = comps.get(&user).cloned().unwrap_or(user.clone());
                let want: BTreeSet<String> = comps.iter().filter(|(_, r)| **r == root).map(|(k, _)| k.clone())
                    .chain(std::iter::once(user.clone())).collect();
                prop_assert_eq!(gone.iter().cloned().collect::<BTreeSet<_>>(), want, "person {}", person);
                deleted.extend(gone);
                applied_links.retain(|(x, y)| !deleted.contains(x) && !deleted.contains(y));
                for id in &deleted { table.remove(id); }
                continue;
            }
            let (before_user, before_other) = (ids.person(&user), ids.person(&other));
            let (user_linked, other_linked) = (ids.is_linked(&user), ids.is_linked(&other));
            let replay = !seen_events.insert(event_id.clone());
            let rows = ids.link(&event_id, &user, &other);
            let skipped = replay || user == other || deleted.contains(&user) || deleted.contains(&other);
            if skipped {
                prop_assert!(rows.is_empty());
                continue;
            }
            applied_links.push((user.clone(), other.clone()));
            // Who joins whom: the user's person wins, else the other's; two new
            // ids make a person named after the other (anonymous) id.
            let want = match (user_linked, other_linked) {
                (true, _) => before_user.clone(),
                (false, true) => before_other.clone(),
                (false, false) => other.clone(),
            };
            prop_assert_eq!(ids.person(&user), want.clone());
            prop_assert_eq!(ids.person(&other), want);
            for row in rows {
                prop_assert!(row.version > last_version, "versions grow");
                last_version = row.version;
                table.insert(row.distinct_id.clone(), (row.person_id.clone(), row.version));
            }
        }
        // Every linked id: same person as its component, the person is one of
        // the component's ids, and the table (highest version) says the same.
        let comps = components(&applied_links);
        let mut person_of_root: HashMap<String, String> = HashMap::new();
        for (id, root) in &comps {
            let person = ids.person(id);
            let known = person_of_root.entry(root.clone()).or_insert(person.clone());
            prop_assert_eq!(&*known, &person, "one person per component");
            prop_assert_eq!(comps.get(&person), Some(root), "the person id is a member");
            prop_assert_eq!(table.get(id).map(|(p, _)| p.clone()), Some(person.clone()), "table row of {}", id);
        }
        prop_assert_eq!(person_of_root.len(), person_of_root.values().collect::<HashSet<_>>().len(), "components apart");
    }
}
