//! The asymmetric barrier of the wake protocol: producers publish with no fence of their
//! own, and a consumer about to sleep makes every producer's CPU execute one for them
//! (`membarrier(2)`, `MEMBARRIER_CMD_GLOBAL_EXPEDITED`).
//!
//! The wake protocol is a Dekker pair: the producer stores `write_pos` then loads
//! `parked_consumers`; a consumer raises `parked_consumers` then loads `write_pos`. Each side
//! needs a full barrier between its store and its load, or both could read the old values (a
//! lost wake-up). The producer publishes millions of times a second and a consumer parks at
//! most once per spin (tens of microseconds), so the cost belongs on the consumer's side:
//!
//! - [`register_light_barrier`]: a producer's process registers once
//!   (`MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`). A registered producer then needs only a
//!   compiler fence between its store and its load ([`RingProducer`]).
//! - [`heavy_barrier`]: a parking consumer, after raising its flags and before re-checking
//!   `write_pos`, asks the kernel to run a full memory barrier on every CPU that is running a
//!   thread of a registered process. When it returns, a producer that had stored `write_pos`
//!   has its store visible to us, and one that had not yet loaded `parked_consumers` will see
//!   our flags (the IPI's barrier orders its store before that load). Those are the two halves
//!   of Dekker's argument; a producer not running holds no pending stores (a context switch
//!   is a full barrier).
//! - Where the kernel lacks the command (or a sandbox forbids it), producers keep their fence
//!   ([`register_light_barrier`] is `false`), and consumers, which cannot tell whether their
//!   producer registered, never sleep longer than [`UNFENCED_NAP`] at a time.
//!
//! Under loom no producer registers (loom cannot model another CPU's barrier), so the models
//! check the fenced protocol; the argument above is the one `liburcu` and folly's
//! `asymmetricHeavyBarrier` rest on.
//!
//! [`RingProducer`]: super::RingProducer

use std::time::Duration;

/// Longest sleep of a consumer whose [`heavy_barrier`] failed: its producer may publish with
/// no fence and miss its flag, so it looks again at least this often.
pub const UNFENCED_NAP: Duration = Duration::from_millis(1);

#[cfg(not(loom))]
mod imp {
    use std::sync::OnceLock;

    /// `membarrier(2)` commands (`linux/membarrier.h`).
    const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
    const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
    const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

    /// `membarrier(cmd, 0, 0)`: the command's result, or -1 with `errno` set.
    fn membarrier(cmd: libc::c_int) -> libc::c_long {
        // SAFETY: membarrier takes two integers besides the command (flags 0, cpu_id unused
        // without MEMBARRIER_CMD_FLAG_CPU) and touches no memory of ours; any command it does
        // not know fails with EINVAL.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_uint,
                0 as libc::c_int,
            )
        }
    }

    /// Whether the kernel offers both global expedited commands (asked once per process).
    fn supported() -> bool {
        static SUPPORTED: OnceLock<bool> = OnceLock::new();
        *SUPPORTED.get_or_init(|| {
            let commands = membarrier(MEMBARRIER_CMD_QUERY);
            let needed = libc::c_long::from(
                MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
            );
            commands >= 0 && commands & needed == needed
        })
    }

    pub(super) fn register_light_barrier() -> bool {
        static REGISTERED: OnceLock<bool> = OnceLock::new();
        *REGISTERED.get_or_init(|| {
            supported() && membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0
        })
    }

    pub(super) fn heavy_barrier() -> bool {
        supported() && membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0
    }
}

#[cfg(loom)]
mod imp {
    pub(super) fn register_light_barrier() -> bool {
        false
    }

    pub(super) fn heavy_barrier() -> bool {
        true
    }
}

/// Registers this process for [`heavy_barrier`]s issued by consumers (once per process; later
/// calls return the first answer). `true`: this process's producers may publish with a
/// compiler fence only. `false`: they must fence.
pub(crate) fn register_light_barrier() -> bool {
    imp::register_light_barrier()
}

/// Runs a full memory barrier on every CPU running a thread of a registered process (see the
/// module docs). `false` if the kernel refused: the caller then sleeps at most
/// [`UNFENCED_NAP`] at a time.
pub(crate) fn heavy_barrier() -> bool {
    imp::heavy_barrier()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_registered_process_can_also_issue_the_heavy_barrier() {
        // Machines without membarrier (old kernels, some sandboxes) register nothing; where
        // registration works, the heavy barrier must work too, or consumers would nap.
        if register_light_barrier() {
            assert!(heavy_barrier());
            assert!(register_light_barrier(), "the answer is kept");
        }
    }
}
