//! Crashes over shared memory: a SIGKILLed publisher leaves only whole messages, a SIGKILLed
//! subscriber releases the publisher waiting on it, and an ended session frees every slot.

use super::*;

#[test]
fn a_publisher_killed_mid_stream_leaves_only_whole_messages_and_others_carry_on() {
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\n\n[shm]\nring_bytes = 8192\n",
        fanout("crash")
    ));
    let client = shm_client(&broker);
    let mut sub = client.subscribe("crash").expect("subscribe");
    // An endless publisher process, killed while it writes flat out.
    let lines = (0u64..).map(checked_message);
    let victim = spawn_pub_with(&broker, "crash", &["--transport", "shm"], lines);
    let mut next = 0u64;
    while next < 20_000 {
        let message = recv(&mut sub);
        assert_eq!(check_message(&message), Ok(next));
        next += 1;
    }
    kill(Pid::from_raw(victim.pid()), Signal::SIGKILL).expect("SIGKILL");
    let (status, _) = victim.finish();
    assert!(!status.success());
    // Whatever it published before dying is whole and in order; then its ring runs dry.
    while let Some(message) = recv_within(&mut sub, Duration::from_millis(300)).expect("recv") {
        assert_eq!(check_message(&message), Ok(next));
        next += 1;
    }
    // A new publisher is heard by the same subscription.
    let mut survivor = shm_client(&broker).publisher("crash").expect("publisher");
    survivor
        .publish(checked_message(7).as_bytes())
        .expect("publish");
    assert_eq!(check_message(&recv(&mut sub)), Ok(7));
}

#[test]
fn a_subscriber_killed_while_the_publisher_waits_on_it_releases_the_publisher() {
    // A ring holds frames of up to half its size: 1000-byte messages keep it at 4 KiB.
    let broker = TestBroker::start(&format!(
        "{}max_message_size = 1000\n\n[shm]\nring_bytes = 4096\n",
        fanout("stall")
    ));
    let mut frozen = spawn_sub(&broker, "stall", &["--transport", "shm"]);
    let pid = Pid::from_raw(frozen.child.id() as i32);
    let mut publisher = shm_client(&broker).publisher("stall").expect("publisher");
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    // 4 KiB ring, 100-byte messages: the publisher fills it and must wait for the frozen
    // subscriber...
    let payload = [b'x'; 100];
    let mut published = 0;
    while publisher.try_publish(&payload).expect("try_publish") {
        published += 1;
        assert!(
            published < 1000,
            "a 4 KiB ring took 1000 messages of 100 bytes"
        );
    }
    // ...until it dies: the broker frees its slot and the publisher goes on.
    kill(pid, Signal::SIGKILL).expect("SIGKILL");
    frozen.wait();
    let start = Instant::now();
    for _ in 0..1000 {
        publisher.publish(&payload).expect("publish");
    }
    assert!(start.elapsed() < DEADLINE);
}

#[test]
fn a_session_ending_frees_every_slot_it_held() {
    let broker = TestBroker::start(&format!("{}\n[shm]\nmax_subscribers = 2\n", fanout("f")));
    for round in 0..5 {
        // Two subscribers fill the relay ring's slots; the end of the previous round's
        // session must free them. The broker sees that end asynchronously (as it would a
        // SIGKILL), so the first subscribe may come too early: retry until the deadline.
        let client = shm_client(&broker);
        let deadline = Instant::now() + DEADLINE;
        let (_a, _b) = loop {
            let both = client
                .subscribe("f")
                .and_then(|a| client.subscribe("f").map(|b| (a, b)));
            match both {
                Ok(both) => break both,
                Err(error) if error.code() == Some(ErrorCode::ShmRefused) => {
                    assert!(
                        Instant::now() < deadline,
                        "round {round}: slots never freed"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(error) => panic!("round {round}: {error}"),
            }
        };
        let refused = client
            .subscribe("f")
            .expect_err("a third is over the limit");
        assert_eq!(refused.code(), Some(ErrorCode::ShmRefused), "{refused}");
        assert!(refused.to_string().contains("max_subscribers"), "{refused}");
        drop(client);
    }
}
