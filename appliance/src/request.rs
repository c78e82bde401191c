//! The request ring: how the slow path (the control plane, on threads of its
//! own) asks a poller for what only the poller may touch, a book snapshot or
//! a feed added or removed, without ever making it wait.
//!
//! Requests go through a bounded lock-free SPSC ring (`rtrb`). The poller
//! serves at most [`REQUESTS_PER_POLL`] of them after each poll of its
//! source, between batches of packets, each with bounded work (a snapshot
//! copies at most the levels its reply has room for), and hands the answer
//! back on a second ring. The memory an answer needs comes with the request
//! (the asker sizes a [`BookSnapshot`], opens a kernel socket) and goes
//! back with the answer: the poller allocates nothing, frees nothing, makes
//! no syscall, closes no socket and takes no lock for a request.
//!
//! At most [`RING_SLOTS`] requests are outstanding at once ([`Requester`]
//! refuses more), and the answer ring has as many slots: an answer always
//! finds room, so the poller never waits and never drops one.

use std::net::Ipv4Addr;

use rtrb::{Consumer, Producer, RingBuffer};
use ticklane_capture::feed::Feed;
use ticklane_protocols::moldudp64::Session;

use crate::book::Level;
use crate::source::FeedChangeError;
use crate::source::udp::FeedSocket;

/// Slots of each ring: the requests outstanding at most.
pub const RING_SLOTS: usize = 64;

/// Requests a poller serves after one poll of its source, at most.
pub const REQUESTS_PER_POLL: usize = 16;

/// Which stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stock {
    /// By its stock locate code.
    Locate(u16),
    /// By its symbol, space-padded to 8 bytes as ITCH carries it.
    Symbol([u8; 8]),
}

impl Stock {
    /// A symbol (`AAPL`) as ITCH carries it; `None` when it is empty, longer
    /// than 8 bytes, or not printable ASCII.
    pub fn symbol(name: &str) -> Option<Self> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > 8 || !bytes.iter().all(u8::is_ascii_graphic) {
            return None;
        }
        let mut padded = [b' '; 8];
        padded[..bytes.len()].copy_from_slice(bytes);
        Some(Self::Symbol(padded))
    }
}

/// A consistent snapshot of one stock's book, taken between two packets.
/// Its vectors are sized by the asker and filled by the poller within their
/// capacity: a side deeper than that is cut, and its full depth told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BookSnapshot {
    /// False when no book has this stock (never named, never traded).
    pub found: bool,
    /// Its locate code.
    pub locate: u16,
    /// Its symbol, space-padded.
    pub symbol: [u8; 8],
    /// Session of the last message applied before the snapshot.
    pub session: Session,
    /// Sequence number of that message (0: none yet).
    pub seq: u64,
    /// A session had a hole open: the books may be wrong until it closes.
    pub stale: bool,
    /// Best bids first, at most the capacity the asker gave.
    pub bids: Vec<Level>,
    /// Best asks first, at most the capacity the asker gave.
    pub asks: Vec<Level>,
    /// Levels the bid side has in all.
    pub bid_depth: usize,
    /// Levels the ask side has in all.
    pub ask_depth: usize,
}

impl BookSnapshot {
    /// An empty snapshot with room for `depth` levels per side (allocated
    /// here, on the asker's thread).
    pub fn with_depth(depth: usize) -> Box<Self> {
        Box::new(Self {
            bids: Vec::with_capacity(depth),
            asks: Vec::with_capacity(depth),
            ..Self::default()
        })
    }

    /// The symbol without its padding.
    pub fn symbol(&self) -> &[u8] {
        let end = self
            .symbol
            .iter()
            .rposition(|&b| b != b' ')
            .map_or(0, |i| i + 1);
        &self.symbol[..end]
    }

    /// True when a side had more levels than the snapshot had room for.
    pub fn is_cut(&self) -> bool {
        self.bids.len() < self.bid_depth || self.asks.len() < self.ask_depth
    }

    /// Fills the snapshot from a book: its best levels, as many as there
    /// is room for; never allocates.
    pub(crate) fn fill(&mut self, locate: u16, book: crate::book::BookView<'_>) {
        self.found = true;
        self.locate = locate;
        self.symbol = book.stock().0;
        let room = self.bids.capacity();
        self.bids.clear();
        self.bids.extend(book.bids().take(room));
        let room = self.asks.capacity();
        self.asks.clear();
        self.asks.extend(book.asks().take(room));
        (self.bid_depth, self.ask_depth) = book.depth();
    }
}

/// What the slow path asks of a poller.
#[derive(Debug)]
pub enum Ask {
    /// A snapshot of one stock's book, written into `into`.
    Book {
        /// The stock.
        stock: Stock,
        /// Where to write it.
        into: Box<BookSnapshot>,
    },
    /// Take this feed's datagrams from now on (its own feed line).
    AddFeed {
        /// The feed.
        feed: Feed,
        /// Its socket, opened and joined by the asker, for a source that
        /// receives through kernel sockets (handed back if not taken).
        socket: Option<FeedSocket>,
    },
    /// Stop taking the datagrams to this group and port.
    RemoveFeed {
        /// The group.
        group: Ipv4Addr,
        /// The port.
        port: u16,
    },
}

/// What the poller answered.
#[derive(Debug)]
pub enum Answer {
    /// The snapshot (its `found` says whether the stock has a book).
    Book(Box<BookSnapshot>),
    /// The feed line the feed was given.
    FeedAdded {
        /// The line, or why not.
        line: Result<usize, FeedChangeError>,
        /// The socket sent, when the source did not take it.
        socket: Option<FeedSocket>,
    },
    /// The feed line the feed had.
    FeedRemoved {
        /// The line, or why not.
        line: Result<usize, FeedChangeError>,
        /// The feed's socket, when the source had one: close it off the
        /// poller.
        socket: Option<FeedSocket>,
    },
}

/// The slow path's end: sends requests, receives answers, tagged by an id.
#[derive(Debug)]
pub struct Requester {
    requests: Producer<(u64, Ask)>,
    answers: Consumer<(u64, Answer)>,
    outstanding: usize,
    next_id: u64,
}

impl Requester {
    /// Sends a request; returns its id, or the request back when
    /// [`RING_SLOTS`] are outstanding already (try again after an answer).
    pub fn send(&mut self, ask: Ask) -> Result<u64, Ask> {
        if self.outstanding >= RING_SLOTS {
            return Err(ask);
        }
        let id = self.next_id;
        match self.requests.push((id, ask)) {
            Ok(()) => {
                self.next_id += 1;
                self.outstanding += 1;
                Ok(id)
            }
            Err(rtrb::PushError::Full((_, ask))) => Err(ask),
        }
    }

    /// An answer, if one is there: (the id its request got, the answer).
    pub fn receive(&mut self) -> Option<(u64, Answer)> {
        let answer = self.answers.pop().ok()?;
        self.outstanding -= 1;
        Some(answer)
    }

    /// Requests sent and not answered yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// True when the poller is gone (it will answer nothing more).
    pub fn is_abandoned(&self) -> bool {
        self.requests.is_abandoned()
    }
}

/// The poller's end (see [`crate::poller::Poller::serve`]).
#[derive(Debug)]
pub struct RequestServer {
    requests: Consumer<(u64, Ask)>,
    answers: Producer<(u64, Answer)>,
}

impl RequestServer {
    /// Serves up to [`REQUESTS_PER_POLL`] requests with `answer`.
    #[inline]
    pub(crate) fn serve(&mut self, mut answer: impl FnMut(Ask) -> Answer) {
        for _ in 0..REQUESTS_PER_POLL {
            let Ok((id, ask)) = self.requests.pop() else {
                return;
            };
            // Never full: the requester keeps at most RING_SLOTS requests
            // outstanding, and this ring has RING_SLOTS slots.
            let pushed = self.answers.push((id, answer(ask)));
            debug_assert!(pushed.is_ok(), "the answer ring has room by construction");
        }
    }
}

/// The two ends of the request and answer rings.
pub fn ring() -> (Requester, RequestServer) {
    let (requests, requests_rx) = RingBuffer::new(RING_SLOTS);
    let (answers_tx, answers) = RingBuffer::new(RING_SLOTS);
    (
        Requester {
            requests,
            answers,
            outstanding: 0,
            next_id: 0,
        },
        RequestServer {
            requests: requests_rx,
            answers: answers_tx,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_ring_slots_are_outstanding_and_each_is_answered() {
        let (mut requester, mut server) = ring();
        let ask = || Ask::RemoveFeed {
            group: Ipv4Addr::new(239, 1, 1, 1),
            port: 1,
        };
        for i in 0..RING_SLOTS {
            assert_eq!(requester.send(ask()).ok(), Some(i as u64));
        }
        assert!(requester.send(ask()).is_err(), "the requester's bound");
        let mut served = 0;
        while requester.outstanding() > 0 {
            server.serve(|_| {
                served += 1;
                Answer::FeedRemoved {
                    line: Err(FeedChangeError::NotSubscribed),
                    socket: None,
                }
            });
            while let Some((id, _)) = requester.receive() {
                assert!(id < RING_SLOTS as u64);
            }
        }
        assert_eq!(served, RING_SLOTS);
        assert!(requester.send(ask()).is_ok(), "room again");
    }

    #[test]
    fn symbols_are_padded_and_checked() {
        assert_eq!(Stock::symbol("AAPL"), Some(Stock::Symbol(*b"AAPL    ")));
        assert_eq!(Stock::symbol("ABCDEFGHI"), None);
        assert_eq!(Stock::symbol(""), None);
        assert_eq!(Stock::symbol("A B"), None);
        assert_eq!(Stock::symbol("\u{e9}"), None);
    }

    #[test]
    fn a_snapshot_is_cut_to_its_room_and_says_so() {
        let mut books = crate::book::Books::new(16);
        let stock = ticklane_protocols::itch::Alpha(*b"ZVZZT   ");
        for (i, price) in [100, 101, 102].into_iter().enumerate() {
            books.add(
                crate::book::Order {
                    reference: i as u64 + 1,
                    price,
                    shares: 10,
                    locate: 7,
                    side: b'B',
                },
                stock,
            );
        }
        let mut snap = BookSnapshot::with_depth(2);
        snap.fill(7, books.book(7).unwrap());
        assert!(snap.found && snap.is_cut());
        assert_eq!(snap.symbol(), b"ZVZZT");
        assert_eq!(
            snap.bids.iter().map(|l| l.price).collect::<Vec<_>>(),
            [102, 101]
        );
        assert_eq!((snap.bid_depth, snap.ask_depth), (3, 0));
    }
}
