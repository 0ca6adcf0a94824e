//! The per-user part of a funnel statement, in each order. Each returns a
//! sub-select with one row per user that has a start (a step-1 event; in any
//! order, an event of any step): `b` (breakdown,
//! when asked), `level` (highest step reached, 0 when none counts), `start`
//! (the earliest step-1 time reaching that level) and `e2…en` (the time of
//! each later step for that start; meaningless above `level`).
//!
//! - Relaxed: step k+1 is the earliest step-(k+1) event strictly after step
//!   k, within the window of the start; other events may come between.
//!   Per user, the earliest [`MAX_STEP_EVENTS`] events of each step count.
//! - Strict: step k+1 must be at the user's next point in time after step k
//!   (no event of the user, of any name, strictly between the two; events in
//!   the same millisecond as a step cannot be ordered against it and do not
//!   break the chain), within the window of the start. Per user, the earliest
//!   [`MAX_STRICT_TIMES`] distinct times count.
//! - Any order: a start is any event of any step (in the range); it reaches
//!   level k when events of k distinct steps (its own among them) lie at or
//!   after it within the window, in any order. An event that meets several
//!   step conditions counts for each. `e2…en` are the times of the 2nd…nth
//!   distinct step, in time order (the earliest of each step's events in the
//!   window). Per user, the earliest [`MAX_STEP_EVENTS`] events of each step
//!   count.
//!
//! A *user* is a person (see [`crate::sql::events_source`]): the events of
//! every distinct id linked to one person form one sequence.
//!
//! All encode a start as `level * SHIFT + (SHIFT - 1 - start)` so that one
//! `max` picks the highest level and, among equals, the earliest start.
//!
//! Range: the caller puts the range's end into step 1's condition (only
//! starts in the range count) and gives as `conditions` the events to read,
//! [from, to + window): later steps, and in strict order the events that
//! break a chain, are seen up to the window's end of the latest start, past
//! the range's end.

use crate::sql::{Bind, PERSON};

/// Relaxed order: per user, only the earliest this many events of each step
/// read take part (bounds the per-user work of exclusions, which is
/// quadratic in them — the step chains are linear —, for crawlers and test
/// accounts with hundreds of thousands of events).
pub const MAX_STEP_EVENTS: usize = 1_000;
/// Strict order: per user, only the earliest this many distinct event times
/// read take part (the work is linear in them: no lambda captures an
/// array, which would copy it per element).
pub const MAX_STRICT_TIMES: usize = 100_000;
/// `2^42` > any epoch-ms time we store: level and start share one number.
const SHIFT: u64 = 1 << 42;

/// An excluded event: its condition with binds, and the 1-based steps
/// `(from, to)` it may not come between.
pub type Excluded = ((String, Vec<Bind>), (usize, usize));

/// What both orders need. `steps` are `(condition, binds)` (step 1's includes
/// the range's end); `breakdown` an expression with its binds;
/// `conditions`/`guard` the app guard and the span read, [from, to + window).
#[derive(Debug)]
pub struct Core<'a> {
    /// Step conditions with their binds (step 1's limited to the range).
    pub steps: &'a [(String, Vec<Bind>)],
    /// Breakdown expression and its binds.
    pub breakdown: Option<(String, Vec<Bind>)>,
    /// App and read-span conditions (their binds are `guard`).
    pub conditions: Vec<String>,
    /// Binds of `conditions`.
    pub guard: Vec<Bind>,
    /// Count bot events too.
    pub include_bots: bool,
    /// Conversion window, ms.
    pub window: i64,
    /// Relaxed order: events (condition, binds) that disqualify a start when
    /// they come strictly between its steps `from` and `to` (1-based; before
    /// the window's end when step `to` is not reached).
    pub exclusions: &'a [Excluded],
    /// Carry each user's `person` up to the per-user rows (user lists).
    pub with_user: bool,
    /// The events and the persons join (see [`crate::sql::events_source`]).
    pub source: String,
    /// Binds of `source`.
    pub source_binds: Vec<Bind>,
    /// The range's end: in any order, only events before it are starts (the
    /// other orders carry it in step 1's condition).
    pub starts_before: i64,
}

impl<'a> Core<'a> {
    fn where_clause(&self, extra: Option<String>) -> String {
        let mut conditions = self.conditions.clone();
        if !self.include_bots {
            conditions.push("is_bot = 0".into());
        }
        conditions.extend(extra);
        conditions.join(" AND ")
    }

    /// `argMinIf(expr, ts_ms, step 1) AS {alias}, ` and its binds, or nothing.
    fn first_breakdown(&self, alias: &str, binds: &mut Vec<Bind>) -> String {
        match &self.breakdown {
            Some((expr, b)) => {
                let (c1, b1) = &self.steps[0];
                binds.extend(b.iter().cloned());
                binds.extend(b1.iter().cloned());
                format!("argMinIf({expr}, ts_ms, {c1}) AS {alias}, ")
            }
            None => String::new(),
        }
    }

    fn u(&self) -> &'static str {
        if self.with_user {
            "person, "
        } else {
            ""
        }
    }

    /// The person column of the innermost select: `{PERSON} AS person, `.
    fn person() -> String {
        format!("{PERSON} AS person, ")
    }

    fn b(&self) -> &'static str {
        if self.breakdown.is_some() {
            "b, "
        } else {
            ""
        }
    }

    /// Per step k, the user's earliest [`MAX_STEP_EVENTS`] times of it as `s{k}`
    /// (the steps' binds go to `binds`).
    fn step_arrays(&self, binds: &mut Vec<Bind>) -> String {
        let arrays: Vec<String> = self
            .steps
            .iter()
            .enumerate()
            .map(|(k, (condition, b))| {
                binds.extend(b.iter().cloned());
                format!(
                    "arraySlice(arraySort(groupArrayIf(ts_ms, {condition})), 1, {MAX_STEP_EVENTS}) AS s{}",
                    k + 1
                )
            })
            .collect();
        arrays.join(", ")
    }

    /// The relaxed sub-select and its binds.
    pub fn relaxed(&self) -> (String, Vec<Bind>) {
        let n = self.steps.len();
        let window = self.window;
        let mut binds = Vec::new();
        let mut inner = self.first_breakdown("b", &mut binds);
        inner.push_str(&self.step_arrays(&mut binds));
        for (i, ((condition, b), _)) in self.exclusions.iter().enumerate() {
            binds.extend(b.iter().cloned());
            inner.push_str(&format!(
                ", arraySlice(arraySort(groupArrayIf(ts_ms, {condition})), 1, {MAX_STEP_EVENTS}) AS z{i}"
            ));
        }
        binds.extend(self.source_binds.iter().cloned());
        binds.extend(self.guard.iter().cloned());
        let mut any_step: Vec<&str> = self.steps.iter().map(|(c, _)| c.as_str()).collect();
        any_step.extend(self.exclusions.iter().map(|((c, _), _)| c.as_str()));
        for (_, b) in self.steps {
            binds.extend(b.iter().cloned());
        }
        for ((_, b), _) in self.exclusions {
            binds.extend(b.iter().cloned());
        }
        let filter = self.where_clause(Some(format!("({})", any_step.join(" OR "))));
        // Per start a (an element of s1), `c{k}` holds its step-k time, 0 when
        // there is none (a time found is > a >= 0, so never 0).
        let chains = relaxed_chains(n, window);
        // The step-k time of start `a` inside the key's lambda (`p{k}`).
        let at = |k: usize| {
            if k == 1 {
                "a".to_owned()
            } else {
                format!("p{k}")
            }
        };
        // A start is disqualified when an excluded event comes strictly after its
        // step `from` and before its step `to` (or the window's end); it then
        // counts for nothing (key 0), and a user without a qualified start
        // leaves the funnel.
        let excluded: Vec<String> = self
            .exclusions
            .iter()
            .enumerate()
            .map(|(i, (_, (from, to)))| {
                let (lo, hi) = (at(*from), at(*to));
                format!(
                    "arrayExists(x -> {lo} > 0 AND x > {lo} AND x < if({hi} = 0, a + {window} + 1, {hi}), z{i})"
                )
            })
            .collect();
        let qualified = if excluded.is_empty() {
            "1".to_owned()
        } else {
            format!("NOT ({})", excluded.join(" OR "))
        };
        let level: Vec<String> = (2..=n).map(|k| format!("(p{k} > 0)")).collect();
        let params: Vec<String> = (1..=n).map(at).collect();
        let arrays: Vec<String> = std::iter::once("s1".to_owned())
            .chain((2..=n).map(|k| format!("c{k}")))
            .collect();
        // ClickHouse 18.16 loses a column that a lambda inside a lambda reads
        // unless the query above also reads it: `level` reads the exclusions'
        // lengths (times 0) for the key.
        let keep: String = (0..self.exclusions.len())
            .map(|i| format!(" + 0 * length(z{i})"))
            .collect();
        let key = format!(
            "arrayReduce('max', arrayMap(({}) -> if({qualified}, (1 + {}) * {SHIFT} + ({} - a), 0), {})) AS key",
            params.join(", "),
            level.join(" + "),
            SHIFT - 1,
            arrays.join(", "),
        );
        let mut middle = vec![
            format!("intDiv(key, {SHIFT}){keep} AS level"),
            format!("{} - key % {SHIFT} AS start", SHIFT - 1),
            "indexOf(s1, start) AS idx".to_owned(),
        ];
        for k in 2..=n {
            middle.push(format!("c{k}[idx] AS e{k}"));
        }
        let mut names: Vec<String> = (1..=n).map(|k| format!("s{k}")).collect();
        names.extend((0..self.exclusions.len()).map(|i| format!("z{i}")));
        // The key's select carries s1 and the chains (for the step times) and
        // the exclusions' arrays (for `level`'s keep).
        let carried: Vec<String> = std::iter::once("s1".to_owned())
            .chain((2..=n).map(|k| format!("c{k}")))
            .chain((0..self.exclusions.len()).map(|i| format!("z{i}")))
            .collect();
        let (b, u, person, source) = (self.b(), self.u(), Self::person(), &self.source);
        let text = format!(
            "SELECT {b}{u}{} FROM (SELECT {b}{u}{key}, {} FROM (SELECT {b}{u}{}, {} \
             FROM (SELECT {person}{inner} FROM {source} WHERE {filter} GROUP BY person HAVING length(s1) > 0)))",
            middle.join(", "),
            carried.join(", "),
            names.join(", "),
            chains.join(", "),
        );
        (text, binds)
    }

    /// The any-order sub-select and its binds.
    pub fn any_order(&self) -> (String, Vec<Bind>) {
        let n = self.steps.len();
        let window = self.window;
        // In text order: the starts' end in `key`, then the inner select's.
        let mut binds = vec![Bind::Int(self.starts_before)];
        let mut inner = match &self.breakdown {
            Some((expr, b)) => {
                binds.extend(b.iter().cloned());
                binds.push(Bind::Int(self.starts_before));
                format!("argMinIf({expr}, ts_ms, ts_ms < ?) AS b, ")
            }
            None => String::new(),
        };
        inner.push_str(&self.step_arrays(&mut binds));
        binds.extend(self.source_binds.iter().cloned());
        binds.extend(self.guard.iter().cloned());
        let any_step: Vec<&str> = self.steps.iter().map(|(c, _)| c.as_str()).collect();
        for (_, b) in self.steps {
            binds.extend(b.iter().cloned());
        }
        let filter = self.where_clause(Some(format!("({})", any_step.join(" OR "))));
        binds.push(Bind::Int(self.starts_before));
        let names: Vec<String> = (1..=n).map(|k| format!("s{k}")).collect();
        // Per start a: the number of steps with an event in [a, a + window].
        let count: Vec<String> = (1..=n)
            .map(|k| format!("arrayExists(x{k} -> x{k} >= a AND x{k} <= a + {window}, s{k})"))
            .collect();
        let key = format!(
            "arrayReduce('max', arrayMap(a -> ({}) * {SHIFT} + ({} - a), \
             arrayFilter(a -> a < ?, arrayConcat({}))))",
            count.join(" + "),
            SHIFT - 1,
            names.join(", ")
        );
        // Per step, its earliest event in the best start's window (MAX if none).
        let max = u64::MAX;
        let firsts: Vec<String> = (1..=n)
            .map(|k| {
                format!(
                    "arrayReduce('min', arrayPushBack(arrayFilter(x{k} -> x{k} >= start AND x{k} <= start + {window}, s{k}), {max}))"
                )
            })
            .collect();
        let mut middle = vec![
            format!("intDiv(key, {SHIFT}) AS level"),
            format!("{} - key % {SHIFT} AS start", SHIFT - 1),
            format!(
                "arraySort(arrayFilter(f -> f < {max}, [{}])) AS firsts",
                firsts.join(", ")
            ),
        ];
        for k in 2..=n {
            middle.push(format!("firsts[{k}] AS e{k}"));
        }
        let (b, u, person, source) = (self.b(), self.u(), Self::person(), &self.source);
        let text = format!(
            "SELECT {b}{u}{} FROM (SELECT {b}{u}{key} AS key, {} FROM (SELECT {person}{inner} FROM {source} \
             WHERE {filter} GROUP BY person HAVING min(ts_ms) < ?))",
            middle.join(", "),
            names.join(", "),
        );
        (text, binds)
    }

    /// The strict sub-select and its binds. Per user and millisecond, a mask
    /// of the steps matched there (0: another event); then per user the
    /// sorted points; a start at point i reaches step k when point i+j-1 has
    /// step j's bit for every j ≤ k and point i+k-1 is within the window.
    pub fn strict(&self) -> (String, Vec<Bind>) {
        let n = self.steps.len();
        let window = self.window;
        let mut binds = Vec::new();
        let first = self.first_breakdown("b0", &mut binds);
        let mask: Vec<String> = self
            .steps
            .iter()
            .enumerate()
            .map(|(k, (condition, b))| {
                binds.extend(b.iter().cloned());
                format!("if({condition}, {}, 0)", 1u32 << k)
            })
            .collect();
        binds.extend(self.source_binds.iter().cloned());
        binds.extend(self.guard.iter().cloned());
        let filter = self.where_clause(None);
        let (person, source) = (Self::person(), &self.source);
        let per_time = format!(
            "SELECT {person}ts_ms, {first}groupBitOr({}) AS mask FROM {source} \
             WHERE {filter} GROUP BY person, ts_ms",
            mask.join(" + ")
        );
        let per_user_b = if self.breakdown.is_some() {
            "argMinIf(b0, ts_ms, bitAnd(mask, 1) = 1) AS b, "
        } else {
            ""
        };
        let u = self.u();
        let per_user = format!(
            "SELECT {u}{per_user_b}arraySlice(arraySort(groupArray(ts_ms * 256 + mask)), 1, {MAX_STRICT_TIMES}) AS tm \
             FROM ({per_time}) GROUP BY person HAVING bitAnd(groupBitOr(mask), 1) = 1"
        );
        // Per user, `tm` holds time * 256 + mask, sorted; `tm{j}` is `tm` moved
        // j places left (padded with 0, which matches no step), so one lambda
        // sees a point and its next n-1 points as arguments. (A lambda that
        // captured `tm` would copy it per element: quadratic in a user's events.)
        let shifted: Vec<String> = (1..n)
            .map(|j| {
                format!(
                    "arrayConcat(arraySlice(tm, {}), arrayMap(x -> x * 0, arraySlice(tm, 1, {j}))) AS tm{j}",
                    j + 1
                )
            })
            .collect();
        // ok_k: the point k-1 places on carries step k's bit, within the window.
        let ok = |k: usize| {
            format!(
                "bitAnd(v{}, {}) != 0 AND intDiv(v{}, 256) <= intDiv(v0, 256) + {window}",
                k - 1,
                1u32 << (k - 1),
                k - 1
            )
        };
        let reached: Vec<String> = (2..=n)
            .map(|k| {
                let all: Vec<String> = (2..=k).map(ok).collect();
                format!("({})", all.join(" AND "))
            })
            .collect();
        let params: Vec<String> = (0..n).map(|j| format!("v{j}")).collect();
        let arrays: Vec<String> = std::iter::once("tm".to_owned())
            .chain((1..n).map(|j| format!("tm{j}")))
            .collect();
        let key = format!(
            "arrayReduce('max', arrayMap(({}) -> if(bitAnd(v0, 1) = 0, 0, (1 + {}) * {SHIFT} + ({} - intDiv(v0, 256))), {}))",
            params.join(", "),
            reached.join(" + "),
            SHIFT - 1,
            arrays.join(", ")
        );
        let b = self.b();
        let times: Vec<String> = (2..=n)
            .map(|k| format!("T[idx + {}] AS e{k}", k - 1))
            .collect();
        let text = format!(
            "SELECT {b}{u}intDiv(key, {SHIFT}) AS level, {} - key % {SHIFT} AS start, indexOf(T, start) AS idx, {} \
             FROM (SELECT {b}{u}arrayMap(x -> intDiv(x, 256), tm) AS T, {}, {key} AS key FROM ({per_user}))",
            SHIFT - 1,
            times.join(", "),
            shifted.join(", "),
        );
        (text, binds)
    }
}

/// The relaxed order's per-start step times, as select items over per-user
/// sorted step arrays `s1…s{n}`: `c{k}` (k = 2…n) holds, per start of `s1`, its
/// step-k time — the earliest step-k event strictly after its step k-1 within
/// `window` ms of the start — or 0 when there is none. Linear in the user's
/// events: `n{j}_{m}` is, per event of step j, the chain's step-m time from it
/// without the window (see [`next_after`]); the window is applied per start.
pub fn relaxed_chains(n: usize, window: i64) -> Vec<String> {
    let mut chains = Vec::new();
    for j in (1..n).rev() {
        chains.extend(merge_keys(j));
        for m in j + 1..=n {
            let values = if m == j + 1 {
                format!("s{m}")
            } else {
                format!("n{}_{m}", j + 1)
            };
            chains.push(format!("{} AS n{j}_{m}", next_after(j, &values)));
        }
    }
    for k in 2..=n {
        chains.push(format!(
            "arrayMap((a, v) -> if(v > 0 AND v <= a + {window}, v, 0), s1, n1_{k}) AS c{k}"
        ));
    }
    chains
}

/// The merge of steps j and j+1 by time, descending (shared by every
/// [`next_after`] of stage j): `mk{j}` the keys (time × 2, + 1 for step j, so
/// that in the same millisecond a step-j event comes first: its next event
/// must be strictly later), `mt{j}` the sorted kinds (1: step j).
fn merge_keys(j: usize) -> [String; 2] {
    let next = j + 1;
    [
        format!("arrayConcat(arrayMap(x -> x * 2, s{next}), arrayMap(x -> x * 2 + 1, s{j})) AS mk{j}"),
        format!(
            "arrayReverseSort((t, k) -> k, arrayConcat(arrayMap(x -> x * 0, s{next}), arrayMap(x -> x * 0 + 1, s{j})), mk{j}) AS mt{j}"
        ),
    ]
}

/// Per event of step j (`s{j}`, ascending), the entry of `values` (aligned
/// with `s{j+1}`, ascending) of the earliest step-(j+1) event strictly after
/// it; 0 when there is none. Linear in the events (one sort), with no lambda
/// that captures an array: in the merge walked from the latest time back,
/// each step-(j+1) event carries the difference between its value and the
/// value of the step-(j+1) event after it, so the running sum at a step-j
/// event is the value of the earliest step-(j+1) event after it.
fn next_after(j: usize, values: &str) -> String {
    // Values, latest first, as differences from the one before in that order.
    let r = format!("arrayReverse(CAST({values} AS Array(Int64)))");
    let steps = format!("arrayMap((x, y) -> x - y, {r}, arrayPopBack(arrayPushFront({r}, 0)))");
    let carried =
        format!("arrayConcat(arrayReverse({steps}), arrayMap(x -> toInt64(x * 0), s{j}))");
    format!(
        "CAST(arrayReverse(arrayFilter((v, t) -> t = 1, arrayCumSum(arrayReverseSort((v, k) -> k, {carried}, mk{j})), mt{j})) AS Array(UInt64))"
    )
}
