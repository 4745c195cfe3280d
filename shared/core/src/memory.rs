//! Pieces the in-memory adapters share: a poison-tolerant lock and paging over a sorted map.

use crate::store::*;
use std::sync::Mutex;

pub fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking test thread must not hide the state from the assertions that follow.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One page of `items` (already filtered and in order): the first `limit`, and a cursor after
/// the last of them when more follow.
pub fn page_of<T>(mut items: Vec<T>, limit: u32, cursor_after: impl Fn(&T) -> String) -> Page<T> {
    let limit = limit as usize;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor_after)
    } else {
        None
    };
    Page { items, next_cursor }
}
