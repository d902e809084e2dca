//! Runs of keys over consecutive positions, as the backends index tags and types.

use crate::Event;

/// The runs of keys over events at consecutive positions: `(key, first, last)`, sorted by key then
/// first. Each event gives its keys in `keys_of`; consecutive events sharing a key extend one run.
///
/// The backends index tags and types by runs (`(key, first, last)`: every event from `first` to `last`
/// carries the key), so events written together that share a key take one index row.
///
/// ```
/// use tamma_events::{Event, key_runs};
///
/// let events = [Event::new("A").tag("x"), Event::new("A").tag("x").tag("y"), Event::new("B").tag("x")];
/// let tags = key_runs(events.iter().zip(10..).map(|(e, p)| (p, e)), |e| e.tags.iter());
/// assert_eq!(tags, vec![("x", 10, 12), ("y", 11, 11)]);
/// let types = key_runs(events.iter().zip(10..).map(|(e, p)| (p, e)), |e| std::iter::once(e.event_type.as_str()));
/// assert_eq!(types, vec![("A", 10, 11), ("B", 12, 12)]);
/// ```
///
/// A run can only continue from the event just before, so only that event's keys are looked up (no
/// hash map: events carry a handful of keys).
pub fn key_runs<'e, K>(
    events: impl Iterator<Item = (i64, &'e Event)>,
    keys_of: impl Fn(&'e Event) -> K,
) -> Vec<(&'e str, i64, i64)>
where
    K: Iterator<Item = &'e str>,
{
    let mut runs: Vec<(&str, i64, i64)> = Vec::new();
    // The keys of the previous event and the index in `runs` of the run each one has open.
    let mut open: Vec<(&str, usize)> = Vec::new();
    let mut next: Vec<(&str, usize)> = Vec::new();
    for (pos, event) in events {
        next.clear();
        for key in keys_of(event) {
            if next.iter().any(|&(k, _)| k == key) {
                continue; // a key given twice
            }
            let i = match open.iter().find(|&&(k, _)| k == key) {
                Some(&(_, i)) if runs[i].2 == pos - 1 => {
                    runs[i].2 = pos;
                    i
                }
                _ => {
                    runs.push((key, pos, pos));
                    runs.len() - 1
                }
            };
            next.push((key, i));
        }
        std::mem::swap(&mut open, &mut next);
    }
    // In key order, runs land next to each other in the B-tree (and each key's at its end).
    runs.sort_unstable();
    runs
}
