//! Reply inbox names: `_INBOX.` followed by the owning client's id, the one topic a requester
//! reads its replies on (`docs/protocol.md` §7.10).
//!
//! - [`inbox_name`] writes the id as 22 base64url characters (RFC 4648 §5, no padding): a
//!   29-byte name, so a request's envelope (flags, `STAMP`, `REPLY_TO`) is 55 bytes and a
//!   64-byte request fits a two-cache-line ring frame. The 32-hex-digit form (protocol 2 as
//!   first published, 39 bytes) made it three lines, one more line to move between cores per
//!   request.
//! - [`inbox_owner`] reads either form, so a peer that names its inbox in hex keeps working.
//!   Anything else after the prefix (a wrong length, a character outside the form's alphabet,
//!   base64url whose last character carries bits beyond the 128th) owns nothing.

use uuid::Uuid;

/// The prefix of reply inboxes (`_INBOX.<client id>`).
pub const INBOX_PREFIX: &str = "_INBOX.";

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Characters of a client id in base64url without padding: ceil(128 / 6).
const BASE64_ID_LEN: usize = 22;
/// Characters of a client id in hex.
const HEX_ID_LEN: usize = 32;

/// The inbox of the client whose handshake said `client_id`: `_INBOX.` and the id in
/// base64url (22 characters).
pub fn inbox_name(client_id: Uuid) -> String {
    let mut name = String::with_capacity(INBOX_PREFIX.len() + BASE64_ID_LEN);
    name.push_str(INBOX_PREFIX);
    let bytes = client_id.as_bytes();
    // Five whole 3-byte groups make 20 characters; the 16th byte makes the last two, the
    // second with 4 zero bits below its 2 (RFC 4648 without padding).
    for group in bytes[..15].chunks_exact(3) {
        let bits = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
        for shift in [18, 12, 6, 0] {
            name.push(char::from(BASE64URL[(bits >> shift) as usize & 0x3f]));
        }
    }
    let last = bytes[15];
    name.push(char::from(BASE64URL[usize::from(last >> 2)]));
    name.push(char::from(BASE64URL[usize::from(last & 0x3) << 4]));
    name
}

/// Whether `name` is a reply inbox's (it starts with [`INBOX_PREFIX`] and goes on).
pub fn is_inbox(name: &str) -> bool {
    name.len() > INBOX_PREFIX.len() && name.starts_with(INBOX_PREFIX)
}

/// The client id whose inbox `name` is, in either form: 22 base64url characters (what
/// [`inbox_name`] writes) or 32 hex digits (lower or upper case).
pub fn inbox_owner(name: &str) -> Option<Uuid> {
    let id = name.strip_prefix(INBOX_PREFIX)?.as_bytes();
    match id.len() {
        BASE64_ID_LEN => {
            let mut bytes = [0u8; 16];
            let mut digits = [0u8; BASE64_ID_LEN];
            for (digit, &byte) in digits.iter_mut().zip(id) {
                *digit = base64url_value(byte)?;
            }
            for (group, out) in digits[..20]
                .chunks_exact(4)
                .zip(bytes[..15].chunks_exact_mut(3))
            {
                let bits = group
                    .iter()
                    .fold(0u32, |bits, &digit| bits << 6 | u32::from(digit));
                out.copy_from_slice(&bits.to_be_bytes()[1..]);
            }
            // The last character carries 2 bits of the 16th byte over 4 zero bits: any other
            // value would name bits beyond the 128.
            if digits[21] & 0xf != 0 {
                return None;
            }
            bytes[15] = digits[20] << 2 | digits[21] >> 4;
            Some(Uuid::from_bytes(bytes))
        }
        HEX_ID_LEN => {
            let mut value: u128 = 0;
            for &byte in id {
                let nibble = char::from(byte).to_digit(16)?;
                value = (value << 4) | u128::from(nibble);
            }
            Some(Uuid::from_u128(value))
        }
        _ => None,
    }
}

fn base64url_value(byte: u8) -> Option<u8> {
    Some(match byte {
        b'A'..=b'Z' => byte - b'A',
        b'a'..=b'z' => byte - b'a' + 26,
        b'0'..=b'9' => byte - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_29_bytes_and_names_its_owner() {
        for id in [
            Uuid::nil(),
            Uuid::max(),
            Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff),
            Uuid::new_v4(),
        ] {
            let name = inbox_name(id);
            assert_eq!(name.len(), 29, "{name}");
            assert!(is_inbox(&name));
            assert_eq!(inbox_owner(&name), Some(id), "{name}");
            // The hex form names the same owner.
            assert_eq!(inbox_owner(&format!("_INBOX.{}", id.simple())), Some(id));
        }
    }

    #[test]
    fn the_base64url_form_matches_rfc_4648() {
        // base64url of the 16 bytes 00 11 22 .. ff, without padding.
        let id = Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff);
        assert_eq!(inbox_name(id), "_INBOX.ABEiM0RVZneImaq7zN3u_w");
        assert_eq!(inbox_name(Uuid::max()), "_INBOX._____________________w");
    }

    #[test]
    fn other_names_own_nothing() {
        for name in [
            "_INBOX.",
            "_INBOX.abc",
            "orders",
            "_INBOX.ABEiM0RVZneImaq7zN3u_",    // 21 characters
            "_INBOX.ABEiM0RVZneImaq7zN3u_w.x", // longer
            "_INBOX.ABEiM0RVZneImaq7zN3u_x",   // last digit beyond the 128 bits
            "_INBOX.ABEiM0RVZneImaq7zN3u+w",   // '+' is plain base64's
            "_INBOX.00112233445566778899aabbccddeefg",
            "_inbox.ABEiM0RVZneImaq7zN3u_w",
        ] {
            assert_eq!(inbox_owner(name), None, "{name}");
        }
        assert_eq!(
            inbox_owner("_INBOX.00112233445566778899AABBCCDDEEFF"),
            Some(Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff))
        );
    }
}
