//! Who may publish to and subscribe to a topic: the config's access lists resolved to
//! numeric ids, checked against the identity the kernel gives for a peer's socket.
//!
//! - [`TopicAcl::resolve`] turns `uid:`/`gid:` entries into ids, looking names up in the
//!   machine's user and group database (once, when a config is loaded or reloaded); a name
//!   that does not exist is an error naming the topic and the entry, so a typo never admits
//!   or refuses anyone silently.
//! - [`PeerIdentity`] is what `SO_PEERCRED` says of the peer (uid, primary gid, pid); the
//!   groups its user belongs to are looked up only when a list with `gid:` entries is
//!   checked, and then once per connection.
//! - An absent list admits everyone who could open the socket; an empty list admits nobody;
//!   root (uid 0) is checked like anyone else.
//!
//! ```
//! use mycelium_broker::core::acl::{Action, PeerIdentity, TopicAcl};
//! use mycelium_config::TopicDefaults;
//!
//! let mut config = TopicDefaults::default().topic("orders");
//! config.publish = Some(vec!["uid:1000".parse().unwrap()]);
//! let acl = TopicAcl::resolve(&config).unwrap();
//! let alice = PeerIdentity::new(1000, 1000, 42);
//! let bob = PeerIdentity::new(1001, 1001, 43);
//! assert!(acl.allows(Action::Publish, &alice));
//! assert!(!acl.allows(Action::Publish, &bob));
//! assert!(acl.allows(Action::Subscribe, &bob), "no subscribe list: everyone");
//! ```

use std::ffi::CString;
use std::sync::OnceLock;

use mycelium_config::{display_access, Principal, PrincipalId, TopicConfig};
use nix::unistd::{Gid, Group, Uid, User};

/// What a peer wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Publish (or advertise, or attach a shared-memory publisher).
    Publish,
    /// Subscribe (or consume a queue, or attach a shared-memory subscriber).
    Subscribe,
}

impl Action {
    /// The config key of the action's list.
    pub fn key(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
        }
    }
}

/// One resolved access list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Resolved {
    uids: Vec<u32>,
    gids: Vec<u32>,
    /// The list as written, for refusals.
    written: String,
}

/// A topic's access lists, resolved; `None`: no list, everyone may.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicAcl {
    publish: Option<Resolved>,
    subscribe: Option<Resolved>,
}

/// The identity of a connected peer, from `SO_PEERCRED`.
#[derive(Debug)]
pub struct PeerIdentity {
    /// The peer's effective uid.
    pub uid: u32,
    /// The peer's effective primary gid.
    pub gid: u32,
    /// The peer's pid (for logs; the process may be gone).
    pub pid: i32,
    /// Every group of the peer's user (primary gid included), looked up on first need.
    groups: OnceLock<Vec<u32>>,
}

impl PeerIdentity {
    /// A peer running as `uid`:`gid`.
    pub fn new(uid: u32, gid: u32, pid: i32) -> PeerIdentity {
        PeerIdentity {
            uid,
            gid,
            pid,
            groups: OnceLock::new(),
        }
    }

    /// The peer's groups: its primary gid and, if its uid names a user, every group that
    /// user belongs to. A blocking database lookup the first time (files or NSS), cached.
    fn groups(&self) -> &[u32] {
        self.groups.get_or_init(|| {
            let mut groups = vec![self.gid];
            let user = User::from_uid(Uid::from_raw(self.uid)).ok().flatten();
            if let Some(name) = user.and_then(|u| CString::new(u.name).ok()) {
                if let Ok(list) = nix::unistd::getgrouplist(&name, Gid::from_raw(self.gid)) {
                    groups.extend(list.into_iter().map(Gid::as_raw));
                }
            }
            groups.sort_unstable();
            groups.dedup();
            groups
        })
    }

    /// The peer as logs and refusals name it.
    pub fn describe(&self) -> String {
        format!("uid {} (gid {}, pid {})", self.uid, self.gid, self.pid)
    }
}

impl Resolved {
    fn resolve(topic: &str, key: &str, list: &[Principal]) -> Result<Resolved, String> {
        let mut resolved = Resolved {
            written: display_access(Some(list)),
            ..Resolved::default()
        };
        for entry in list {
            let unknown = |what: &str, name: &str| {
                format!(
                    "topic '{topic}': {key} entry `{entry}`: no {what} named `{name}` on this machine"
                )
            };
            match entry {
                Principal::User(PrincipalId::Num(uid)) => resolved.uids.push(*uid),
                Principal::Group(PrincipalId::Num(gid)) => resolved.gids.push(*gid),
                Principal::User(PrincipalId::Name(name)) => match User::from_name(name) {
                    Ok(Some(user)) => resolved.uids.push(user.uid.as_raw()),
                    _ => return Err(unknown("user", name)),
                },
                Principal::Group(PrincipalId::Name(name)) => match Group::from_name(name) {
                    Ok(Some(group)) => resolved.gids.push(group.gid.as_raw()),
                    _ => return Err(unknown("group", name)),
                },
            }
        }
        Ok(resolved)
    }

    fn admits(&self, peer: &PeerIdentity) -> bool {
        if self.uids.contains(&peer.uid) || self.gids.contains(&peer.gid) {
            return true;
        }
        !self.gids.is_empty() && peer.groups().iter().any(|g| self.gids.contains(g))
    }
}

impl TopicAcl {
    /// Lists that admit nobody: what a topic gets when its lists cannot be resolved (never
    /// silently everyone).
    pub fn deny_all() -> TopicAcl {
        let nobody = Some(Resolved {
            written: "(unresolvable)".to_owned(),
            ..Resolved::default()
        });
        TopicAcl {
            publish: nobody.clone(),
            subscribe: nobody,
        }
    }

    /// Resolves the lists of every topic of `config` and of its `[topic_defaults]`: the
    /// problems found, one line each (empty when all resolve). Checked before a config is
    /// put in force, at start-up and on every reload.
    pub fn check_all(config: &mycelium_config::BrokerConfig) -> Vec<String> {
        let defaults = config.topic_defaults.topic("[topic_defaults]");
        config
            .topics
            .iter()
            .chain(std::iter::once(&defaults))
            .filter_map(|topic| TopicAcl::resolve(topic).err())
            .collect()
    }

    /// The topic's lists with every name looked up; an error names the topic, the list and
    /// the entry that names nobody.
    pub fn resolve(config: &TopicConfig) -> Result<TopicAcl, String> {
        let list = |key, list: &Option<Vec<Principal>>| {
            list.as_deref()
                .map(|entries| Resolved::resolve(&config.name, key, entries))
                .transpose()
        };
        Ok(TopicAcl {
            publish: list("publish", &config.publish)?,
            subscribe: list("subscribe", &config.subscribe)?,
        })
    }

    /// Whether `peer` may do `action`.
    pub fn allows(&self, action: Action, peer: &PeerIdentity) -> bool {
        let list = match action {
            Action::Publish => &self.publish,
            Action::Subscribe => &self.subscribe,
        };
        list.as_ref().is_none_or(|list| list.admits(peer))
    }

    /// Why `peer` may not do `action` on `topic`, for its refusal.
    pub fn refusal(&self, action: Action, topic: &str, peer: &PeerIdentity) -> String {
        let list = match action {
            Action::Publish => &self.publish,
            Action::Subscribe => &self.subscribe,
        };
        let written = list.as_ref().map_or("everyone", |l| l.written.as_str());
        format!(
            "permission denied: {} may not {} topic '{topic}' ({} = {written})",
            peer.describe(),
            match action {
                Action::Publish => "publish to",
                Action::Subscribe => "subscribe to",
            },
            action.key(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mycelium_config::TopicDefaults;

    fn acl(publish: Option<&[&str]>, subscribe: Option<&[&str]>) -> Result<TopicAcl, String> {
        let mut config = TopicDefaults::default().topic("t");
        let parse = |list: &[&str]| {
            list.iter()
                .map(|p| p.parse().expect("principal"))
                .collect::<Vec<_>>()
        };
        config.publish = publish.map(parse);
        config.subscribe = subscribe.map(parse);
        TopicAcl::resolve(&config)
    }

    #[test]
    fn absent_lists_admit_everyone_and_empty_lists_nobody() {
        let open = acl(None, Some(&[])).expect("resolves");
        let root = PeerIdentity::new(0, 0, 1);
        assert!(open.allows(Action::Publish, &root));
        assert!(
            !open.allows(Action::Subscribe, &root),
            "root is not special"
        );
    }

    #[test]
    fn uid_and_primary_gid_entries_admit_their_peers_only() {
        let lists = acl(Some(&["uid:1000", "gid:2000"]), None).expect("resolves");
        assert!(lists.allows(Action::Publish, &PeerIdentity::new(1000, 1, 1)));
        assert!(lists.allows(Action::Publish, &PeerIdentity::new(55_555, 2000, 1)));
        assert!(!lists.allows(Action::Publish, &PeerIdentity::new(55_555, 55_555, 1)));
    }

    #[test]
    fn names_resolve_through_the_user_database() {
        // Every Linux machine has root (uid 0, group root gid 0).
        let lists = acl(Some(&["uid:root"]), Some(&["gid:root"])).expect("root exists");
        assert!(lists.allows(Action::Publish, &PeerIdentity::new(0, 0, 1)));
        assert!(lists.allows(Action::Subscribe, &PeerIdentity::new(55_555, 0, 1)));
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_the_topic_and_entry() {
        let error = acl(Some(&["gid:no-such-group-mycelium"]), None).unwrap_err();
        assert_eq!(
            error,
            "topic 't': publish entry `gid:no-such-group-mycelium`: no group named \
             `no-such-group-mycelium` on this machine"
        );
    }

    #[test]
    fn a_refusal_names_the_peer_the_topic_and_the_list() {
        let lists = acl(None, Some(&["uid:7"])).expect("resolves");
        let peer = PeerIdentity::new(8, 9, 10);
        assert_eq!(
            lists.refusal(Action::Subscribe, "t", &peer),
            "permission denied: uid 8 (gid 9, pid 10) may not subscribe to topic 't' \
             (subscribe = [\"uid:7\"])"
        );
    }
}
