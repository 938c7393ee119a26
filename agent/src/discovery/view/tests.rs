use super::*;

fn list(ms: &[(&str, Role)]) -> BTreeMap<Channel, Role> {
    ms.iter()
        .map(|(c, r)| (Channel::new(*c).unwrap(), *r))
        .collect()
}

fn st(boot: u64, counter: u64) -> Stamp {
    Stamp { boot, counter }
}

/// An announce of `node` stamped (1, counter) whose memberships changed at (1, version).
fn ann(node: &str, counter: u64, version: u64, ms: &[(&str, Role)]) -> Announce {
    Announce {
        node: NodeId::new(node).unwrap(),
        epoch: 1,
        stamp: st(1, counter),
        digest: state::digest(st(1, version), &list(ms)),
        pending: 0,
        api: String::new(),
    }
}

fn view() -> View {
    View::load(&NodeId::new("me").unwrap(), st(1, 0), vec![], vec![])
}

/// Applies an announce and, when asked to, the list it describes.
fn learn(v: &mut View, a: &Announce, ms: &[(&str, Role)], at: Instant) -> Change {
    let c = v.apply(a, at, 0).expect("fresh");
    if c.fetch.is_some() {
        return v
            .apply_state(&a.node, a.digest, list(ms))
            .expect("newer list");
    }
    c
}

#[test]
fn given_new_reader_when_announced_then_fetched_reported_once_and_online() {
    let mut v = view();
    let lisa = NodeId::new("lisa").unwrap();
    let mut live = v.liveness(&lisa);
    let t0 = Instant::now();
    let ms = [("chat", Role::Reader)];
    let c = v.apply(&ann("lisa", 1, 1, &ms), t0, 0).unwrap();
    assert!(c.came_online);
    assert_eq!(
        c.fetch,
        Some(st(1, 1)),
        "an unknown digest asks for the list"
    );
    assert!(v.readers(&Channel::new("chat").unwrap()).is_empty());
    let c = v
        .apply_state(&lisa, state::digest(st(1, 1), &list(&ms)), list(&ms))
        .unwrap();
    assert_eq!(c.new_reader_channels.len(), 1);
    assert!(c.memberships_changed);
    assert_eq!(
        *live.borrow_and_update(),
        Liveness {
            online: true,
            generation: 1
        }
    );
    let c = v.apply(&ann("lisa", 2, 1, &ms), t0, 1).unwrap();
    assert!(c.fetch.is_none(), "a known digest asks for nothing");
    assert!(
        !live.has_changed().unwrap(),
        "a keepalive from an online peer must not look like a comeback"
    );
    // A hello from an online peer (it reconnected) does: in-flight rounds resend.
    v.reannounced(&lisa);
    assert_eq!(live.borrow_and_update().generation, 2);
    assert_eq!(
        v.readers(&Channel::new("chat").unwrap()),
        vec![lisa.clone()]
    );
}

#[test]
fn given_a_replayed_announce_when_applied_then_nothing_changes() {
    let mut v = view();
    let t0 = Instant::now();
    let before = ann("bob", 1, 1, &[("other", Role::Reader)]);
    learn(&mut v, &before, &[("other", Role::Reader)], t0);
    let ms = [("other", Role::Reader), ("chat", Role::Reader)];
    learn(&mut v, &ann("bob", 2, 2, &ms), &ms, t0);
    assert!(v.apply(&before, t0, 0).is_none(), "replayed");
    assert_eq!(v.readers(&Channel::new("chat").unwrap()).len(), 1);
    // An old list (e.g. an answer captured earlier) never replaces a newer one.
    let old = list(&[("other", Role::Reader)]);
    let bob = NodeId::new("bob").unwrap();
    assert!(v
        .apply_state(&bob, state::digest(st(1, 1), &old), old)
        .is_none());
    assert_eq!(v.readers(&Channel::new("chat").unwrap()).len(), 1);
}

#[test]
fn given_an_announce_of_an_older_digest_but_fresh_stamp_when_applied_then_no_fetch() {
    let mut v = view();
    let t0 = Instant::now();
    let ms = [("chat", Role::Reader)];
    learn(&mut v, &ann("bob", 1, 5, &ms), &ms, t0);
    let c = v.apply(&ann("bob", 2, 3, &[]), t0, 0).unwrap();
    assert!(c.fetch.is_none());
    assert_eq!(v.readers(&Channel::new("chat").unwrap()).len(), 1);
}

#[test]
fn given_a_restarted_peer_with_the_same_list_when_announced_then_adopted_without_fetch() {
    let mut v = view();
    let t0 = Instant::now();
    let ms = [("chat", Role::Reader)];
    learn(&mut v, &ann("bob", 1, 1, &ms), &ms, t0);
    let mut restarted = ann("bob", 1, 0, &ms);
    restarted.stamp = st(2, 1);
    restarted.digest.version = st(2, 0);
    let c = v.apply(&restarted, t0, 0).unwrap();
    assert!(c.fetch.is_none());
    assert!(c.persist);
    assert_eq!(c.boot, 2);
    assert_eq!(c.version, st(2, 0));
    // The previous run's frames are refused from now on.
    assert!(v.apply(&ann("bob", 9, 1, &[]), t0, 0).is_none());
}

#[test]
fn given_a_digest_announced_during_a_fetch_when_the_fetch_lands_then_fetch_again() {
    let mut v = view();
    let t0 = Instant::now();
    let bob = NodeId::new("bob").unwrap();
    let one = [("a", Role::Reader)];
    let two = [("a", Role::Reader), ("b", Role::Reader)];
    assert!(v
        .apply(&ann("bob", 1, 1, &one), t0, 0)
        .unwrap()
        .fetch
        .is_some());
    assert!(v
        .apply(&ann("bob", 2, 2, &two), t0, 0)
        .unwrap()
        .fetch
        .is_some());
    let c = v
        .apply_state(&bob, state::digest(st(1, 1), &list(&one)), list(&one))
        .unwrap();
    assert_eq!(c.fetch, Some(st(1, 2)));
}

#[test]
fn given_silence_when_timeout_passes_then_offline_but_still_reader() {
    let mut v = view();
    let t0 = Instant::now();
    let ms = [("chat", Role::Rw)];
    learn(&mut v, &ann("bob", 1, 1, &ms), &ms, t0);
    assert!(v
        .mark_offline(t0 + Duration::from_secs(5), Duration::from_secs(30))
        .is_empty());
    let gone = v.mark_offline(t0 + Duration::from_secs(31), Duration::from_secs(30));
    assert_eq!(gone.len(), 1);
    assert_eq!(v.counts(), (0, 1));
    assert_eq!(v.readers(&Channel::new("chat").unwrap()).len(), 1);
    // Back online: generation moves so senders resend at once.
    let mut live = v.liveness(&NodeId::new("bob").unwrap());
    v.apply(&ann("bob", 2, 1, &ms), t0 + Duration::from_secs(40), 40_000);
    assert!(live.borrow_and_update().online);
    // Expiry only for long-offline peers.
    assert!(v.expire(50_000, 1_000).is_empty());
    v.mark_offline(t0 + Duration::from_secs(100), Duration::from_secs(30));
    assert_eq!(v.expire(50_000, 1_000).len(), 1);
}

#[test]
fn given_stale_or_replayed_bye_when_received_then_ignored() {
    let mut v = view();
    v.apply(&ann("bob", 5, 0, &[]), Instant::now(), 0);
    let bob = NodeId::new("bob").unwrap();
    assert_eq!(v.bye(&bob, st(0, 9)), None, "previous run");
    assert_eq!(v.bye(&bob, st(1, 5)), None, "replayed counter");
    assert_eq!(v.bye(&bob, st(1, 6)), Some(true));
    assert_eq!(v.counts(), (0, 1));
    assert_eq!(v.bye(&bob, st(1, 6)), None);
    assert_eq!(v.bye(&NodeId::new("eve").unwrap(), st(1, 1)), Some(false));
}

#[test]
fn given_a_nack_when_replayed_then_refused() {
    let mut v = view();
    v.apply(&ann("bob", 1, 0, &[]), Instant::now(), 0);
    let bob = NodeId::new("bob").unwrap();
    assert!(v.fresh_nack(&bob, st(1, 2)));
    assert!(!v.fresh_nack(&bob, st(1, 2)));
    assert!(!v.fresh_nack(&bob, st(0, 7)), "previous run");
}

#[test]
fn given_an_expired_peer_nobody_watches_when_expiring_then_its_liveness_watch_goes() {
    let mut v = View::default();
    let ghost = NodeId::new("ghost").unwrap();
    let watched = NodeId::new("watched").unwrap();
    drop(v.liveness(&ghost));
    let _keep = v.liveness(&watched);
    assert_eq!(v.liveness.len(), 2);
    v.expire(i64::MAX, 0);
    assert!(!v.liveness.contains_key(&ghost));
    assert!(
        v.liveness.contains_key(&watched),
        "a stream still watches it"
    );
}

#[test]
fn given_a_kicked_peer_when_it_announces_its_old_list_again_then_it_stays_out_until_a_newer_list() {
    let mut v = view();
    let ms = [("chat", Role::Reader), ("news", Role::Reader)];
    let t0 = Instant::now();
    learn(&mut v, &ann("lisa", 1, 1, &ms), &ms, t0);
    let lisa = NodeId::new("lisa").unwrap();
    let chat = Channel::new("chat").unwrap();
    let news = Channel::new("news").unwrap();
    let c = v.kick(&lisa, Some(&news)).expect("a membership removed");
    assert!(c.memberships_changed && c.persist);
    assert_eq!(c.memberships, vec![(chat.clone(), Role::Reader)]);
    assert!(
        v.kick(&lisa, Some(&news)).is_none(),
        "a second kick changes nothing"
    );
    // Its next keepalives still carry the list of before the kick.
    let c = v.apply(&ann("lisa", 2, 1, &ms), t0, 0).unwrap();
    assert_eq!(c.fetch, None, "the old list is not fetched again");
    assert!(v.readers(&news).is_empty());
    assert_eq!(v.readers(&chat), vec![lisa.clone()]);
    v.kick(&lisa, None).expect("the rest removed");
    v.apply(&ann("lisa", 3, 1, &ms), t0, 0).unwrap();
    assert!(v.readers(&chat).is_empty());
    // It joined again: a newer list is fetched and applied.
    let again = [("news", Role::Reader)];
    learn(&mut v, &ann("lisa", 4, 2, &again), &again, t0);
    assert_eq!(v.readers(&news), vec![lisa]);
}

fn own(v: &mut View, ms: &[(&str, Role)], now: Instant) {
    v.set_own(list(ms), st(1, 1), now);
}

fn tracked(v: &View, node: &str) -> bool {
    v.snapshot()
        .into_iter()
        .find(|p| p.node_id == node)
        .expect("known peer")
        .tracked
}

#[test]
fn given_reader_only_node_when_reader_peer_falls_silent_then_not_timed_out_but_writer_is() {
    let mut v = view();
    let t0 = Instant::now();
    own(&mut v, &[("chat", Role::Reader)], t0);
    let reader = [("chat", Role::Reader)];
    let writer = [("chat", Role::Writer)];
    learn(&mut v, &ann("lisa", 1, 1, &reader), &reader, t0);
    learn(&mut v, &ann("alice", 1, 1, &writer), &writer, t0);
    assert!(!v.tracks(&NodeId::new("lisa").unwrap()));
    assert!(v.tracks(&NodeId::new("alice").unwrap()));
    assert!(!tracked(&v, "lisa") && tracked(&v, "alice"));
    // Its keepalives never reach this node: silence says nothing about lisa.
    let gone = v.mark_offline(t0 + Duration::from_secs(31), Duration::from_secs(30));
    assert_eq!(gone, vec![NodeId::new("alice").unwrap()]);
    assert_eq!(v.counts(), (1, 2), "lisa stays online until her bye");
    assert_eq!(v.bye(&NodeId::new("lisa").unwrap(), st(1, 2)), Some(true));
    assert_eq!(v.counts(), (0, 2));
}

#[test]
fn given_node_starts_writing_when_reader_peer_silent_then_full_timeout_from_then() {
    let mut v = view();
    let t0 = Instant::now();
    let reader = [("chat", Role::Reader)];
    learn(&mut v, &ann("lisa", 1, 1, &reader), &reader, t0);
    // Long after lisa was last heard (her keepalives went to writers only), this
    // node starts to write: lisa is followed from now on, with a whole timeout.
    let t1 = t0 + Duration::from_secs(600);
    own(&mut v, &[("chat", Role::Writer)], t1);
    assert!(tracked(&v, "lisa"));
    assert!(v
        .mark_offline(t1 + Duration::from_secs(29), Duration::from_secs(30))
        .is_empty());
    // Heard again: her own silence counts from then.
    v.apply(&ann("lisa", 2, 1, &reader), t1 + Duration::from_secs(20), 0);
    assert!(v
        .mark_offline(t1 + Duration::from_secs(45), Duration::from_secs(30))
        .is_empty());
    let gone = v.mark_offline(t1 + Duration::from_secs(51), Duration::from_secs(30));
    assert_eq!(gone, vec![NodeId::new("lisa").unwrap()]);
    // No longer writing: lisa is no longer followed (nor timed out when back).
    v.apply(&ann("lisa", 3, 1, &reader), t1 + Duration::from_secs(60), 0);
    own(
        &mut v,
        &[("chat", Role::Reader)],
        t1 + Duration::from_secs(61),
    );
    assert!(!tracked(&v, "lisa"));
    assert!(v
        .mark_offline(t1 + Duration::from_secs(600), Duration::from_secs(30))
        .is_empty());
}
