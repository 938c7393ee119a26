use super::*;
use crate::config::Overflow;
use crate::store::now_ms;

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

fn receiver(c: &Connection, id: &str) -> ReceiverStatus {
    status(c, id).unwrap().unwrap().receivers.remove(0)
}

fn rows(c: &Connection) -> i64 {
    c.query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn given_cursors_then_each_delivery_reads_queued_sent_or_delivered_with_its_times_and_attempts() {
    let c = db();
    let bob = vec!["bob".to_string()];
    let msgs: Vec<NewMessage> = (1..=4).map(|i| message(&format!("m{i}"), "chat")).collect();
    let out = publish_batch(&c, &msgs, &bob, 100, Overflow::Reject).unwrap();
    assert_eq!(out.len(), 4);
    assert_eq!(backlogs(&c).unwrap(), vec![("bob".to_string(), 4)]);
    mark_sent(&c, "bob", "chat", 1, 3).unwrap();
    // A resend of 2..=3 counts a second attempt on those rows only.
    mark_sent(&c, "bob", "chat", 2, 3).unwrap();
    assert_eq!(ack(&c, "bob", "chat", 2).unwrap(), 2);
    let (m1, m2, m3, m4) = (
        receiver(&c, "m1"),
        receiver(&c, "m2"),
        receiver(&c, "m3"),
        receiver(&c, "m4"),
    );
    assert_eq!((m1.state, m1.attempts), (DeliveryState::Delivered, 1));
    assert!(m1.done_at.is_some() && m1.sent_at.is_some());
    assert_eq!((m2.state, m2.attempts), (DeliveryState::Delivered, 2));
    assert_eq!((m3.state, m3.attempts), (DeliveryState::Sent, 2));
    assert!(m3.done_at.is_none());
    assert_eq!((m4.state, m4.attempts), (DeliveryState::Queued, 0));
    assert!(m4.sent_at.is_none());
    assert_eq!(backlogs(&c).unwrap(), vec![("bob".to_string(), 2)]);
    // A delivered row can no longer be expired, dropped or dead-lettered.
    assert!(!finish(
        &c,
        "bob",
        "chat",
        1,
        DeliveryState::Expired,
        "ttl",
        now_ms()
    )
    .unwrap());
    assert!(finish(
        &c,
        "bob",
        "chat",
        3,
        DeliveryState::Expired,
        "ttl",
        now_ms()
    )
    .unwrap());
    let m3 = receiver(&c, "m3");
    assert_eq!((m3.state, m3.attempts), (DeliveryState::Expired, 2));
    // An ACK over the expired row counts only what was still pending.
    assert_eq!(ack(&c, "bob", "chat", 4).unwrap(), 1);
    assert_eq!(receiver(&c, "m3").state, DeliveryState::Expired);
    assert_eq!(receiver(&c, "m4").state, DeliveryState::Delivered);
    assert!(backlogs(&c).unwrap().is_empty());
}

#[test]
fn given_a_full_backlog_when_a_batch_is_rejected_then_only_what_fits_is_stored() {
    let c = db();
    let bob = vec!["bob".to_string()];
    let msgs: Vec<NewMessage> = (1..=5).map(|i| message(&format!("m{i}"), "chat")).collect();
    let out = publish_batch(&c, &msgs, &bob, 3, Overflow::Reject).unwrap();
    let accepted = out
        .iter()
        .filter(|o| matches!(o, PublishOutcome::Accepted { .. }))
        .count();
    assert_eq!(accepted, 3);
    assert!(matches!(
        out[3],
        PublishOutcome::Rejected { pending: 3, .. }
    ));
    assert_eq!(rows(&c), 3);
    // Sequences continue where the batch left them.
    let more = publish_batch(&c, &[message("m9", "chat")], &bob, 10, Overflow::Reject).unwrap();
    assert!(matches!(&more[0], PublishOutcome::Accepted { routes, .. } if routes[0].1 == 4));
}

#[test]
fn given_drop_oldest_then_acknowledged_rows_are_never_the_ones_dropped() {
    let c = db();
    let bob = vec!["bob".to_string()];
    for i in 1..=3 {
        publish(
            &c,
            &message(&format!("m{i}"), "chat"),
            &bob,
            3,
            Overflow::DropOldest,
        )
        .unwrap();
    }
    mark_sent(&c, "bob", "chat", 1, 1).unwrap();
    ack(&c, "bob", "chat", 1).unwrap();
    publish(&c, &message("m4", "chat"), &bob, 2, Overflow::DropOldest).unwrap();
    assert_eq!(receiver(&c, "m1").state, DeliveryState::Delivered);
    assert_eq!(receiver(&c, "m2").state, DeliveryState::Dropped);
    assert_eq!(receiver(&c, "m3").state, DeliveryState::Queued);
}

#[test]
fn given_retention_then_acknowledged_deliveries_go_with_their_ack_records_and_pending_ones_stay() {
    let c = db();
    let bob = vec!["bob".to_string()];
    let msgs: Vec<NewMessage> = (1..=4).map(|i| message(&format!("m{i}"), "chat")).collect();
    publish_batch(&c, &msgs, &bob, 100, Overflow::Reject).unwrap();
    mark_sent(&c, "bob", "chat", 1, 4).unwrap();
    ack(&c, "bob", "chat", 3).unwrap();
    // Retention not over yet: nothing goes.
    sweep(&c, now_ms(), 60_000, 1000).unwrap();
    assert_eq!(rows(&c), 4);
    let out = sweep(&c, now_ms() + 1, 0, 1000).unwrap();
    assert!(out.deleted >= 3, "{out:?}");
    assert_eq!(rows(&c), 1);
    assert_eq!(receiver(&c, "m4").state, DeliveryState::Sent);
    let acks: i64 = c
        .query_row("SELECT COUNT(*) FROM stream_acks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(acks, 0);
}

#[test]
fn given_queued_sent_and_acked_deliveries_when_purging_queued_then_only_the_undelivered_are_purged()
{
    let c = db();
    let bob = vec!["bob".to_string()];
    for i in 1..=4 {
        publish(
            &c,
            &message(&format!("m{i}"), "chat"),
            &bob,
            100,
            Overflow::Reject,
        )
        .unwrap();
    }
    mark_sent(&c, "bob", "chat", 1, 3).unwrap();
    ack(&c, "bob", "chat", 2).unwrap();
    let out = purge_queued(&c, "purged by test", now_ms(), 100).unwrap();
    assert_eq!(out.deliveries, 2, "m3 (sent) and m4 (queued)");
    assert!(!out.more);
    assert_eq!(out.streams.len(), 1);
    assert_eq!(state(&c, "m1"), vec![DeliveryState::Delivered]);
    assert_eq!(state(&c, "m3"), vec![DeliveryState::Purged]);
    assert_eq!(state(&c, "m4"), vec![DeliveryState::Purged]);
    assert!(backlogs(&c).unwrap().iter().all(|(_, n)| *n == 0));
    // The receiver had m3 after all: its ACK corrects the status.
    assert_eq!(delivered_after_all(&c, "bob", "chat", &[3]).unwrap(), 1);
    assert_eq!(state(&c, "m3"), vec![DeliveryState::Delivered]);
    // Purging sent records removes the delivered ones and keeps the purged one.
    assert!(purge_sent(&c, 100).unwrap() > 0);
    while purge_sent(&c, 100).unwrap() > 0 {}
    for gone in ["m1", "m2", "m3"] {
        assert!(status(&c, gone).unwrap().is_none(), "{gone} kept");
    }
    assert_eq!(state(&c, "m4"), vec![DeliveryState::Purged]);
}

#[test]
fn given_queued_sent_and_acked_messages_then_stream_gauges_count_backlog_in_flight_and_oldest() {
    let c = db();
    let bob = vec!["bob".to_string()];
    for i in 0..5 {
        publish(
            &c,
            &message(&format!("m{i}"), "chat"),
            &bob,
            100,
            Overflow::Reject,
        )
        .unwrap();
    }
    publish(&c, &message("n1", "news"), &bob, 100, Overflow::Reject).unwrap();
    mark_sent(&c, "bob", "chat", 1, 3).unwrap();
    ack(&c, "bob", "chat", 1).unwrap();
    ack(&c, "bob", "news", 1).unwrap();
    let g = stream_gauges(&c).unwrap();
    assert_eq!(g.len(), 2);
    let chat = &g[0];
    assert_eq!(
        (chat.channel.as_str(), chat.backlog, chat.in_flight),
        ("chat", 4, 2)
    );
    let queued_at: i64 = c
        .query_row(
            "SELECT queued_at FROM deliveries WHERE channel = 'chat' AND seq = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(chat.oldest_queued_at, Some(queued_at));
    let news = &g[1];
    assert_eq!(
        (news.backlog, news.in_flight, news.oldest_queued_at),
        (0, 0, None)
    );
}

#[test]
fn given_messages_with_ulid_ids_when_their_retention_ends_then_only_the_unreferenced_old_ones_go() {
    let c = db();
    let bob = vec!["bob".to_string()];
    let now = now_ms();
    let hour = 3_600_000;
    let at = |t: i64, i: usize| NewMessage {
        id: message_id(t),
        created_at: t,
        expires_at: now + 10 * hour,
        ..message(&format!("x{i}"), "chat")
    };
    // Two old messages, one of them still queued for bob; one recent. Only the queued
    // one has a delivery row: the others stand for messages whose deliveries are done.
    let old = [at(now - 3 * hour, 0), at(now - 2 * hour - 1, 1)];
    let recent = at(now - 1000, 2);
    publish_batch(&c, &old[1..], &bob, 100, Overflow::Reject).unwrap();
    for m in [&old[0], &recent] {
        c.execute(
            "INSERT INTO messages(id, channel, created_at, expires_at, content_type, headers, payload)
             VALUES (?, 'chat', ?, ?, 'text/plain', '[]', x'00')",
            params![m.id, m.created_at, m.expires_at],
        )
        .unwrap();
    }
    let out = sweep(&c, now, 2 * hour, 1000).unwrap();
    assert_eq!(out.deleted, 1);
    let ids: Vec<String> = c
        .prepare("SELECT id FROM messages ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<std::result::Result<_, _>>()
        .unwrap();
    assert!(!ids.contains(&old[0].id), "old and delivered: gone");
    assert!(ids.contains(&old[1].id), "old but still queued: kept");
    assert!(ids.contains(&recent.id), "recent: kept");
}
