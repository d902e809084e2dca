//! What a writer knows of the last positions of tags and types, to pass conditions without a query.

use std::collections::HashMap;

use crate::{AppendCondition, Event, key_runs};

/// Most keys [`LastPositions`] tracks; past that it starts over from the head.
const MAX_TRACKED_KEYS: usize = 65_536;

/// An upper bound of the last position of every tag and type: the position this writer last wrote an
/// event with the key, or `base` for a key it has not written since it started tracking at `base`.
/// An append condition none of whose query items can match after its `after` by these bounds passes
/// without a query (most conditions: a writer appending to its own stream after reading it).
///
/// A bound stays a bound when events are removed (retention) or a transaction rolls back: both only
/// lower the true last position. Writes by another process sharing the store are not seen, so tracking
/// starts over whenever the head at the start of a transaction is not the one this writer committed.
///
/// ```
/// use tamma_events::{AppendCondition, Event, LastPositions, Query, QueryItem};
///
/// let mut last = LastPositions::default();
/// last.begin(10); // the head when the writer's transaction started
/// last.wrote(&[Event::new("A").tag("order:1")], 11);
/// last.committed(11);
/// let mine = AppendCondition::new(Query::item(QueryItem::tags(["order:1"]))).after(11);
/// last.begin(11); // nobody else wrote since
/// assert!(last.rules_out(&mine, 11));
/// last.committed(11);
/// last.begin(12); // another process wrote position 12: tracking starts over
/// assert!(!last.rules_out(&mine, 12));
/// ```
#[derive(Debug, Default)]
pub struct LastPositions {
    /// The head after this writer's last commit; `None` while a transaction is open or after one
    /// failed (tracking starts over at the next).
    head: Option<u64>,
    base: u64,
    tags: HashMap<String, u64>,
    types: HashMap<String, u64>,
}

impl LastPositions {
    /// At the start of a transaction that found the head at `head`: starts over unless that is the head
    /// this writer committed last.
    pub fn begin(&mut self, head: u64) {
        if self.head != Some(head) || self.tags.len() + self.types.len() > MAX_TRACKED_KEYS {
            self.base = head;
            self.tags.clear();
            self.types.clear();
        }
        self.head = None;
    }

    /// The head after this writer's last commit, when it knows it (not while a transaction is open,
    /// nor after one failed).
    #[must_use]
    pub fn committed_head(&self) -> Option<u64> {
        self.head
    }

    /// After the transaction committed with the head at `head`.
    pub fn committed(&mut self, head: u64) {
        self.head = Some(head);
    }

    /// Notes `events` written at the positions from `first`.
    pub fn wrote(&mut self, events: &[Event], first: u64) {
        let first = i64::try_from(first).unwrap_or(i64::MAX);
        let numbered = || events.iter().zip(first..).map(|(e, p)| (p, e));
        let tags = key_runs(numbered(), |e| e.tags.iter());
        let types = key_runs(numbered(), |e| std::iter::once(e.event_type.as_str()));
        self.wrote_runs(&tags, &types, 0);
    }

    /// Notes events written as these runs of tags and of types (as [`key_runs`] gives them), their
    /// positions moved by `shift` (0 when the runs have the written positions; a writer that made them
    /// numbered from 1 before the positions were known passes the first position minus one): each
    /// key's last position is the end of its last run. Cheaper than [`wrote`](Self::wrote) for a writer
    /// that has the runs already: one map update per run, not per key of every event.
    pub fn wrote_runs(
        &mut self,
        tags: &[(&str, i64, i64)],
        types: &[(&str, i64, i64)],
        shift: i64,
    ) {
        let note = |map: &mut HashMap<String, u64>, runs: &[(&str, i64, i64)]| {
            for &(key, _, last) in runs {
                // Positions are positive; anything else would bound nothing.
                let last = u64::try_from(last.saturating_add(shift)).unwrap_or(u64::MAX);
                match map.get_mut(key) {
                    Some(p) => *p = (*p).max(last),
                    None => {
                        map.insert(key.to_owned(), last);
                    }
                }
            }
        };
        note(&mut self.tags, tags);
        note(&mut self.types, types);
    }

    fn bound(&self, map: &HashMap<String, u64>, key: &str) -> u64 {
        map.get(key).copied().unwrap_or(self.base)
    }

    /// Whether no event up to `head` (the transaction's last position) can match `c`'s query after its
    /// `after`, by the bounds; `false` when they cannot tell.
    pub fn rules_out(&self, c: &AppendCondition, head: u64) -> bool {
        let after = c.after.unwrap_or(0);
        let items = &c.fail_if_events_match.items;
        if items.is_empty() {
            return head <= after;
        }
        items.iter().all(|item| {
            // An event matching the item carries every one of its tags and one of its types.
            let tags = item.tags.iter().map(|t| self.bound(&self.tags, t)).min();
            let types = item.types.iter().map(|t| self.bound(&self.types, t)).max();
            let last = match (tags, types) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => head,
            };
            last.min(head) <= after
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Query, QueryItem};

    #[test]
    fn last_positions_rule_out_only_what_cannot_match() {
        let mut last = LastPositions::default();
        last.begin(10);
        // Positions 11 (A: a, b), 12 (B: b), 13 (A: c).
        last.wrote(
            &[
                Event::new("A").tag("a").tag("b"),
                Event::new("B").tag("b"),
                Event::new("A").tag("c"),
            ],
            11,
        );
        let head = 13;
        let out = |item: QueryItem, after: u64| {
            last.rules_out(&AppendCondition::new(Query::item(item)).after(after), head)
        };
        // One tag: its last write.
        assert!(out(QueryItem::tags(["a"]), 11));
        assert!(!out(QueryItem::tags(["a"]), 10));
        // A tag not written since tracking began: nothing after the base.
        assert!(out(QueryItem::tags(["z"]), 10));
        assert!(!out(QueryItem::tags(["z"]), 9));
        // Several tags: the rarest bounds the item.
        assert!(out(QueryItem::tags(["b", "a"]), 11));
        assert!(out(QueryItem::tags(["b", "c"]), 12));
        assert!(!out(QueryItem::tags(["b", "c"]), 11));
        // Types: any of them; with tags, both must fit.
        assert!(!out(QueryItem::types(["A", "B"]), 12));
        assert!(out(QueryItem::types(["B"]), 12));
        assert!(out(QueryItem::types(["A"]).with_tag("b"), 12));
        assert!(!out(QueryItem::types(["A"]).with_tag("b"), 10));
        // Items OR'd: every one must be ruled out.
        let two = Query::from_items([QueryItem::tags(["a"]), QueryItem::tags(["c"])]);
        assert!(!last.rules_out(&AppendCondition::new(two.clone()).after(12), head));
        assert!(last.rules_out(&AppendCondition::new(two).after(13), head));
        // The whole log: the head.
        assert!(!last.rules_out(&AppendCondition::new(Query::all()).after(12), head));
        assert!(last.rules_out(&AppendCondition::new(Query::all()).after(13), head));
        // No `after`: anything written matches.
        assert!(!last.rules_out(
            &AppendCondition::new(Query::item(QueryItem::tags(["a"]))),
            head
        ));
        // Another head than the one committed: tracking starts over from it.
        last.committed(13);
        last.begin(14);
        assert!(!last.rules_out(
            &AppendCondition::new(Query::item(QueryItem::tags(["a"]))).after(13),
            14
        ));
        assert!(last.rules_out(
            &AppendCondition::new(Query::item(QueryItem::tags(["a"]))).after(14),
            14
        ));
    }
}
