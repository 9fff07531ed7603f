//! Members in one process on loopback: a group of four forms; multicasts in every ordering are
//! delivered everywhere, each sender's in the order it sent them, and the total and safe ones in
//! one order at every member; a member that stops (without leaving) is excluded, and one
//! leaves. (Causal order itself, beyond FIFO, is checked in the simulator, G8.)
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
        plaintext: Some(true),
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
async fn a_group_delivers_every_ordering_excludes_a_stopped_member_and_lets_one_leave() {
    const EACH: usize = 40;
    let orders = [Order::Fifo, Order::Causal, Order::Total, Order::Safe];
    let mut cfg = config(1, &[]);
    cfg.state_transfer = false;
    let (m1, e1) = Member::start(cfg).await.unwrap();
    let seed = [(1, m1.listen_addr())];
    let mut members = vec![m1];
    let mut events = vec![e1];
    for node in 2..=4 {
        let mut c = config(node, &seed);
        c.state_transfer = false;
        let (m, e) = Member::start(c).await.unwrap();
        members.push(m);
        events.push(e);
    }
    for e in events.iter_mut() {
        wait_view(e, 4).await;
    }
    let mut sends = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let m = m.clone();
        sends.push(tokio::spawn(async move {
            for k in 0..EACH {
                let order = orders[k % orders.len()];
                m.multicast(order, Bytes::from(format!("{i}:{k}"))).await.unwrap();
            }
        }));
    }
    for s in sends {
        s.await.unwrap();
    }
    let total = EACH * members.len();
    let mut seen = Vec::new();
    for e in events.iter_mut() {
        let mut got: Vec<(Order, usize, usize)> = Vec::new();
        timeout(Duration::from_secs(10), async {
            while got.len() < total {
                if let Some(Event::Delivered { order, payload, .. }) = e.next().await {
                    let text = String::from_utf8(payload.to_vec()).unwrap();
                    let (i, k) = text.split_once(':').unwrap();
                    got.push((order, i.parse().unwrap(), k.parse().unwrap()));
                }
            }
        })
        .await
        .expect("every multicast delivered");
        seen.push(got);
    }
    for (m, got) in seen.iter().enumerate() {
        for sender in 0..members.len() {
            let ks: Vec<usize> = got.iter().filter(|d| d.1 == sender).map(|d| d.2).collect();
            assert_eq!(
                ks,
                (0..EACH).collect::<Vec<_>>(),
                "member {m}: sender {sender}'s messages out of order"
            );
        }
        for (order, _, k) in got {
            assert_eq!(*order, orders[k % orders.len()], "member {m}: delivered with another ordering");
        }
    }
    let ordered = |got: &Vec<(Order, usize, usize)>| -> Vec<(usize, usize)> {
        got.iter().filter(|d| matches!(d.0, Order::Total | Order::Safe)).map(|d| (d.1, d.2)).collect()
    };
    for got in &seen[1..] {
        assert_eq!(ordered(got), ordered(&seen[0]), "total and safe messages in different orders");
    }
    // Member 4 stops without leaving: the others suspect it and exclude it.
    members[3].shutdown().await;
    for e in events[..3].iter_mut() {
        wait_view(e, 3).await;
    }
    // Member 3 leaves.
    members[2].leave().await.unwrap();
    for e in events[..2].iter_mut() {
        wait_view(e, 2).await;
    }
    for m in members {
        m.shutdown().await;
    }
}

/// A member excluded while alive (its application stopped taking events, so its driver stopped
/// and it went silent) re-joins as a new incarnation; what its earlier life was asked to send
/// is refused (`Superseded`), never sent by the new one, while the new life sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multicast_asked_of_an_excluded_life_is_never_sent() {
    let mut cfg = config(1, &[]);
    cfg.state_transfer = false;
    let (m1, mut e1) = Member::start(cfg).await.unwrap();
    let seed = [(1, m1.listen_addr())];
    let mut members = vec![m1];
    let mut rest = Vec::new();
    for node in 2..=3 {
        let mut c = config(node, &seed);
        c.state_transfer = false;
        let (m, e) = Member::start(c).await.unwrap();
        members.push(m);
        rest.push(e);
    }
    wait_view(&mut e1, 3).await;
    for e in rest.iter_mut() {
        wait_view(e, 3).await;
    }
    let (e2, mut e3) = (rest.remove(0), rest.remove(0));
    let old = members[2].current_id();
    assert_eq!(old, members[2].first_id());
    // Member 3's application takes no events: once its event queue is full its driver waits,
    // and it goes silent. Members 1 and 2 take theirs while member 1 multicasts.
    let sender = members[0].clone();
    let flood = tokio::spawn(async move {
        for k in 0..6000u32 {
            sender.multicast(Order::Fifo, Bytes::from(k.to_be_bytes().to_vec())).await.unwrap();
        }
    });
    let drain = |mut e: chorus::Events| {
        tokio::spawn(async move {
            loop {
                match e.next().await {
                    Some(Event::ViewInstalled { view, .. }) if view.members.len() == 2 => return e,
                    Some(_) => {}
                    None => panic!("member stopped"),
                }
            }
        })
    };
    let (d1, d2) = (drain(e1), drain(e2));
    let mut e1 = timeout(Duration::from_secs(20), d1).await.expect("member 3 excluded").unwrap();
    let mut e2 = timeout(Duration::from_secs(20), d2).await.expect("member 3 excluded").unwrap();
    // Member 3's application wakes up: it hears of its exclusion.
    let rejoin_as = timeout(Duration::from_secs(20), async {
        loop {
            if let Some(Event::Excluded { rejoin_as, .. }) = e3.next().await {
                return rejoin_as;
            }
        }
    })
    .await
    .expect("member 3 told it was excluded");
    assert_ne!(rejoin_as, old);
    assert_eq!(members[2].current_id(), rejoin_as);
    // A multicast asked of the earlier life is refused, definitely.
    let r = members[2].multicast_as(old, Order::Fifo, Bytes::from_static(b"from the old life")).await;
    assert!(
        matches!(r, Err(chorus::MulticastError::Superseded { asked_by, now }) if asked_by == old && now == rejoin_as),
        "{r:?}"
    );
    // The new life re-joins and sends.
    members[2].multicast_as(rejoin_as, Order::Fifo, Bytes::from_static(b"from the new life")).await.unwrap();
    flood.await.unwrap();
    for e in [&mut e1, &mut e2] {
        timeout(Duration::from_secs(20), async {
            loop {
                match e.next().await {
                    Some(Event::Delivered { payload, .. }) if payload.as_ref() == b"from the new life" => {
                        return
                    }
                    Some(Event::Delivered { payload, .. }) => {
                        assert_ne!(
                            payload.as_ref(),
                            b"from the old life",
                            "the old life's multicast was sent"
                        )
                    }
                    Some(_) => {}
                    None => panic!("member stopped"),
                }
            }
        })
        .await
        .expect("the new life's multicast delivered");
    }
    for m in members {
        m.shutdown().await;
    }
}

/// Seeds and listen addresses may be host names (resolved again at each dial, as containers
/// change addresses across restarts), and a member listening on every interface tells its
/// peers the address it gave to advertise, with the port it really bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_find_each_other_by_host_name() {
    let named = |node: u64, listen: &str, advertise: Option<&str>, seeds: Vec<String>| {
        let mut c = Partial {
            node: Some(node),
            listen: Some(listen.into()),
            advertise: advertise.map(String::from),
            bootstrap: Some(seeds.is_empty()),
            seeds: Some(seeds),
            secret: Some("test secret 123".into()),
            plaintext: Some(true),
            // Not a test of failure detection: a loaded machine must not exclude anyone.
            heartbeat_ms: Some(100),
            suspect_timeout_ms: Some(3000),
            ..Partial::default()
        }
        .build()
        .unwrap();
        c.state_transfer = false;
        c
    };
    let (m1, e1) = Member::start(named(1, "0.0.0.0:0", Some("localhost:0"), vec![])).await.unwrap();
    let seed = vec![format!("1@localhost:{}", m1.listen_addr().port())];
    let (m2, e2) = Member::start(named(2, "localhost:0", None, seed.clone())).await.unwrap();
    // Node 3 knows only node 1 by name; node 2's address reaches it through node 1, as node 2
    // advertised it: a name.
    let (m3, e3) = Member::start(named(3, "localhost:0", None, seed)).await.unwrap();
    let mut events = [e1, e2, e3];
    for e in events.iter_mut() {
        wait_view(e, 3).await;
    }
    m3.multicast(Order::Total, Bytes::from_static(b"by name")).await.unwrap();
    for e in events.iter_mut() {
        timeout(Duration::from_secs(10), async {
            loop {
                match e.next().await {
                    Some(Event::Delivered { payload, .. }) if payload == "by name" => return,
                    Some(_) => {}
                    None => panic!("member stopped"),
                }
            }
        })
        .await
        .expect("the message is delivered at every member");
    }
    for m in [m1, m2, m3] {
        m.shutdown().await;
    }
}

/// A payload larger than a frame batch and than the send window (16 MiB, with a 20 MiB
/// `max_payload`) goes in pieces over real connections and is delivered at every member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_payload_travels_in_pieces() {
    let big_cfg = |node: u64, seeds: &[(u64, std::net::SocketAddr)]| {
        let mut c = config(node, seeds);
        c.state_transfer = false;
        c.max_payload = 20 << 20;
        c.max_members = 8;
        c.suspect_timeout = Duration::from_secs(3);
        c
    };
    let (m1, e1) = Member::start(big_cfg(1, &[])).await.unwrap();
    let seed = [(1, m1.listen_addr())];
    let (m2, e2) = Member::start(big_cfg(2, &seed)).await.unwrap();
    let (m3, e3) = Member::start(big_cfg(3, &seed)).await.unwrap();
    let mut events = [e1, e2, e3];
    for e in events.iter_mut() {
        wait_view(e, 3).await;
    }
    // Small total-order messages first (their bytes leave the window only once stable and
    // delivered), then the large one, which must wait for them and then go alone.
    for k in 0..50u32 {
        m2.multicast(Order::Total, Bytes::from(k.to_string())).await.unwrap();
    }
    let big = Bytes::from(vec![9u8; 16 << 20]);
    m2.multicast(Order::Total, big.clone()).await.unwrap();
    for e in events.iter_mut() {
        timeout(Duration::from_secs(20), async {
            loop {
                match e.next().await {
                    Some(Event::Delivered { payload, .. }) if payload.len() == big.len() => {
                        assert_eq!(payload, big);
                        return;
                    }
                    Some(_) => {}
                    None => panic!("member stopped"),
                }
            }
        })
        .await
        .expect("the large payload is delivered at every member");
    }
    for m in [m1, m2, m3] {
        m.shutdown().await;
    }
}
