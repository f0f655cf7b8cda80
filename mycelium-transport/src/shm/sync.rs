//! The atomics the ring uses: `std`'s normally, `loom`'s when built with `--cfg loom`.
//!
//! Every atomic in `shm` comes from here, so the same ring code runs under the loom model
//! checker (which needs its own atomic types to explore interleavings) and in production.
//! Under loom the futex is modelled by a mutex and condvar (see `wake.rs`), also from here.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
