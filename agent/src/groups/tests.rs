//! Tests of the groups handle with a real SQLite store: actors of deleted and
//! expired groups go, with their leases, and concurrent pulls never share a lease.

use super::*;
use crate::config::StoreConfig;

async fn setup(n: u64) -> (tempfile::TempDir, Groups, Channel) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), "node", &StoreConfig::default()).unwrap();
    store
        .writer
        .run(move |conn| {
            for o in 1..=n {
                conn.execute(
                    "INSERT INTO channel_log(channel, offset, message_id, sender, created_at, received_at, expires_at, content_type, headers, payload)
                     VALUES ('c', ?1, 'm' || ?1, 's', 0, 0, ?2, 't', '[]', x'00')",
                    rusqlite::params![o as i64, i64::MAX],
                )?;
            }
            conn.execute(
                "INSERT INTO channel_heads(channel, next_offset) VALUES ('c', ?1)",
                [n as i64 + 1],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    let groups = Groups::new(
        store,
        LogHeads::default(),
        Metrics::new(),
        GroupsConfig::default(),
    );
    (dir, groups, Channel::new("c".to_string()).unwrap())
}

fn name(n: &str) -> GroupName {
    GroupName::new(n.to_string()).unwrap()
}

#[tokio::test]
async fn given_a_deleted_group_with_leases_then_its_actor_and_leases_are_gone_and_handles_get_not_found(
) {
    let (_dir, groups, c) = setup(10).await;
    let g = name("g");
    groups
        .create(&c, &g, Start::Earliest, groups.default_spec())
        .await
        .unwrap();
    let got = groups
        .pull(&c, &g, Some("x"), 5, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(got.len(), 5);
    let tx = groups.map().get(&(c.clone(), g.clone())).cloned().unwrap();
    groups.delete(&c, &g).await.unwrap();
    assert!(groups.map().is_empty());
    // The actor refuses what callers still send, and ends once they are gone.
    let r = call(&tx, Groups::not_found(&c, &g), |reply| Cmd::Snapshot {
        reply,
    })
    .await;
    assert!(matches!(r, Err(GroupError::NotFound { .. })));
    let weak = tx.downgrade();
    drop(tx);
    for _ in 0..100 {
        if weak.upgrade().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(weak.upgrade().is_none(), "the actor outlived its group");
    let e = groups.pull(&c, &g, None, 1, Duration::ZERO).await;
    assert!(matches!(e, Err(GroupError::NotFound { .. })));
}

#[tokio::test]
async fn given_concurrent_pulls_then_no_entry_is_leased_twice_and_acks_move_the_floor() {
    let (_dir, groups, c) = setup(200).await;
    let g = name(DEFAULT_GROUP);
    let pulls = (0..8).map(|i| {
        let (groups, c, g) = (groups.clone(), c.clone(), g.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let got = groups
                    .pull(&c, &g, Some(&format!("c{i}")), 7, Duration::ZERO)
                    .await
                    .unwrap();
                if got.is_empty() {
                    return ids;
                }
                ids.extend(got.into_iter().map(|l| l.entry.id));
            }
        })
    });
    let mut all = Vec::new();
    for p in pulls {
        all.extend(p.await.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!((n, all.len()), (200, 200));
    let r = groups.settle(&c, &g, &all, Settle::Ack).await.unwrap();
    assert_eq!(r.applied.len(), 200);
    let info = groups.info(&c, &g).await.unwrap();
    assert_eq!((info.ack_floor, info.pending, info.in_flight), (200, 0, 0));
    assert_eq!(info.consumers.len(), 8);
}
