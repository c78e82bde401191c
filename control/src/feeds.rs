//! The feeds an appliance receives, and their live changes. A feed is added
//! to the poller (its own feed line) before the XDP program steers it and
//! before the group is joined, and removed in the reverse order, so that no
//! steered frame ever finds the poller not expecting it; a change that
//! fails half-way is undone.

use std::net::Ipv4Addr;

use ticklane_appliance::request::{Answer, Ask};
use ticklane_appliance::source::FeedChangeError;
use ticklane_appliance::source::steering::Subscriptions;
use ticklane_appliance::source::udp::FeedSocket;
use ticklane_capture::feed::Feed;

use crate::ControlError;
use crate::link::Link;
use crate::store::Store;

/// Receive buffer of a group membership socket (it is never read: on the
/// XDP path the frames are steered past it).
const MEMBERSHIP_BUFFER: usize = 64 << 10;

/// Receive buffer of a feed's socket on kernel sockets (as `ticklane run`
/// gives the feeds it starts with).
const KERNEL_BUFFER: usize = 8 << 20;

/// `GROUP:PORT` of a feed.
pub fn name(group: Ipv4Addr, port: u16) -> String {
    format!("{group}:{port}")
}

/// Parses `GROUP:PORT[@SOURCE]`, with errors that say what is wrong.
pub fn parse(text: &str) -> Result<Feed, ControlError> {
    let bad = |why: String| ControlError::InvalidArgument(why);
    let (gp, source) = match text.trim().split_once('@') {
        Some((gp, src)) => (gp, Some(src)),
        None => (text.trim(), None),
    };
    let (g, p) = gp.rsplit_once(':').ok_or_else(|| {
        bad(format!(
            "'{text}' is not GROUP:PORT[@SOURCE] (for example 239.1.1.1:26477)"
        ))
    })?;
    let group: Ipv4Addr = g
        .parse()
        .map_err(|_| bad(format!("'{g}' is not an IPv4 address")))?;
    if !group.is_multicast() {
        return Err(bad(format!(
            "{group} is not a multicast group (224.0.0.0/4): a feed is sent to a group"
        )));
    }
    let port: u16 = p
        .parse()
        .map_err(|_| bad(format!("'{p}' is not a port number (1-65535)")))?;
    if port == 0 {
        return Err(bad(
            "port 0 is not a feed port: give the feed's UDP port".into()
        ));
    }
    let source = source
        .map(|src| {
            let a: Ipv4Addr = src
                .parse()
                .map_err(|_| bad(format!("source '{src}' is not an IPv4 address")))?;
            if a.is_multicast() || a.is_broadcast() || a.is_unspecified() {
                return Err(bad(format!("source {a} is not a unicast address")));
            }
            Ok(a)
        })
        .transpose()?;
    Ok(Feed {
        group,
        port,
        source,
    })
}

/// A feed received now.
#[derive(Debug)]
pub struct Entry {
    /// The feed.
    pub feed: Feed,
    /// Its feed line in the poller.
    pub line: usize,
    /// Its group membership (dropping it leaves the group).
    membership: Option<FeedSocket>,
}

/// How the appliance's feeds can change while it runs.
#[derive(Debug)]
pub enum Steer {
    /// The XDP path: the subscription map steers a feed; the control plane
    /// owns the group memberships.
    Xdp(Subscriptions),
    /// Kernel UDP sockets: a feed's socket, opened and joined here, is
    /// handed to the poller, and handed back to be closed.
    Kernel,
    /// Fixed feeds (a capture, a benchmark).
    Fixed,
}

/// The feeds, and what changes them.
#[derive(Debug)]
pub struct Feeds {
    entries: Vec<Entry>,
    steer: Steer,
    ifindex: u32,
    store: Option<Store>,
}

impl Feeds {
    /// The feeds the appliance started with (line = position), with their
    /// group memberships when the control plane is to own them, changed
    /// as `steer` says on interface `ifindex`.
    pub fn new(initial: Vec<(Feed, Option<FeedSocket>)>, steer: Steer, ifindex: u32) -> Self {
        let entries = initial
            .into_iter()
            .enumerate()
            .map(|(line, (feed, membership))| Entry {
                feed,
                line,
                membership,
            })
            .collect();
        Self {
            entries,
            steer,
            ifindex,
            store: None,
        }
    }

    /// The store the live changes are recorded in, if any.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// Records the live changes in `store` from now on (see
    /// [`crate::store`]).
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// The feeds the store says were subscribed live (none without one).
    pub fn stored(&self) -> Result<Vec<String>, ControlError> {
        Ok(match &self.store {
            Some(store) => store.live_feeds()?,
            None => Vec::new(),
        })
    }

    /// The feeds, by line.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// The GROUP:PORT of feed line `line` (empty when none has it).
    pub fn name_of_line(&self, line: usize) -> String {
        self.entries
            .iter()
            .find(|e| e.line == line)
            .map(|e| name(e.feed.group, e.feed.port))
            .unwrap_or_default()
    }

    /// Receives `feed` from now on; returns its line.
    pub async fn subscribe(&mut self, link: &Link, feed: Feed) -> Result<usize, ControlError> {
        let label = name(feed.group, feed.port);
        if let Some(e) = self
            .entries
            .iter()
            .find(|e| (e.feed.group, e.feed.port) == (feed.group, feed.port))
        {
            return Err(ControlError::AlreadySubscribed {
                feed: label,
                line: e.line,
            });
        }
        let (line, membership) = match &mut self.steer {
            Steer::Fixed => {
                return Err(ControlError::feed_change(
                    label,
                    FeedChangeError::Unsupported,
                ));
            }
            Steer::Kernel => {
                let socket = FeedSocket::join(feed, self.ifindex, KERNEL_BUFFER)
                    .map_err(ControlError::Membership)?;
                (add(link, feed, Some(socket), &label).await?, None)
            }
            Steer::Xdp(subscriptions) => {
                let line = add(link, feed, None, &label).await?;
                let steered = subscriptions.insert(&feed).map_err(ControlError::from);
                let joined = steered.and_then(|()| {
                    FeedSocket::join(feed, self.ifindex, MEMBERSHIP_BUFFER)
                        .map_err(ControlError::Membership)
                });
                match joined {
                    Ok(membership) => (line, Some(membership)),
                    Err(e) => {
                        // Undo: not steered, not expected. Best effort; the
                        // first error is the one to report.
                        let _ = subscriptions.remove(&feed);
                        let _ = remove(link, feed.group, feed.port, &label).await;
                        return Err(e);
                    }
                }
            }
        };
        self.entries.push(Entry {
            feed,
            line,
            membership,
        });
        if let Some(store) = &self.store {
            store.add(&feed)?;
        }
        Ok(line)
    }

    /// Stops receiving the feed to `group:port`: its frames go back to the
    /// kernel; returns the line it had.
    pub async fn unsubscribe(
        &mut self,
        link: &Link,
        group: Ipv4Addr,
        port: u16,
    ) -> Result<usize, ControlError> {
        let label = name(group, port);
        let i = self
            .entries
            .iter()
            .position(|e| (e.feed.group, e.feed.port) == (group, port))
            .ok_or_else(|| ControlError::NotSubscribed(label.clone()))?;
        match &mut self.steer {
            Steer::Fixed => {
                return Err(ControlError::feed_change(
                    label,
                    FeedChangeError::Unsupported,
                ));
            }
            Steer::Kernel => {}
            // Not steered any more before the poller stops expecting it.
            Steer::Xdp(subscriptions) => subscriptions.remove(&self.entries[i].feed)?,
        }
        remove(link, group, port, &label).await?;
        let entry = self.entries.remove(i);
        // Leaves the group (on the XDP path; the poller's socket was
        // closed by `remove` on kernel sockets).
        drop(entry.membership);
        if let Some(store) = &self.store {
            store.remove(&entry.feed)?;
        }
        Ok(entry.line)
    }
}

/// Asks the poller to take `feed` (with its socket, on kernel sockets); a
/// socket it hands back is closed here, off the poller.
async fn add(
    link: &Link,
    feed: Feed,
    socket: Option<FeedSocket>,
    label: &str,
) -> Result<usize, ControlError> {
    match link.ask(Ask::AddFeed { feed, socket }).await? {
        Answer::FeedAdded { line, socket } => {
            drop(socket);
            line.map_err(|e| ControlError::feed_change(label.to_owned(), e))
        }
        _ => Err(ControlError::Stopping),
    }
}

/// Asks the poller to drop the feed to `group:port`; the socket it hands
/// back (kernel sockets) is closed here, which leaves the group.
async fn remove(
    link: &Link,
    group: Ipv4Addr,
    port: u16,
    label: &str,
) -> Result<usize, ControlError> {
    match link.ask(Ask::RemoveFeed { group, port }).await? {
        Answer::FeedRemoved { line, socket } => {
            drop(socket);
            line.map_err(|e| ControlError::feed_change(label.to_owned(), e))
        }
        _ => Err(ControlError::Stopping),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_are_parsed_with_errors_that_say_what_to_give() {
        let f = parse("239.1.2.3:26477@198.18.0.1").unwrap();
        assert_eq!(
            (f.group, f.port, f.source),
            (
                Ipv4Addr::new(239, 1, 2, 3),
                26477,
                Some(Ipv4Addr::new(198, 18, 0, 1))
            )
        );
        for (bad, says) in [
            ("10.0.0.1:5", "not a multicast group"),
            ("239.1.1.1:0", "port 0"),
            ("239.1.1.1", "GROUP:PORT"),
            ("239.1.1.1:x", "not a port"),
            ("nope:1", "not an IPv4"),
            ("239.1.1.1:1@239.2.2.2", "not a unicast"),
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }
}
