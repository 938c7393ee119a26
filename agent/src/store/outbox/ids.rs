//! Message ids: ULIDs whose time part is the message's `created_at`, increasing within
//! a millisecond. Sorting by id is sorting by creation time, so the retention sweep
//! needs no index on `created_at`; and a batch's ids arrive at the end of the
//! messages B-tree in order, which keeps its pages full (random ids within the same
//! millisecond split pages in the middle and leave them half empty).

use std::sync::Mutex;

/// The last id given: (time in ms, random part).
static LAST: Mutex<(u64, u128)> = Mutex::new((0, 0));

/// The random part's 80 bits, with the top one clear so that increments never carry
/// into the time part.
const RANDOM_BITS: u128 = (1 << 79) - 1;

/// The next (time, random) after `last` for a message created at `at_ms`: a fresh
/// random part in a new millisecond, the last one plus one in the same millisecond.
/// A clock that went back gets a fresh random part at its own time, so an id's time
/// is always its message's `created_at`.
fn next(last: (u64, u128), at_ms: u64, fresh: u128) -> (u64, u128) {
    if at_ms == last.0 && last.1 < RANDOM_BITS {
        (at_ms, last.1 + 1)
    } else {
        (at_ms, fresh & RANDOM_BITS)
    }
}

/// A message id for a message created at `at_ms`.
pub fn message_id(at_ms: i64) -> String {
    let at_ms = at_ms.max(0) as u64;
    let (ms, random) = {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        *last = next(*last, at_ms, rand::random());
        *last
    };
    ulid::Ulid::from_parts(ms, random).to_string()
}

/// The greatest id [`message_id`] gives for a time at or before `at_ms`.
pub fn latest_id_at(at_ms: i64) -> String {
    ulid::Ulid::from_parts(at_ms.max(0) as u64, u128::MAX).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_the_same_millisecond_then_the_random_part_counts_up() {
        assert_eq!(next((5, 10), 5, 99), (5, 11));
    }

    #[test]
    fn given_a_new_millisecond_then_the_random_part_is_fresh_and_leaves_room() {
        assert_eq!(next((5, 10), 6, u128::MAX), (6, RANDOM_BITS));
    }

    #[test]
    fn given_a_clock_that_went_back_then_the_id_keeps_the_message_time() {
        assert_eq!(next((9, 10), 5, 3), (5, 3));
    }

    #[test]
    fn given_a_full_random_part_then_it_starts_over_rather_than_carry() {
        assert_eq!(next((5, RANDOM_BITS), 5, 7), (5, 7));
    }

    #[test]
    fn given_ids_taken_in_a_row_then_they_increase_and_the_cutoff_bounds_them() {
        // Chained as message_id chains them (the shared state is not used here: other
        // tests take ids at the same time).
        let mut last = (0, 0);
        let ids: Vec<String> = (0..1000)
            .map(|_| {
                last = next(last, 1_000, rand::random());
                ulid::Ulid::from_parts(last.0, last.1).to_string()
            })
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "increasing");
        assert_eq!(ids[0].len(), 26);
        assert!(ids.iter().all(|id| *id <= latest_id_at(1_000)));
        assert!(message_id(1_001) > latest_id_at(1_000));
        assert!(message_id(999) <= latest_id_at(1_000));
    }
}
