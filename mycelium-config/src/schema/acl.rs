//! Per-topic access lists: who may publish to a topic and who may subscribe to it, by the
//! peer's user or group as the kernel reports it for the Unix socket (`SO_PEERCRED`).
//!
//! - A list is written `publish = ["uid:1000", "gid:trading", "uid:alice"]`: each entry is
//!   `uid:` or `gid:` followed by a numeric id or a user or group name. Names are resolved by
//!   the broker (against the machine's user and group database) when it loads the config.
//! - An absent list admits every local user who can open the socket (its `socket_mode`
//!   decides that); an empty list admits nobody.
//! - `gid:` matches the peer's primary group and every group its user belongs to.
//!
//! ```
//! use mycelium_config::{Principal, PrincipalId};
//!
//! let p: Principal = "gid:trading".parse().unwrap();
//! assert_eq!(p, Principal::Group(PrincipalId::Name("trading".into())));
//! assert_eq!("uid:1000".parse::<Principal>().unwrap().to_string(), "uid:1000");
//! assert!("user:1000".parse::<Principal>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// A user or group id, by number or by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PrincipalId {
    /// A numeric uid or gid.
    Num(u32),
    /// A user or group name, resolved by the broker.
    Name(String),
}

/// One entry of an access list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// `uid:…`: peers running as this user.
    User(PrincipalId),
    /// `gid:…`: peers whose primary group is this one, or whose user belongs to it.
    Group(PrincipalId),
}

/// An access-list entry that is not `uid:…` or `gid:…` with a valid id or name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePrincipalError {
    input: String,
}

impl fmt::Display for ParsePrincipalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid access-list entry `{}`, expected `uid:<id or user name>` or \
             `gid:<id or group name>`",
            self.input
        )
    }
}

impl std::error::Error for ParsePrincipalError {}

/// Longest user or group name accepted (Linux allows 32).
const MAX_NAME_LEN: usize = 64;

impl FromStr for PrincipalId {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
            return s.parse().map(PrincipalId::Num).map_err(|_| ());
        }
        let valid = !s.is_empty()
            && s.len() <= MAX_NAME_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if valid {
            Ok(PrincipalId::Name(s.to_owned()))
        } else {
            Err(())
        }
    }
}

impl fmt::Display for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrincipalId::Num(n) => write!(f, "{n}"),
            PrincipalId::Name(name) => f.write_str(name),
        }
    }
}

impl FromStr for Principal {
    type Err = ParsePrincipalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || ParsePrincipalError {
            input: s.to_owned(),
        };
        let (kind, id) = s.split_once(':').ok_or_else(error)?;
        let id: PrincipalId = id.parse().map_err(|()| error())?;
        match kind {
            "uid" => Ok(Principal::User(id)),
            "gid" => Ok(Principal::Group(id)),
            _ => Err(error()),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::User(id) => write!(f, "uid:{id}"),
            Principal::Group(id) => write!(f, "gid:{id}"),
        }
    }
}

impl<'de> Deserialize<'de> for Principal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An access list as written in TOML, for messages and the reload summary:
/// `["uid:1000", "gid:trading"]`, or `everyone` when absent.
pub fn display_access(list: Option<&[Principal]>) -> String {
    match list {
        None => "everyone".to_owned(),
        Some(entries) => {
            let quoted: Vec<String> = entries.iter().map(|p| format!("\"{p}\"")).collect();
            format!("[{}]", quoted.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_and_gid_take_numbers_or_names() {
        assert_eq!("uid:0".parse(), Ok(Principal::User(PrincipalId::Num(0))));
        assert_eq!(
            "uid:alice".parse(),
            Ok(Principal::User(PrincipalId::Name("alice".into())))
        );
        assert_eq!(
            "gid:4294967295".parse(),
            Ok(Principal::Group(PrincipalId::Num(u32::MAX)))
        );
    }

    #[test]
    fn other_forms_are_refused_with_the_expected_form() {
        for bad in [
            "",
            "uid",
            "uid:",
            "gid: x",
            "user:1",
            "uid:4294967296",
            "uid:a b",
            "UID:1",
            "gid:ü",
        ] {
            let err = bad.parse::<Principal>().unwrap_err();
            assert!(err.to_string().contains("expected `uid:"), "{bad}: {err}");
        }
    }

    #[test]
    fn display_round_trips_and_lists_render_as_toml() {
        for text in ["uid:1000", "gid:trading", "uid:svc-md.1"] {
            assert_eq!(text.parse::<Principal>().unwrap().to_string(), text);
        }
        let list = ["uid:1".parse().unwrap(), "gid:ops".parse().unwrap()];
        assert_eq!(display_access(Some(&list)), r#"["uid:1", "gid:ops"]"#);
        assert_eq!(display_access(Some(&[])), "[]");
        assert_eq!(display_access(None), "everyone");
    }
}
