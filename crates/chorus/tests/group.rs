//! Members in one process on loopback: a group forms, every ordering is delivered everywhere in
//! the same order where the order asks for it, a member leaves and one is excluded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use chorus::config::Partial;
use chorus::{Event, Member, Order};
use tokio::time::timeout;

fn config(node: u64, seeds: &[(u64, std::net::SocketAddr)]) -> chorus::config::NodeConfig {
    Partial {
        node: Some(node),
        listen: Some("127.0.0.1:0".into()),
        seeds: Some(seeds.iter().map(|(n, a)| format!("{n}@{a}")).collect()),
        secret: Some("test secret 123".into()),
        bootstrap: Some(seeds.is_empty()),
        heartbeat_ms: Some(20),
        suspect_timeout_ms: Some(200),
        ..Partial::default()
    }
    .build()
    .unwrap()
}

async fn wait_view(events: &mut chorus::Events, size: usize) {
    timeout(Duration::from_secs(10), async {
        loop {
            match events.next().await {
                Some(Event::ViewInstalled { view, .. }) if view.members.len() == size => return,
                Some(Event::CheckpointRequest { .. }) => {}
                Some(_) => {}
                None => panic!("member stopped"),
            }
        }
    })
    .await
    .expect("view of the expected size");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_form_a_group_and_agree_on_total_order() {
    let mut cfg = config(1, &[]);
    cfg.state_transfer = false;
    let (m1, mut e1) = Member::start(cfg).await.unwrap();
    let seed = [(1, m1.listen_addr())];
    let mut c2 = config(2, &seed);
    c2.state_transfer = false;
    let mut c3 = config(3, &seed);
    c3.state_transfer = false;
    let (m2, mut e2) = Member::start(c2).await.unwrap();
    let (m3, mut e3) = Member::start(c3).await.unwrap();
    wait_view(&mut e1, 3).await;
    wait_view(&mut e2, 3).await;
    wait_view(&mut e3, 3).await;
    let members = [m1.clone(), m2.clone(), m3.clone()];
    let mut sends = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let m = m.clone();
        sends.push(tokio::spawn(async move {
            for k in 0..50 {
                m.multicast(Order::Total, Bytes::from(format!("{i}:{k}"))).await.unwrap();
            }
        }));
    }
    for s in sends {
        s.await.unwrap();
    }
    let mut orders = Vec::new();
    for e in [&mut e1, &mut e2, &mut e3] {
        let mut got = Vec::new();
        timeout(Duration::from_secs(10), async {
            while got.len() < 150 {
                if let Some(Event::Delivered { payload, .. }) = e.next().await {
                    got.push(payload);
                }
            }
        })
        .await
        .expect("all 150 delivered");
        orders.push(got);
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[1], orders[2]);
    m3.leave().await.unwrap();
    wait_view(&mut e1, 2).await;
    for m in members {
        m.shutdown().await;
    }
}
