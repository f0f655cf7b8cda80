//! The sleep and wake primitives of the wake protocol: futexes on 32-bit words inside the
//! ring's region (a consumer slot's `parked`, the header's `producer_parked`).
//!
//! - In the real build these are the `futex(2)` system calls: [`wait`] is `FUTEX_WAIT` (sleep
//!   while the word holds `expected`; the kernel checks and sleeps atomically with respect to
//!   [`wake`]), [`wake`] is `FUTEX_WAKE` of every waiter, and [`wait_any`] is
//!   `futex_waitv(2)` over several words (Linux 5.16+). None of them uses the `_PRIVATE`
//!   variants: the words live in `MAP_SHARED` memfd mappings, and the kernel must key the
//!   futex on the page (inode and offset), not on this process's address space, so that a
//!   process that only shares the mapping can wake us. (On a private heap region the shared
//!   variants still work; they are only slower to look up.)
//! - Under `--cfg loom` the futex is a loom `Mutex<()>` and `Condvar` held in the region
//!   (one for all its words, like a futex hash bucket): [`wait`] locks, returns if the word no
//!   longer holds `expected`, and otherwise waits on the condvar (until the word changes);
//!   [`wake`] locks and notifies all. This is the kernel's atomic check-and-sleep, so a lost wake-up leaves a thread
//!   blocked on the condvar after everyone else has finished, which loom reports as a
//!   deadlock. Loom has no clock: a timed wait there returns at once, as a timed wait may.
//!
//! A futex only says "look again": every caller re-checks the ring's positions after any
//! return, so timeouts, signals, a value that changed before the kernel looked (`EAGAIN`) and
//! spurious wakes by a hostile peer all return `Ok(())` and cost one loop, never a lost frame.

use std::io;
use std::time::Duration;

use super::region::RingRegion;
use super::sync::AtomicU32;

/// Most words one `futex_waitv` call takes (the kernel's `FUTEX_WAITV_MAX`).
#[cfg(not(loom))]
pub(crate) const FUTEX_WAITV_MAX: usize = 128;

/// Longest sleep of the fallback [`wait_any`] (more than [`FUTEX_WAITV_MAX`] words, or a
/// kernel without `futex_waitv`): it waits on the first word only, so it must come back soon
/// to let the caller re-check the others.
#[cfg(not(loom))]
pub(crate) const WAIT_ANY_FALLBACK_SLICE: Duration = Duration::from_millis(1);

/// Sleeps while `word` holds `expected`, until a [`wake`] of it, `timeout` (`None`: none), a
/// signal, or a spurious wake-up. Returns at once if `word` does not hold `expected`.
///
/// `region` is the region holding `word` (under loom it holds the model's futex).
///
/// # Errors
///
/// Only an unexpected error of the system call (`EFAULT`, `EINVAL`, `ENOSYS`): a timeout,
/// `EINTR` and `EAGAIN` are `Ok(())`, since the caller re-checks its condition anyway.
#[cfg(not(loom))]
pub(crate) fn wait(
    region: &RingRegion,
    word: &AtomicU32,
    expected: u32,
    timeout: Option<Duration>,
) -> io::Result<()> {
    let _ = region;
    futex_wait(word, expected, timeout)
}

/// Wakes every thread (of any process) sleeping in [`wait`] or [`wait_any`] on `word`.
///
/// # Errors
///
/// Only an unexpected error of the system call (`EFAULT`, `EINVAL`).
#[cfg(not(loom))]
pub(crate) fn wake(region: &RingRegion, word: &AtomicU32) -> io::Result<()> {
    let _ = region;
    // SAFETY: `word` is a live, 4-byte-aligned `AtomicU32` for the duration of the call (we
    // hold a reference to it); FUTEX_WAKE only uses its address as the futex key and reads
    // nothing else. The unused timeout, second address and value arguments are null/0, which
    // FUTEX_WAKE ignores.
    let woken = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if woken < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `FUTEX_WAIT` on `word` (shared, not private), with a relative timeout.
#[cfg(not(loom))]
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<()> {
    let timespec = timeout.map(|timeout| libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        // Below 10^9: fits every c_long.
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    });
    let timespec_ptr = timespec.as_ref().map_or(std::ptr::null(), |timespec| {
        timespec as *const libc::timespec
    });
    // SAFETY: `word` is a live, 4-byte-aligned `AtomicU32` for the duration of the call (we
    // hold a reference to it), which the kernel only reads (atomically, to compare it with
    // `expected`); `timespec_ptr` is null or points to `timespec`, a valid relative timeout
    // that outlives the call. The second address and the last value are unused by FUTEX_WAIT.
    let result = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            timespec_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if result < 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR | libc::ETIMEDOUT) => Ok(()),
            _ => Err(error),
        };
    }
    Ok(())
}

/// One entry of a `futex_waitv` call (the kernel's `struct futex_waitv`).
#[cfg(not(loom))]
#[repr(C)]
struct FutexWaitv {
    /// The value to compare the word with.
    val: u64,
    /// The word's address.
    uaddr: u64,
    /// `FUTEX2_SIZE_U32`; no `FUTEX2_PRIVATE`, the words are in shared mappings.
    flags: u32,
    /// Must be zero.
    reserved: u32,
}

/// `futex_waitv` flag: the word is 32 bits.
#[cfg(not(loom))]
const FUTEX2_SIZE_U32: u32 = 0x02;

/// The kernel's `struct __kernel_timespec` (64-bit seconds on every architecture), which
/// `futex_waitv` takes, whatever `libc::timespec` is.
#[cfg(not(loom))]
#[repr(C)]
struct KernelTimespec {
    tv_sec: i64,
    tv_nsec: i64,
}

/// Set once a `futex_waitv` returned `ENOSYS`, so later calls go straight to the fallback.
#[cfg(not(loom))]
static NO_FUTEX_WAITV: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sleeps until a [`wake`] of any of `words`, `timeout`, a signal or a spurious wake-up;
/// returns at once if any word does not hold `expected` (or if `words` is empty).
///
/// With more than [`FUTEX_WAITV_MAX`] words, or on a kernel without `futex_waitv`, it waits on
/// the first word only, for at most [`WAIT_ANY_FALLBACK_SLICE`]: the caller's loop re-checks
/// every ring at least that often.
///
/// # Errors
///
/// Only an unexpected error of the system call (as for [`wait`]).
#[cfg(not(loom))]
pub(crate) fn wait_any(
    words: &[&AtomicU32],
    expected: u32,
    timeout: Option<Duration>,
) -> io::Result<()> {
    let Some(first) = words.first() else {
        return Ok(());
    };
    let fallback = |timeout: Option<Duration>| {
        let slice = timeout.map_or(WAIT_ANY_FALLBACK_SLICE, |timeout| {
            timeout.min(WAIT_ANY_FALLBACK_SLICE)
        });
        futex_wait(first, expected, Some(slice))
    };
    // SYNC POINT: Relaxed; a process-local cache of "this kernel lacks futex_waitv", no data
    // depends on it.
    if words.len() > FUTEX_WAITV_MAX || NO_FUTEX_WAITV.load(std::sync::atomic::Ordering::Relaxed) {
        return fallback(timeout);
    }
    let mut waiters = [const {
        FutexWaitv {
            val: 0,
            uaddr: 0,
            flags: 0,
            reserved: 0,
        }
    }; FUTEX_WAITV_MAX];
    for (waiter, word) in waiters.iter_mut().zip(words) {
        *waiter = FutexWaitv {
            val: u64::from(expected),
            uaddr: word.as_ptr() as usize as u64,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        };
    }
    let deadline = match timeout {
        None => None,
        Some(timeout) => Some(monotonic_deadline(timeout)?),
    };
    let deadline_ptr = deadline.as_ref().map_or(std::ptr::null(), |deadline| {
        deadline as *const KernelTimespec
    });
    // SAFETY: `waiters[..words.len()]` are initialised entries whose addresses are live,
    // 4-byte-aligned `AtomicU32`s borrowed for the duration of the call (the kernel only reads
    // them, to compare with `val`); `words.len()` is 1..=FUTEX_WAITV_MAX (checked above);
    // `deadline_ptr` is null or points to `deadline`, an absolute CLOCK_MONOTONIC time that
    // outlives the call; the flags argument must be 0.
    let result = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            waiters.as_ptr(),
            words.len() as libc::c_uint,
            0 as libc::c_uint,
            deadline_ptr,
            libc::CLOCK_MONOTONIC,
        )
    };
    if result < 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR | libc::ETIMEDOUT) => Ok(()),
            Some(libc::ENOSYS) => {
                // SYNC POINT: Relaxed; see the load above.
                NO_FUTEX_WAITV.store(true, std::sync::atomic::Ordering::Relaxed);
                fallback(timeout)
            }
            _ => Err(error),
        };
    }
    Ok(())
}

/// The CLOCK_MONOTONIC time `timeout` from now (saturating), for `futex_waitv`.
#[cfg(not(loom))]
// `time_t` and `c_long` are `i64` on 64-bit Linux but `i32` on some 32-bit targets.
#[allow(clippy::useless_conversion)]
fn monotonic_deadline(timeout: Duration) -> io::Result<KernelTimespec> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let secs =
        i64::from(now.tv_sec).saturating_add(i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX));
    let nanos = i64::from(now.tv_nsec) + i64::from(timeout.subsec_nanos());
    Ok(if nanos >= 1_000_000_000 {
        KernelTimespec {
            tv_sec: secs.saturating_add(1),
            tv_nsec: nanos - 1_000_000_000,
        }
    } else {
        KernelTimespec {
            tv_sec: secs,
            tv_nsec: nanos,
        }
    })
}

/// The loom model of [`wait`] (see the module doc): check the word and sleep atomically with
/// respect to [`wake`], under the region's futex mutex.
///
/// One condvar serves every word of the region, so a waiter woken by a wake of another word
/// goes back to sleep while its own word still holds `expected`. Every waker in the ring
/// changes the word before it wakes it, so for this protocol that is what the kernel does;
/// and a wake of the wrong word shows as a deadlock instead of a lucky spurious return.
#[cfg(loom)]
pub(crate) fn wait(
    region: &RingRegion,
    word: &AtomicU32,
    expected: u32,
    timeout: Option<Duration>,
) -> io::Result<()> {
    use super::sync::Ordering;
    let (mutex, condvar) = region.futex();
    let mut guard = mutex
        .lock()
        .map_err(|_| io::Error::other("loom futex mutex poisoned"))?;
    // SYNC POINT: Relaxed under the futex mutex, as the kernel reads the word under its hash
    // bucket lock. A waker changes the word before it takes the mutex in `wake`, so if it
    // locked before us, the mutex's happens-before makes this load see the change; if after,
    // our condvar wait below has released the mutex and its notify reaches us.
    while word.load(Ordering::Relaxed) == expected {
        if timeout.is_some() {
            // Loom has no clock: a timed wait times out at once.
            return Ok(());
        }
        guard = condvar
            .wait(guard)
            .map_err(|_| io::Error::other("loom futex mutex poisoned"))?;
    }
    Ok(())
}

/// The loom model of [`wake`]: notify every waiter on the region's futex.
#[cfg(loom)]
pub(crate) fn wake(region: &RingRegion, word: &AtomicU32) -> io::Result<()> {
    let _ = word;
    let (mutex, condvar) = region.futex();
    let _guard = mutex
        .lock()
        .map_err(|_| io::Error::other("loom futex mutex poisoned"))?;
    condvar.notify_all();
    Ok(())
}
