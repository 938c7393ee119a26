//! Self-clocked batching: with `max_sends` sends awaiting their ACK, new sequences
//! wait to leave together, unless a frame's worth is waiting or they are resends.

use super::*;

fn cfg(max_sends: usize, fill: u64) -> WindowConfig {
    WindowConfig {
        window: 1024,
        max_sends,
        fill,
        ..super::tests::cfg()
    }
}

/// Polls once and, for a send, records it as sent.
fn send(w: &mut Window, t: Instant) -> Option<(u64, u64)> {
    match w.poll(t, true)? {
        Action::Send { from, to, .. } => {
            w.on_sent(to, t);
            Some((from, to))
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn given_an_idle_stream_when_a_message_arrives_then_it_is_sent_at_once() {
    let t = Instant::now();
    let mut w = Window::new(cfg(2, 128), 0, 0, 0);
    w.on_new(1);
    assert_eq!(send(&mut w, t), Some((1, 1)));
}

#[test]
fn given_max_sends_in_flight_then_new_messages_wait_and_leave_together_on_the_next_ack() {
    let t = Instant::now();
    let mut w = Window::new(cfg(2, 128), 0, 0, 0);
    w.on_new(1);
    assert_eq!(send(&mut w, t), Some((1, 1)));
    w.on_new(2);
    assert_eq!(send(&mut w, t), Some((2, 2)));
    assert_eq!(w.sends_in_flight(), 2);
    for s in 3..=10 {
        w.on_new(s);
        assert_eq!(
            w.poll(t, true),
            None,
            "sequence {s} waits while 2 sends are out"
        );
    }
    assert!(matches!(w.on_ack(1, t), AckOutcome::Advanced { .. }));
    assert_eq!(w.sends_in_flight(), 1);
    assert_eq!(
        send(&mut w, t),
        Some((3, 10)),
        "one send for everything that waited"
    );
}

#[test]
fn given_max_sends_in_flight_when_a_frame_is_waiting_then_it_is_sent_anyway() {
    let t = Instant::now();
    let mut w = Window::new(cfg(1, 4), 0, 0, 0);
    w.on_new(1);
    assert_eq!(send(&mut w, t), Some((1, 1)));
    w.on_new(4);
    assert_eq!(w.poll(t, true), None, "3 waiting, fewer than a frame");
    w.on_new(5);
    assert_eq!(
        send(&mut w, t),
        Some((2, 5)),
        "a frame's worth leaves at once"
    );
}

#[test]
fn given_a_timed_out_round_then_the_resend_is_never_held_back() {
    let t = Instant::now();
    let mut w = Window::new(cfg(1, 128), 0, 0, 0);
    w.on_new(3);
    assert_eq!(send(&mut w, t), Some((1, 3)));
    w.on_new(4);
    assert_eq!(w.poll(t, true), None);
    let late = t + Duration::from_secs(11);
    assert_eq!(
        w.poll(late, true),
        Some(Action::Send {
            from: 1,
            to: 4,
            resend: true
        }),
        "the round restarts from the head, with the waiting sequence"
    );
}

#[test]
fn given_a_restart_then_nothing_counts_as_in_flight() {
    let t = Instant::now();
    let mut w = Window::new(cfg(1, 128), 0, 0, 0);
    w.on_new(1);
    assert_eq!(send(&mut w, t), Some((1, 1)));
    w.restart();
    assert_eq!(w.sends_in_flight(), 0);
}

#[test]
fn given_no_limit_then_every_commit_is_sent_at_once() {
    let t = Instant::now();
    let mut w = Window::new(cfg(0, 128), 0, 0, 0);
    for s in 1..=5 {
        w.on_new(s);
        assert_eq!(send(&mut w, t), Some((s, s)));
    }
    assert_eq!(w.sends_in_flight(), 5);
}

#[test]
fn given_a_cumulative_ack_then_every_send_it_covers_is_done() {
    let t = Instant::now();
    let mut w = Window::new(cfg(8, 128), 0, 0, 0);
    for s in 1..=3 {
        w.on_new(s);
        send(&mut w, t);
    }
    assert!(matches!(w.on_ack(2, t), AckOutcome::Advanced { .. }));
    assert_eq!(w.sends_in_flight(), 1);
    assert!(matches!(w.on_ack(3, t), AckOutcome::Advanced { .. }));
    assert_eq!(w.sends_in_flight(), 0);
}
