//! Unit tests of the group state machine: every rule with an explicit clock.

use super::*;

const WALL: i64 = 1_000_000;

fn spec() -> GroupSpec {
    GroupSpec {
        ack_wait_ms: 1000,
        max_deliveries: 0,
        max_in_flight: 0,
        idle_ttl_ms: 0,
        backoff_ms: Vec::new(),
    }
}

fn row(spec: GroupSpec) -> GroupRow {
    GroupRow {
        channel: "c".into(),
        name: "g".into(),
        ack_floor: 0,
        acked: Vec::new(),
        spec,
        created_at: 0,
        last_active: 0,
        redriven: Vec::new(),
        deliveries: Vec::new(),
    }
}

fn entry(offset: u64) -> LogEntry {
    LogEntry {
        offset,
        id: format!("m{offset}"),
        sender: "s".into(),
        created_at: 0,
        received_at: 0,
        expires_at: i64::MAX,
        content_type: "text/plain".into(),
        headers: "[]".into(),
        payload: vec![0],
    }
}

fn entries(r: std::ops::RangeInclusive<u64>) -> Vec<LogEntry> {
    r.map(entry).collect()
}

fn offsets(l: &[Leased]) -> Vec<u64> {
    l.iter().map(|l| l.entry.offset).collect()
}

/// A pull the way the actor does it, against a log holding `log`.
fn pull(st: &mut GroupState, log: &[LogEntry], now: Instant, max: usize) -> (Vec<Leased>, Fresh) {
    let plan = st.plan_take(now, max);
    if !plan.dead.is_empty() {
        let rows = st.dead_rows(&plan.dead, WALL);
        let ranges: Vec<(u64, u64)> = plan.dead.iter().map(|&o| (o, o)).collect();
        let c = st.plan_commit(&ranges, rows, Vec::new());
        st.apply_commit(c, WALL);
    }
    let read: Vec<LogEntry> = log
        .iter()
        .filter(|e| plan.reread.contains(&e.offset))
        .cloned()
        .collect();
    let mut r = st.lease_reread(&plan.reread, read, now, WALL);
    let room = plan.room - r.leased.len();
    let fresh: Vec<LogEntry> = log
        .iter()
        .filter(|e| e.offset >= st.next())
        .cloned()
        .collect();
    let f = st.lease_fresh(fresh, room, now, WALL);
    r.leased.extend(f.leased);
    r.skipped.extend(f.skipped);
    r.dead.extend(f.dead);
    (r.leased.clone(), r)
}

fn settle(st: &mut GroupState, offs: &[u64]) -> Commit {
    let ranges: Vec<(u64, u64)> = offs.iter().map(|&o| (o, o)).collect();
    let c = st.plan_commit(&ranges, Vec::new(), Vec::new());
    st.apply_commit(c.clone(), WALL);
    c
}

#[test]
fn given_new_entries_when_pulled_then_each_is_leased_once_and_not_again_while_leased() {
    let mut st = GroupState::from_row(row(spec()));
    let log = entries(1..=5);
    let t0 = Instant::now();
    let (got, _) = pull(&mut st, &log, t0, 3);
    assert_eq!(offsets(&got), vec![1, 2, 3]);
    assert!(got
        .iter()
        .all(|l| l.deliveries == 1 && l.until == t0 + Duration::from_secs(1)));
    let (got, _) = pull(&mut st, &log, t0, 10);
    assert_eq!(offsets(&got), vec![4, 5]);
    let (got, _) = pull(&mut st, &log, t0 + Duration::from_millis(999), 10);
    assert!(got.is_empty());
    assert_eq!(st.in_flight(t0), 5);
}

#[test]
fn given_a_lease_that_runs_out_when_a_backoff_is_set_then_it_is_redelivered_after_the_backoff() {
    let mut st = GroupState::from_row(row(GroupSpec {
        backoff_ms: vec![500, 2000],
        ..spec()
    }));
    let log = entries(1..=1);
    let t0 = Instant::now();
    pull(&mut st, &log, t0, 10);
    assert_eq!(st.next_wake(), Some(t0 + Duration::from_millis(1500)));
    // The lease ran out, the backoff not yet.
    assert!(pull(&mut st, &log, t0 + Duration::from_millis(1200), 10)
        .0
        .is_empty());
    let t1 = t0 + Duration::from_millis(1500);
    let (got, _) = pull(&mut st, &log, t1, 10);
    assert_eq!(offsets(&got), vec![1]);
    assert_eq!(got[0].deliveries, 2);
    // The second backoff step applies to the second delivery, and repeats after.
    assert_eq!(st.next_wake(), Some(t1 + Duration::from_millis(3000)));
}

#[test]
fn given_a_nack_with_delay_then_the_entry_is_due_after_the_delay_and_keeps_its_error() {
    let mut st = GroupState::from_row(row(GroupSpec {
        max_deliveries: 2,
        ..spec()
    }));
    let log = entries(1..=1);
    let t0 = Instant::now();
    pull(&mut st, &log, t0, 10);
    let (leased, _) = st.lookup(&["m1".to_string()]);
    assert_eq!(leased, vec![("m1".to_string(), 1)]);
    st.nack(&[1], Duration::from_millis(300), Some("boom".into()), t0);
    assert_eq!(st.in_flight(t0), 0);
    assert!(pull(&mut st, &log, t0 + Duration::from_millis(299), 10)
        .0
        .is_empty());
    let (got, _) = pull(&mut st, &log, t0 + Duration::from_millis(300), 10);
    assert_eq!(got[0].deliveries, 2);
    // Spent: the next due time moves it to the dead-letter queue with the error.
    let t2 = t0 + Duration::from_millis(300);
    st.nack(&[1], Duration::ZERO, None, t2);
    let plan = st.plan_take(t2, 10);
    assert_eq!(plan.dead, vec![1]);
    let rows = st.dead_rows(&plan.dead, WALL);
    assert_eq!(rows[0].deliveries, 2);
    assert_eq!(rows[0].last_error.as_deref(), Some("boom"));
}

#[test]
fn given_a_huge_nack_delay_then_it_is_capped_at_max_delay() {
    let mut st = GroupState::from_row(row(spec()));
    let t0 = Instant::now();
    pull(&mut st, &entries(1..=1), t0, 10);
    st.nack(&[1], Duration::from_secs(u64::MAX / 4), None, t0);
    assert_eq!(st.next_wake(), Some(t0 + MAX_DELAY));
}

#[test]
fn given_max_deliveries_when_leases_keep_running_out_then_the_entry_goes_to_the_dlq_and_the_floor_moves(
) {
    let mut st = GroupState::from_row(row(GroupSpec {
        max_deliveries: 2,
        ..spec()
    }));
    let log = entries(1..=2);
    let t0 = Instant::now();
    pull(&mut st, &log, t0, 1);
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(pull(&mut st, &log, t1, 1).0[0].deliveries, 2);
    let t2 = t1 + Duration::from_secs(1);
    let plan = st.plan_take(t2, 10);
    assert_eq!(plan.dead, vec![1]);
    // The dead letter leaves room: the pull goes on with entry 2.
    let (got, _) = pull(&mut st, &log, t2, 10);
    assert_eq!(offsets(&got), vec![2]);
    assert_eq!(st.floor(), 1);
    assert!(st.lookup(&["m1".to_string()]).0.is_empty());
}

#[test]
fn given_delivery_counts_from_before_a_restart_then_they_continue_and_a_spent_entry_is_dead_lettered(
) {
    let mut r = row(GroupSpec {
        max_deliveries: 3,
        ..spec()
    });
    r.deliveries = vec![(1, 3), (2, 1)];
    let mut st = GroupState::from_row(r);
    let (got, fresh) = pull(&mut st, &entries(1..=3), Instant::now(), 10);
    assert_eq!(offsets(&got), vec![2, 3]);
    assert_eq!(got[0].deliveries, 2);
    assert_eq!(got[1].deliveries, 1);
    assert_eq!(fresh.dead.len(), 1);
    assert_eq!(fresh.dead[0].offset, 1);
    assert_eq!(fresh.dead[0].deliveries, 3);
    // Every count is persisted when max_deliveries applies.
    assert_eq!(st.counts_to_persist(&got), vec![(2, 2), (3, 1)]);
}

#[test]
fn given_no_max_deliveries_then_only_redeliveries_are_counted_in_the_store() {
    let mut st = GroupState::from_row(row(spec()));
    let log = entries(1..=2);
    let t0 = Instant::now();
    let (got, _) = pull(&mut st, &log, t0, 1);
    assert!(st.counts_to_persist(&got).is_empty());
    let (got, _) = pull(&mut st, &log, t0 + Duration::from_secs(1), 1);
    assert_eq!(st.counts_to_persist(&got), vec![(1, 2)]);
}

#[test]
fn given_max_in_flight_then_nothing_more_is_leased_until_something_is_settled() {
    let mut st = GroupState::from_row(row(GroupSpec {
        max_in_flight: 2,
        ..spec()
    }));
    let log = entries(1..=5);
    let t0 = Instant::now();
    assert_eq!(offsets(&pull(&mut st, &log, t0, 10).0), vec![1, 2]);
    assert!(pull(&mut st, &log, t0, 10).0.is_empty());
    // A lease that ran out still counts: nothing overtakes it, it comes back first.
    let t1 = t0 + Duration::from_secs(1);
    st.nack(&[2], Duration::from_secs(60), None, t0);
    assert_eq!(offsets(&pull(&mut st, &log, t1, 10).0), vec![1]);
    settle(&mut st, &[1]);
    assert_eq!(offsets(&pull(&mut st, &log, t1, 10).0), vec![3]);
}

#[test]
fn given_acks_out_of_order_then_the_floor_only_advances_over_acknowledged_offsets() {
    let mut st = GroupState::from_row(row(spec()));
    pull(&mut st, &entries(1..=4), Instant::now(), 10);
    let c = settle(&mut st, &[2, 4]);
    assert_eq!((c.floor, c.new_above.clone()), (0, vec![2, 4]));
    assert_eq!(st.floor(), 0);
    assert!(st.is_open(1) && !st.is_open(2) && st.is_open(3));
    let c = settle(&mut st, &[1]);
    assert_eq!(c.floor, 2);
    assert!(c.new_above.is_empty());
    assert_eq!(st.acked_above(), 1);
    settle(&mut st, &[3]);
    assert_eq!(st.floor(), 4);
    assert_eq!(st.acked_above(), 0);
    assert_eq!(st.leased(), 0);
    // Settling again changes nothing durable.
    assert!(st.plan_commit(&[(3, 3)], Vec::new(), Vec::new()).is_noop());
}

#[test]
fn given_expired_and_missing_entries_then_they_are_skipped_and_settled_never_delivered() {
    let mut st = GroupState::from_row(row(spec()));
    let mut log = vec![entry(1), entry(4)];
    log[0].expires_at = WALL;
    let (got, fresh) = pull(&mut st, &log, Instant::now(), 10);
    assert_eq!(offsets(&got), vec![4]);
    assert_eq!(fresh.skipped, vec![(1, 1), (2, 3)]);
    let c = st.plan_commit(&fresh.skipped, Vec::new(), Vec::new());
    st.apply_commit(c, WALL);
    assert_eq!(st.floor(), 3);
}

#[test]
fn given_an_extend_then_the_lease_runs_for_another_ack_wait() {
    let mut st = GroupState::from_row(row(spec()));
    let log = entries(1..=1);
    let t0 = Instant::now();
    pull(&mut st, &log, t0, 10);
    let t1 = t0 + Duration::from_millis(900);
    st.extend(&[1], t1);
    assert!(pull(&mut st, &log, t0 + Duration::from_millis(1500), 10)
        .0
        .is_empty());
    assert_eq!(st.in_flight(t0 + Duration::from_millis(1500)), 1);
    assert_eq!(st.next_wake(), Some(t1 + Duration::from_secs(1)));
}

#[test]
fn given_a_dead_letter_redriven_then_it_is_delivered_once_more_counting_from_one() {
    let mut st = GroupState::from_row(row(GroupSpec {
        max_deliveries: 1,
        ..spec()
    }));
    let log = entries(1..=1);
    let t0 = Instant::now();
    pull(&mut st, &log, t0, 10);
    let t1 = t0 + Duration::from_secs(1);
    let (got, _) = pull(&mut st, &log, t1, 10);
    assert!(got.is_empty());
    assert_eq!(st.floor(), 1);
    assert!(!st.is_open(1));
    st.on_redriven(1);
    assert!(st.is_open(1));
    let (got, _) = pull(&mut st, &log, t1, 10);
    assert_eq!(offsets(&got), vec![1]);
    assert_eq!(got[0].deliveries, 1);
    // Acked now: the redrive record goes with it.
    let c = settle(&mut st, &[1]);
    assert_eq!(c.redriven, vec![1]);
    assert!(!st.is_open(1));
    // A deleted dead letter is not redriven any more.
    st.on_redriven(1);
    st.on_dead_deleted(1);
    assert!(pull(&mut st, &log, t1, 10).0.is_empty());
}

#[test]
fn given_a_reset_then_leases_and_counts_go_and_everything_from_the_new_start_comes_again() {
    let mut r = row(spec());
    r.deliveries = vec![(3, 2)];
    let mut st = GroupState::from_row(r);
    let log = entries(1..=4);
    let t0 = Instant::now();
    pull(&mut st, &log, t0, 10);
    settle(&mut st, &[1, 2, 3, 4]);
    st.reset(1, WALL + 5);
    assert_eq!((st.floor(), st.next(), st.leased()), (1, 2, 0));
    assert_eq!(st.last_active, WALL + 5);
    let (got, _) = pull(&mut st, &log, t0, 10);
    assert_eq!(offsets(&got), vec![2, 3, 4]);
    assert!(got.iter().all(|l| l.deliveries == 1));
}

#[test]
fn given_an_idle_ttl_then_activity_moves_the_deadline_and_is_written_once() {
    let mut st = GroupState::from_row(row(GroupSpec {
        idle_ttl_ms: 5000,
        ..spec()
    }));
    assert_eq!(st.idle_deadline(), Some(5000));
    st.touch(Some("a"), WALL);
    assert_eq!(st.idle_deadline(), Some(WALL + 5000));
    assert_eq!(st.take_touched(), Some(WALL));
    assert_eq!(st.take_touched(), None);
    let never = GroupState::from_row(row(spec()));
    assert_eq!(never.idle_deadline(), None);
}

#[test]
fn given_many_consumers_then_the_set_stays_bounded_and_old_ones_are_forgotten() {
    let mut st = GroupState::from_row(row(spec()));
    for i in 0..(MAX_CONSUMERS + 500) {
        st.touch(Some(&format!("c{i}")), WALL);
    }
    assert_eq!(st.consumers(WALL).len(), MAX_CONSUMERS);
    st.touch(Some("late"), WALL + CONSUMER_TTL_MS + 1);
    st.prune_consumers(WALL + CONSUMER_TTL_MS + 1);
    assert_eq!(st.consumers(WALL + CONSUMER_TTL_MS + 1), vec!["late"]);
}

#[test]
fn given_settled_entries_then_no_lease_count_or_id_is_left_behind() {
    let mut r = row(GroupSpec {
        max_deliveries: 5,
        ..spec()
    });
    r.deliveries = vec![(1, 1), (2, 1), (9, 1)];
    let mut st = GroupState::from_row(r);
    let log = entries(1..=3);
    pull(&mut st, &log, Instant::now(), 10);
    settle(&mut st, &[1, 2, 3]);
    assert_eq!(st.leased(), 0);
    assert!(st
        .lookup(&["m1".into(), "m2".into(), "m3".into()])
        .0
        .is_empty());
    // 9 is above the floor and unsettled: its count stays until it is read.
    assert_eq!(st.counts.len(), 1);
}
