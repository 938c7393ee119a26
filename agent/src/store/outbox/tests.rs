use super::*;
use crate::config::Overflow;

fn db() -> Connection {
    let mut c = Connection::open_in_memory().unwrap();
    super::super::schema::migrate(&mut c).unwrap();
    c
}

fn message(id: &str, channel: &str) -> NewMessage {
    NewMessage {
        id: id.into(),
        channel: channel.into(),
        created_at: now_ms(),
        expires_at: now_ms() + 60_000,
        content_type: "text/plain".into(),
        headers: "[]".into(),
        payload: b"x".to_vec(),
        idempotency_key: None,
    }
}

fn state(c: &Connection, id: &str) -> Vec<DeliveryState> {
    status(c, id)
        .unwrap()
        .unwrap()
        .receivers
        .iter()
        .map(|r| r.state)
        .collect()
}

#[test]
fn given_a_dead_lettered_delivery_when_the_receiver_says_it_had_it_then_it_reads_delivered_and_the_dead_letter_goes(
) {
    let c = db();
    let bob = vec!["bob".to_string()];
    publish(&c, &message("m1", "chat"), &bob, 100, Overflow::Reject).unwrap();
    mark_sent(&c, "bob", "chat", 1, 1).unwrap();
    assert!(dead_letter(&c, "bob", "chat", 1, "no ack", 3, "[]").unwrap());
    assert_eq!(state(&c, "m1"), vec![DeliveryState::Dead]);
    assert_eq!(delivered_after_all(&c, "bob", "chat", &[1, 7]).unwrap(), 1);
    assert_eq!(state(&c, "m1"), vec![DeliveryState::Delivered]);
    assert!(list_dead(&c, Some("m1"), None, None, 10)
        .unwrap()
        .is_empty());
    // Once is enough; a pending delivery is never touched by a had report.
    assert_eq!(delivered_after_all(&c, "bob", "chat", &[1]).unwrap(), 0);
    publish(&c, &message("m2", "chat"), &bob, 100, Overflow::Reject).unwrap();
    assert_eq!(delivered_after_all(&c, "bob", "chat", &[2]).unwrap(), 0);
    assert_eq!(state(&c, "m2"), vec![DeliveryState::Queued]);
}

#[test]
fn given_two_channels_when_one_drops_oldest_then_the_other_keeps_every_message() {
    let c = db();
    let bob = vec!["bob".to_string()];
    for i in 0..5 {
        publish(
            &c,
            &message(&format!("big{i}"), "big"),
            &bob,
            100,
            Overflow::Reject,
        )
        .unwrap();
    }
    for i in 0..10 {
        publish(
            &c,
            &message(&format!("small{i}"), "small"),
            &bob,
            3,
            Overflow::DropOldest,
        )
        .unwrap();
    }
    for i in 0..5 {
        assert_eq!(state(&c, &format!("big{i}")), vec![DeliveryState::Queued]);
    }
    for i in 0..7 {
        assert_eq!(
            state(&c, &format!("small{i}")),
            vec![DeliveryState::Dropped]
        );
    }
    // The reject limit counts the channel's own backlog only.
    let r = publish(&c, &message("big5", "big"), &bob, 5, Overflow::Reject).unwrap();
    assert!(
        matches!(r, PublishOutcome::Rejected { pending: 5, .. }),
        "{r:?}"
    );
    let r = publish(&c, &message("small10", "small"), &bob, 4, Overflow::Reject).unwrap();
    assert!(matches!(r, PublishOutcome::Accepted { .. }), "{r:?}");
}
