//! A group chat: every line typed is multicast in causal order (a reply is never shown before
//! what it replies to); views are shown as members come and go.
//!
//! ```sh
//! cargo run -p chorus --example chat -- 1 127.0.0.1:7001                      # starts the group
//! cargo run -p chorus --example chat -- 2 127.0.0.1:7002 1@127.0.0.1:7001     # joins it
//! ```

use anyhow::Context;
use chorus::config::Partial;
use chorus::{Event, Member, Order};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let node: u64 = args.next().context("usage: chat NODE_ID LISTEN_ADDR [SEED id@addr]")?.parse()?;
    let listen = args.next().context("missing LISTEN_ADDR, e.g. 127.0.0.1:7001")?;
    let seed = args.next();
    let cfg = Partial {
        node: Some(node),
        listen: Some(listen),
        bootstrap: Some(seed.is_none()),
        seeds: seed.map(|s| vec![s]),
        secret: Some("chat example secret".into()),
        plaintext: Some(true),
        state_transfer: Some(false),
        ..Partial::default()
    }
    .build()?;
    let (member, mut events) = Member::start(cfg).await?;
    println!("n{node}: type lines to send them; Ctrl-D leaves");
    let sender = member.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Err(e) = sender.multicast(Order::Causal, line.into()).await {
                eprintln!("not sent: {e}");
            }
        }
        let _ = sender.leave().await;
    });
    while let Some(event) = events.next().await {
        match event {
            Event::ViewInstalled { view, .. } => {
                let names: Vec<String> = view.members.iter().map(|m| format!("n{}", m.node.0)).collect();
                println!("-- view {}: {}", view.id.0, names.join(", "));
            }
            Event::Delivered { id, payload, .. } => {
                println!("n{}> {}", id.sender.node.0, String::from_utf8_lossy(&payload));
            }
            Event::Left => break,
            _ => {}
        }
    }
    Ok(())
}
