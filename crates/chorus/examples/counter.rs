//! A counter replicated with total order: every member adds to it; every member applies the
//! same additions in the same order, so all hold the same value. A member that joins gets the
//! value by state transfer at the view barrier, then applies the additions that follow.
//!
//! ```sh
//! cargo run -p chorus --example counter -- 1 127.0.0.1:7101
//! cargo run -p chorus --example counter -- 2 127.0.0.1:7102 1@127.0.0.1:7101
//! ```

use std::time::Duration;

use anyhow::Context;
use chorus::config::Partial;
use chorus::{Event, Member, Order};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let node: u64 = args.next().context("usage: counter NODE_ID LISTEN_ADDR [SEED id@addr]")?.parse()?;
    let listen = args.next().context("missing LISTEN_ADDR")?;
    let seed = args.next();
    let cfg = Partial {
        node: Some(node),
        listen: Some(listen),
        bootstrap: Some(seed.is_none()),
        seeds: seed.map(|s| vec![s]),
        secret: Some("counter example secret".into()),
        plaintext: Some(true),
        state_transfer: Some(true),
        ..Partial::default()
    }
    .build()?;
    let (member, mut events) = Member::start(cfg).await?;
    let adder = member.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if adder.multicast(Order::Total, node.to_le_bytes().to_vec().into()).await.is_err() {
                return;
            }
        }
    });
    let mut value: u64 = 0;
    let mut loading: Vec<u8> = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            Event::Delivered { payload, .. } => {
                let add = payload.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
                value = value.wrapping_add(add);
                println!("n{node}: counter = {value}");
            }
            // The donor: the value at the barrier, before any addition of the new view.
            Event::CheckpointRequest { view, .. } => {
                let state = value.to_le_bytes().to_vec();
                let m = member.clone();
                tokio::spawn(async move {
                    if m.write_checkpoint(view, state.into()).await.is_ok() {
                        let _ = m.finish_checkpoint(view).await;
                    }
                });
            }
            Event::StateIncoming { .. } => loading.clear(),
            Event::StateChunk { data, .. } => loading.extend_from_slice(&data),
            Event::StateLoaded { .. } => {
                value = loading.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
                println!("n{node}: loaded counter = {value}");
            }
            Event::ViewInstalled { view, .. } => {
                println!("n{node}: view {} of {}", view.id.0, view.members.len())
            }
            _ => {}
        }
    }
    Ok(())
}
