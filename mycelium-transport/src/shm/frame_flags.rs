//! [`FrameFlags`]: what a ring frame's `len` word says about its payload, beside its length.
//!
//! - Bit 31, [`FRAME_REFERENCE`]: the payload is a reference naming a payload segment, which
//!   holds the message.
//! - Bit 30, [`FRAME_ENVELOPE`]: the message (the frame's payload, or the referenced
//!   segment's bytes) begins with an envelope ([`crate::envelope`]); without it the message
//!   is plain payload, byte for byte as before the bit existed.
//! - Both come from shared memory, so a reader treats them as claims: a frame marked
//!   envelope whose envelope does not parse is the writer's protocol error, never a reason to
//!   trust its bytes (`docs/shm-layout.md`, Frames).
//! - Padding frames carry no flags: their `len` word is a length only.

use super::layout::{FRAME_ENVELOPE, FRAME_FLAGS_MASK, FRAME_REFERENCE};

/// The flag bits of a frame's `len` word ([`FRAME_REFERENCE`], [`FRAME_ENVELOPE`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FrameFlags(u32);

impl FrameFlags {
    /// A plain data frame: the payload is the message.
    pub const PLAIN: FrameFlags = FrameFlags(0);
    /// A reference frame ([`FRAME_REFERENCE`]).
    pub const REFERENCE: FrameFlags = FrameFlags(FRAME_REFERENCE);
    /// A message that begins with an envelope ([`FRAME_ENVELOPE`]).
    pub const ENVELOPE: FrameFlags = FrameFlags(FRAME_ENVELOPE);

    /// Flags with the reference bit `reference` and the envelope bit `envelope`.
    pub const fn new(reference: bool, envelope: bool) -> FrameFlags {
        let mut bits = 0;
        if reference {
            bits |= FRAME_REFERENCE;
        }
        if envelope {
            bits |= FRAME_ENVELOPE;
        }
        FrameFlags(bits)
    }

    /// The flags of a data frame's `len` word (the length bits ignored).
    pub(crate) const fn from_len_word(word: u32) -> FrameFlags {
        FrameFlags(word & FRAME_FLAGS_MASK)
    }

    /// The bits as they go into the `len` word.
    pub(crate) const fn bits(self) -> u32 {
        self.0
    }

    /// Whether the payload is a reference to a payload segment.
    pub const fn is_reference(self) -> bool {
        self.0 & FRAME_REFERENCE != 0
    }

    /// Whether the message begins with an envelope.
    pub const fn is_envelope(self) -> bool {
        self.0 & FRAME_ENVELOPE != 0
    }

    /// These flags with the envelope bit set to `envelope`.
    pub const fn with_envelope(self, envelope: bool) -> FrameFlags {
        FrameFlags::new(self.is_reference(), envelope)
    }

    /// These flags with the reference bit set to `reference`.
    pub const fn with_reference(self, reference: bool) -> FrameFlags {
        FrameFlags::new(reference, self.is_envelope())
    }
}

impl std::ops::BitOr for FrameFlags {
    type Output = FrameFlags;

    fn bitor(self, other: FrameFlags) -> FrameFlags {
        FrameFlags(self.0 | other.0)
    }
}
