//! Replay subscriptions through the client library: from each kind of start, the hand-over
//! from history to live with no gap and no duplicate, and a replay after a restart.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mycelium_client::{Client, DurableOptions, DurableSubscription, StartPosition};

use super::common::{block_on, TestBroker};

fn config(data: &Path) -> String {
    format!(
        "[storage]\ndata_dir = \"{}\"\n\n[[topics]]\nname = \"events\"\nrouting = \"fanout\"\n\
         durable = true\nfsync = \"interval:5ms\"\n",
        data.display()
    )
}

async fn publish(client: &Client, range: std::ops::Range<u64>) {
    for n in range {
        client
            .publish_durable("events", format!("event {n}").as_bytes())
            .await
            .expect("stored");
    }
}

/// The next `count` messages: (offset, payload).
async fn take(sub: &mut DurableSubscription, count: usize) -> Vec<(u64, String)> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(20), sub.recv())
            .await
            .expect("a message within 20 s")
            .expect("the subscription goes on");
        got.push((
            message.offset(),
            String::from_utf8_lossy(&message[..]).into_owned(),
        ));
    }
    got
}

fn expected(range: std::ops::Range<u64>) -> Vec<(u64, String)> {
    range.map(|n| (n, format!("event {n}"))).collect()
}

/// Nothing more arrives for a while.
async fn quiet(sub: &mut DurableSubscription) {
    let more = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await;
    assert!(
        more.is_err(),
        "nothing more: {:?}",
        more.map(|m| m.map(|m| m.offset()))
    );
}

#[test]
fn a_replay_starts_where_asked_and_follows_live_messages() {
    let data = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start(&config(data.path()));
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        publish(&client, 0..100).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let between = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64;
        tokio::time::sleep(Duration::from_millis(20)).await;
        publish(&client, 100..150).await;

        let mut earliest = client
            .subscribe_durable("events", DurableOptions::replay(StartPosition::Earliest))
            .await
            .expect("subscribe");
        let mut at_offset = client
            .subscribe_durable("events", DurableOptions::replay(StartPosition::Offset(120)))
            .await
            .expect("subscribe");
        let mut at_time = client
            .subscribe_durable(
                "events",
                DurableOptions::replay(StartPosition::Timestamp(between)),
            )
            .await
            .expect("subscribe");
        let mut new_only = client
            .subscribe_durable("events", DurableOptions::replay(StartPosition::New))
            .await
            .expect("subscribe");
        assert_eq!(take(&mut earliest, 150).await, expected(0..150));
        assert_eq!(take(&mut at_offset, 30).await, expected(120..150));
        assert_eq!(take(&mut at_time, 50).await, expected(100..150));
        quiet(&mut new_only).await;

        // Live from here: every subscription goes on with the same messages.
        publish(&client, 150..160).await;
        for sub in [&mut earliest, &mut at_offset, &mut at_time, &mut new_only] {
            assert_eq!(take(sub, 10).await, expected(150..160));
            quiet(sub).await;
        }
    });
}

#[test]
fn a_replay_that_catches_up_while_messages_keep_coming_misses_none_and_repeats_none() {
    let data = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start(&config(data.path()));
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        for n in 0..2000u64 {
            client
                .publish("events", format!("event {n}").as_bytes())
                .await
                .expect("publish");
        }
        // A round trip: the broker has stored everything before it.
        client.flush().await.expect("flush");
        let publisher = Client::connect(&broker.socket).await.expect("connect");
        // A publisher keeps going while the replay reads the history.
        let live = tokio::spawn(async move {
            for n in 2000..6000u64 {
                let publisher = &publisher;
                publisher
                    .publish("events", format!("event {n}").as_bytes())
                    .await
                    .expect("publish");
            }
            publisher.flush().await.expect("flush");
        });
        let mut sub = client
            .subscribe_durable(
                "events",
                DurableOptions::replay(StartPosition::Earliest).prefetch(64),
            )
            .await
            .expect("subscribe");
        let got = take(&mut sub, 6000).await;
        live.await.expect("the publisher");
        assert_eq!(got, expected(0..6000));
        quiet(&mut sub).await;
    });
}

#[test]
fn a_restarted_broker_replays_what_it_stored_before() {
    let data = tempfile::tempdir().expect("temp dir");
    {
        let broker = TestBroker::start(&config(data.path()));
        block_on(async {
            let client = Client::connect(&broker.socket).await.expect("connect");
            publish(&client, 0..40).await;
        });
        broker.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = broker.wait();
    }
    let broker = TestBroker::start(&config(data.path()));
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        publish(&client, 40..50).await;
        let mut sub = client
            .subscribe_durable("events", DurableOptions::replay(StartPosition::Earliest))
            .await
            .expect("subscribe");
        assert_eq!(take(&mut sub, 50).await, expected(0..50));
    });
}
