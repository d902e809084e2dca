//! The conformance suite of the Tamma event store: every backend runs it, one named test per behaviour.
//!
//! Each behaviour of the contract (`docs/dcb.md`) is one `pub async fn` here, taking the store under test
//! (`&dyn EventStore`, or `Arc<dyn EventStore>` when it spawns tasks) or a [`StoreFactory`] when it needs
//! test hooks (the slow-commit case). [`conformance_tests!`] stamps one `#[tokio::test]` per behaviour
//! into a module named after the backend, each on a fresh, empty store from the factory.
//!
//! A backend's integration tests use it like this (the backend crate needs `tokio` with the `macros`
//! and `rt-multi-thread` features as a dev-dependency):
//!
//! ```
//! use std::sync::Arc;
//! use tamma_events::{Limits, MemoryStore, StoreHooks};
//! use tamma_events_testkit::{Fresh, conformance_tests};
//!
//! async fn open(hooks: StoreHooks) -> Fresh {
//!     Fresh::new(Arc::new(MemoryStore::with_options(Limits::default(), hooks)))
//!     // a file backend adds `.keep(temp_dir)` so the directory outlives the store
//! }
//!
//! conformance_tests!(memory, open);
//! // expands to `mod memory { #[tokio::test] async fn empty_store() { … } … }`
//! # fn main() {}
//! ```
//!
//! Behaviours that need a database also need a fresh one per case: the factory creates it (a temp dir
//! for SQLite, a new database for PostgreSQL) and hands its guard to [`Fresh::keep`].

mod append;
mod concurrency;
mod factory;
mod import;
mod query;
mod read;
mod retention;
mod shared;
mod subscribe;
mod support;

pub use append::{
    changed_event_under_stored_id_rejected, condition_after_above_head_passes,
    condition_after_last_match, condition_on_everything,
    condition_without_after_fails_when_anything_matches, empty_append_rejected,
    idempotent_retry_returns_original_positions, invalid_events_rejected_and_store_unchanged,
    recorded_at_is_set, round_trip_preserves_content,
    sub_microsecond_timestamps_are_truncated_and_retries_match,
    tags_with_special_characters_round_trip_and_match,
};
pub use concurrency::{
    concurrent_appends_get_distinct_positions, failing_condition_does_not_fail_concurrent_appends,
    gap_free_delivery_with_slow_writer, linearizable_under_concurrency,
};
pub use factory::{Fresh, StoreFactory};
pub use import::{
    cursors_are_listed, import_keeps_positions_ids_and_recorded_at,
    import_refuses_what_does_not_follow_on,
};
pub use query::{
    event_matching_two_items_returned_once_in_order, query_by_one_tag, query_by_several_types,
    query_by_type, query_item_or_item, query_tag_and_tag, query_type_and_tag,
    query_unknown_type_matches_nothing,
};
pub use read::{
    empty_store, get_by_id, health_reports_head, positions_start_at_one_and_are_gapless,
    queries_at_the_size_limits_run, read_all_in_order, read_backwards_with_from_and_limit,
    read_from_is_inclusive, read_from_past_head, read_with_invalid_query_is_rejected,
    read_with_limit,
};
pub use retention::retention_removes_exactly_a_prefix;
pub use shared::conditions_see_another_writer;
pub use subscribe::{
    slow_subscriber_lags_without_loss, subscription_after_the_largest_position_delivers_nothing,
    subscription_catch_up_then_live, subscription_sparse_query_and_after_head,
};

/// Stamps the whole conformance suite into `mod $backend`: one `#[tokio::test]` per behaviour, each on a
/// fresh store from `$factory` (any [`StoreFactory`], e.g. `async fn(StoreHooks) -> Fresh`; it is
/// resolved inside the generated module, which does `use super::*`).
///
/// The tests run on a multi-threaded runtime with two workers, so concurrency cases really interleave.
#[macro_export]
macro_rules! conformance_tests {
    ($backend:ident, $factory:expr) => {
        $crate::__conformance_cases! {
            $backend, $factory;
            by_ref: empty_store, positions_start_at_one_and_are_gapless, read_all_in_order,
                read_from_is_inclusive, read_with_limit, read_backwards_with_from_and_limit,
                read_from_past_head, read_with_invalid_query_is_rejected, queries_at_the_size_limits_run,
                get_by_id, health_reports_head,
                query_by_one_tag, query_tag_and_tag, query_item_or_item, query_by_type, query_by_several_types,
                query_type_and_tag, query_unknown_type_matches_nothing,
                event_matching_two_items_returned_once_in_order, empty_append_rejected,
                invalid_events_rejected_and_store_unchanged, condition_without_after_fails_when_anything_matches,
                condition_after_last_match, condition_after_above_head_passes, condition_on_everything,
                idempotent_retry_returns_original_positions, changed_event_under_stored_id_rejected,
                sub_microsecond_timestamps_are_truncated_and_retries_match,
                tags_with_special_characters_round_trip_and_match,
                round_trip_preserves_content, recorded_at_is_set, retention_removes_exactly_a_prefix,
                import_keeps_positions_ids_and_recorded_at, import_refuses_what_does_not_follow_on,
                cursors_are_listed;
            shared: subscription_catch_up_then_live, subscription_sparse_query_and_after_head,
                subscription_after_the_largest_position_delivers_nothing, slow_subscriber_lags_without_loss, linearizable_under_concurrency,
                concurrent_appends_get_distinct_positions, failing_condition_does_not_fail_concurrent_appends;
            with_factory: gap_free_delivery_with_slow_writer;
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($backend:ident, $factory:expr;
     by_ref: $($by_ref:ident),* ;
     shared: $($shared:ident),* ;
     with_factory: $($with_factory:ident),* ;) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $by_ref() {
                    let fresh = $crate::StoreFactory::open(&$factory, ::core::default::Default::default()).await;
                    $crate::$by_ref(&*fresh.store).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $shared() {
                    let fresh = $crate::StoreFactory::open(&$factory, ::core::default::Default::default()).await;
                    $crate::$shared(fresh.store.clone()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $with_factory() {
                    $crate::$with_factory(&$factory).await;
                }
            )*
        }
    };
}
