//! A full disk: durable publishes are refused with `StorageFailed` and the operating system's
//! words, nothing already stored is lost, the broker keeps serving, and once there is room
//! again publishing resumes after the last stored message. The disk is a 1 MiB tmpfs, which
//! needs root (mount); without it the test says so and does nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use mycelium_client::{Client, DurableOptions, PublishError, StartPosition};
use mycelium_transport::ErrorCode;

use super::common::{block_on, TestBroker};

/// A tmpfs mounted for the test; unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn grow(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remounting the tmpfs larger");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn config(data: &Path) -> String {
    format!(
        "[storage]\ndata_dir = \"{}\"\nsegment_bytes = 65536\n\n[[topics]]\nname = \"full\"\n\
         routing = \"fanout\"\ndurable = true\nmax_message_size = 8192\n",
        data.display()
    )
}

#[test]
fn a_full_disk_refuses_durable_publishes_and_loses_nothing_stored() {
    let Some(disk) = SmallDisk::mount("1m") else {
        eprintln!("skipped: cannot mount a tmpfs (needs root); the full-disk test did not run");
        return;
    };
    let data: PathBuf = disk.path().join("data");
    let broker = TestBroker::start(&config(&data));
    let payload = |n: u64| format!("{n:08}{}", "x".repeat(4000));
    let stored = block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let mut stored = 0u64;
        let refusal = loop {
            match client
                .publish_durable("full", payload(stored).as_bytes())
                .await
            {
                Ok(offset) => {
                    assert_eq!(offset, stored);
                    stored += 1;
                    assert!(stored < 1000, "a 1 MiB disk must fill up");
                }
                Err(error) => break error,
            }
        };
        match &refusal {
            PublishError::Refused { code, message, .. } => {
                assert_eq!(*code, ErrorCode::StorageFailed, "{message}");
                assert!(message.contains("No space left on device"), "{message}");
            }
            other => panic!("expected a StorageFailed refusal, got {other:?}"),
        }
        // Refused again while there is no room, and the broker still serves: a replay reads
        // every stored message.
        assert!(client
            .publish_durable("full", payload(stored).as_bytes())
            .await
            .is_err());
        let mut sub = client
            .subscribe_durable("full", DurableOptions::replay(StartPosition::Earliest))
            .await
            .expect("subscribe");
        for n in 0..stored {
            let message = sub.recv().await.expect("a stored message");
            assert_eq!((message.offset(), &message[..]), (n, payload(n).as_bytes()));
        }
        stored
    });
    assert!(
        stored > 10,
        "some messages were stored before the disk filled: {stored}"
    );

    // Room again: publishing goes on after the last stored message.
    disk.grow("4m");
    block_on(async {
        let client = Client::connect(&broker.socket).await.expect("connect");
        let offset = client
            .publish_durable("full", payload(stored).as_bytes())
            .await
            .expect("stored once there is room");
        assert_eq!(offset, stored);
    });
    broker.signal(nix::sys::signal::Signal::SIGTERM);
    let (status, log) = broker.wait();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("No space left on device"),
        "the broker logged why"
    );
}
