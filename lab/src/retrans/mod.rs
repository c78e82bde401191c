//! A MoldUDP64 re-request server answering from a capture: for labs, tests
//! and demos, safe to expose on a shared network.
//!
//! It loads the messages of one session from a capture ([`RetransStore`])
//! and answers each request packet with ordinary downstream packets carrying
//! those messages. Before anything is sent, a [`Server`] checks, in order:
//!
//! 1. the sender is on the [`Allowlist`] (else [`Reason::Unlisted`]: never
//!    answered, so the server cannot be used to reflect traffic at anyone
//!    else);
//! 2. the request is well formed and names messages held
//!    ([`Reason::Malformed`], [`Reason::WrongSession`], [`Reason::OutOfRange`],
//!    [`Reason::TooLarge`]);
//! 3. the sender has a slot in the fixed-size [`ClientTable`]
//!    ([`Reason::TooManyClients`]) and bytes left in its [`TokenBucket`]
//!    ([`Reason::RateLimited`]).
//!
//! An answer holds at most `max_count` messages in at most `max_packets`
//! packets of at most `max_payload` bytes. It is planned (sizes only) before
//! anything is sent, and sent whole if the sender's bucket can pay for it,
//! else refused, so that a client's retry gets it whole; only an answer
//! dearer than a full bucket is cut to the bucket. The bucket is charged
//! with the UDP payload bytes sent. So one 20-byte request brings back at
//! most `max_packets × max_payload` bytes, and a listed address receives at
//! most `burst + rate × seconds` however many requests are made in its name.
//!
//! Every refusal is counted by reason ([`ServeStats`]); [`serve`] logs them
//! through a [`LogSampler`], which logs the first few per interval and sums
//! up the rest, so a flood is visible in counts and does not flood the log.
//!
//! The checks take the time as an argument and open no socket; [`serve`] is
//! the thin loop that adds the socket and the clock.

mod allow;
mod limit;
mod sampler;
mod store;

pub use allow::{Allowlist, Cidr, CidrError};
pub use limit::{ClientTable, TokenBucket};
pub use sampler::{HeldBack, LogSampler};
pub use store::RetransStore;

use std::fmt;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ticklane_protocols::moldudp64::{END_OF_SESSION, HEADER_LEN, PacketBuilder, Request, Session};

/// Why a request was not answered: each has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The sender is not on the allowlist.
    Unlisted,
    /// The request packet is not 20 bytes, or asks for no messages.
    Malformed,
    /// The request names another session.
    WrongSession,
    /// The first message asked for is not held.
    OutOfRange,
    /// The first message asked for does not fit in one packet.
    TooLarge,
    /// The client table is full of clients still within their rate.
    TooManyClients,
    /// The sender's bucket cannot pay for the whole answer now.
    RateLimited,
}

impl Reason {
    /// Every reason, in the order of [`ReasonCounts`].
    pub const ALL: [Reason; 7] = [
        Reason::Unlisted,
        Reason::Malformed,
        Reason::WrongSession,
        Reason::OutOfRange,
        Reason::TooLarge,
        Reason::TooManyClients,
        Reason::RateLimited,
    ];

    /// The counter's name (`snake_case`, as in the JSON summary).
    pub fn name(self) -> &'static str {
        match self {
            Reason::Unlisted => "unlisted",
            Reason::Malformed => "malformed",
            Reason::WrongSession => "wrong_session",
            Reason::OutOfRange => "out_of_range",
            Reason::TooLarge => "too_large",
            Reason::TooManyClients => "too_many_clients",
            Reason::RateLimited => "rate_limited",
        }
    }
}

// Counters are indexed by the discriminant: the last one closes the array.
const _: () = assert!(Reason::RateLimited as usize + 1 == Reason::ALL.len());

/// A counter per [`Reason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReasonCounts([u64; Reason::ALL.len()]);

impl ReasonCounts {
    /// Adds `n` to `reason`'s counter.
    pub fn add(&mut self, reason: Reason, n: u64) {
        let c = &mut self.0[reason as usize];
        *c = c.saturating_add(n);
    }

    /// The counter of `reason`.
    pub fn get(&self, reason: Reason) -> u64 {
        self.0[reason as usize]
    }

    /// The sum of all counters.
    pub fn total(&self) -> u64 {
        self.0.iter().fold(0, |a, &c| a.saturating_add(c))
    }

    /// Every reason with its counter, in the order of [`Reason::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL.into_iter().map(|r| (r, self.get(r)))
    }
}

impl fmt::Display for ReasonCounts {
    /// The counters that are not zero: `unlisted 400, rate_limited 12`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (reason, n) in self.iter().filter(|&(_, n)| n > 0) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{} {n}", reason.name())?;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// Why one request was not answered, with what the log should show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The sender is not on the allowlist.
    Unlisted,
    /// Not a 20-byte request packet: its length.
    Malformed(usize),
    /// A request for no messages.
    NoMessages,
    /// Another session.
    WrongSession(Session),
    /// The first message asked for is not held.
    OutOfRange(u64),
    /// Message `seq` does not fit in a packet of `max_payload` bytes.
    TooLarge(u64),
    /// No slot for another client.
    TooManyClients,
    /// The answer would cost `cost` bytes; the sender's bucket holds `left`.
    RateLimited {
        /// Bytes of the whole answer.
        cost: u64,
        /// Bytes left in the bucket.
        left: u64,
    },
}

impl Refusal {
    /// The counter it raises.
    pub fn reason(&self) -> Reason {
        match self {
            Refusal::Unlisted => Reason::Unlisted,
            Refusal::Malformed(_) | Refusal::NoMessages => Reason::Malformed,
            Refusal::WrongSession(_) => Reason::WrongSession,
            Refusal::OutOfRange(_) => Reason::OutOfRange,
            Refusal::TooLarge(_) => Reason::TooLarge,
            Refusal::TooManyClients => Reason::TooManyClients,
            Refusal::RateLimited { .. } => Reason::RateLimited,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.reason().name())?;
        match self {
            Refusal::Unlisted => f.write_str("not on the allowlist, not answered"),
            Refusal::Malformed(len) => write!(f, "{len} bytes, not a 20-byte request"),
            Refusal::NoMessages => f.write_str("asks for no messages"),
            Refusal::WrongSession(s) => write!(
                f,
                "asks for session \"{}\"",
                String::from_utf8_lossy(s.trimmed())
            ),
            Refusal::OutOfRange(seq) => write!(f, "message {seq} is not held"),
            Refusal::TooLarge(seq) => {
                write!(f, "message {seq} does not fit in one packet")
            }
            Refusal::TooManyClients => f.write_str("the client table is full"),
            Refusal::RateLimited { cost, left } => {
                write!(f, "the answer is {cost} bytes, its bucket holds {left}")
            }
        }
    }
}

/// Server settings.
#[derive(Debug, Clone, Copy)]
pub struct ServeConfig {
    /// Most messages sent for one request (larger requests are clamped).
    pub max_count: u16,
    /// Most packets sent for one request (0 acts as 1).
    pub max_packets: u16,
    /// Largest UDP payload sent.
    pub max_payload: usize,
    /// Answer bytes (UDP payload) each client may receive per second.
    pub client_rate: u64,
    /// Answer bytes a client may receive at once (its bucket's size).
    pub client_burst: u64,
    /// Clients tracked at once.
    pub max_clients: usize,
}

/// Answered requests that a limit cut short (each limit counted on its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clamps {
    /// Asked for more than `max_count` messages.
    pub max_count: u64,
    /// Reached `max_packets`.
    pub max_packets: u64,
    /// Ran out of the sender's bucket.
    pub rate: u64,
}

/// What the server did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// Datagrams received.
    pub received: u64,
    /// Requests answered (at least one packet sent).
    pub answered: u64,
    /// Messages sent.
    pub messages: u64,
    /// Packets sent.
    pub packets: u64,
    /// UDP payload bytes sent.
    pub bytes: u64,
    /// Packets the socket would not take (the answer stopped there).
    pub send_failures: u64,
    /// Requests not answered, by reason.
    pub refused: ReasonCounts,
    /// Answers cut short, by limit.
    pub clamped: Clamps,
}

/// Why an answer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Everything asked for (or held) was sent.
    Done,
    /// `max_packets` reached.
    Packets,
    /// The next message does not fit in an empty packet.
    TooLarge,
    /// The bucket's bytes were spent (only when even a full bucket cannot
    /// pay for the whole answer).
    Budget,
    /// The socket refused a packet.
    SendFailed,
}

/// One packet of an answer: `count` messages from `from`, `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Planned {
    from: u64,
    count: u16,
    len: usize,
}

/// The packets answering messages `from..end`: packed in order into
/// packets of at most `payload` bytes, at most `packets` of them, up to the
/// first message not held. Sizes only, nothing is copied: the server learns
/// what an answer costs before it sends any of it.
#[derive(Debug)]
struct Plan<'a> {
    store: &'a RetransStore,
    seq: u64,
    end: u64,
    payload: usize,
    packets_left: u16,
    stop: Stop,
}

impl<'a> Plan<'a> {
    fn new(store: &'a RetransStore, from: u64, end: u64, payload: usize, packets: u16) -> Self {
        Self {
            store,
            seq: from,
            end,
            payload,
            packets_left: packets,
            stop: Stop::Done,
        }
    }
}

impl Iterator for Plan<'_> {
    type Item = Planned;

    fn next(&mut self) -> Option<Planned> {
        if self.seq >= self.end || self.store.message(self.seq).is_none() {
            return None;
        }
        if self.packets_left == 0 {
            self.stop = Stop::Packets;
            return None;
        }
        let mut p = Planned {
            from: self.seq,
            count: 0,
            len: HEADER_LEN,
        };
        // Bounded by `end` and by the message count a header can say.
        while self.seq < self.end && p.count < END_OF_SESSION - 1 {
            let Some(m) = self.store.message(self.seq) else {
                break;
            };
            let len = p.len + 2 + m.len();
            if len > self.payload {
                break;
            }
            p.len = len;
            p.count += 1;
            self.seq += 1;
        }
        if p.count == 0 {
            self.stop = Stop::TooLarge;
            return None;
        }
        self.packets_left -= 1;
        Some(p)
    }
}

/// What one answer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    messages: u64,
    packets: u64,
    bytes: u64,
    stop: Stop,
}

/// Sends the packets of `plan`, built in `buf`, while their bytes stay
/// within `budget`.
fn send_plan(
    store: &RetransStore,
    buf: &mut [u8],
    mut plan: Plan<'_>,
    budget: u64,
    mut send: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Sent {
    let mut sent = Sent {
        messages: 0,
        packets: 0,
        bytes: 0,
        stop: Stop::Done,
    };
    for p in plan.by_ref() {
        if sent.bytes + p.len as u64 > budget {
            sent.stop = Stop::Budget;
            return sent;
        }
        // The plan sized the packet for this buffer and these messages;
        // should it not hold after all, it is left out, never sent short.
        let Some(mut b) = buf
            .get_mut(..p.len)
            .and_then(|b| PacketBuilder::new(b, store.session(), p.from))
        else {
            sent.stop = Stop::TooLarge;
            return sent;
        };
        let complete = (p.from..p.from + u64::from(p.count))
            .all(|seq| store.message(seq).is_some_and(|m| b.push(m).is_ok()));
        if !complete {
            sent.stop = Stop::TooLarge;
            return sent;
        }
        if send(b.finish()).is_err() {
            sent.stop = Stop::SendFailed;
            return sent;
        }
        sent.messages += u64::from(p.count);
        sent.packets += 1;
        sent.bytes += p.len as u64;
    }
    sent.stop = plan.stop;
    sent
}

/// The re-request server's decisions: who is answered, with how much. It
/// owns its buffer and client table (allocated once); time comes in as an
/// argument.
#[derive(Debug)]
pub struct Server<'a> {
    store: &'a RetransStore,
    cfg: ServeConfig,
    allow: Allowlist,
    clients: ClientTable,
    buf: Vec<u8>,
    stats: ServeStats,
}

impl<'a> Server<'a> {
    /// A server answering from `store` to the addresses of `allow`.
    pub fn new(store: &'a RetransStore, cfg: ServeConfig, allow: Allowlist) -> Self {
        Self {
            store,
            cfg,
            allow,
            clients: ClientTable::new(cfg.max_clients, cfg.client_rate, cfg.client_burst),
            buf: vec![0; cfg.max_payload],
            stats: ServeStats::default(),
        }
    }

    /// Handles one datagram from `peer` at `now` (nanoseconds, any origin):
    /// answers it through `send`, or says why not. Every outcome is counted.
    pub fn handle(
        &mut self,
        now: u64,
        peer: IpAddr,
        datagram: &[u8],
        send: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), Refusal> {
        self.stats.received += 1;
        let result = self.answer(now, peer, datagram, send);
        if let Err(refusal) = result {
            self.stats.refused.add(refusal.reason(), 1);
        }
        result
    }

    fn answer(
        &mut self,
        now: u64,
        peer: IpAddr,
        datagram: &[u8],
        send: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), Refusal> {
        if !self.allow.contains(peer) {
            return Err(Refusal::Unlisted);
        }
        let request = Request::decode(datagram).map_err(|_| Refusal::Malformed(datagram.len()))?;
        if request.session != self.store.session() {
            return Err(Refusal::WrongSession(request.session));
        }
        let from = request.sequence_number;
        if self.store.message(from).is_none() {
            return Err(Refusal::OutOfRange(from));
        }
        if request.message_count == 0 {
            return Err(Refusal::NoMessages);
        }
        let count = request.message_count.min(self.cfg.max_count);
        let (store, payload, packets) = (self.store, self.buf.len(), self.cfg.max_packets.max(1));
        let plan = || {
            let end = from.saturating_add(u64::from(count));
            Plan::new(store, from, end, payload, packets)
        };
        let cost: u64 = plan().map(|p| p.len as u64).sum();
        if cost == 0 {
            return Err(Refusal::TooLarge(from));
        }
        let bucket = self
            .clients
            .bucket(peer, now)
            .ok_or(Refusal::TooManyClients)?;
        // Whole answers or none: a client retries a refused request as it
        // was, while after a partial answer it must work out what is still
        // missing (the ticklane client asks again from the start). Only an
        // answer dearer than a full bucket is cut to the bucket.
        let left = bucket.available(now);
        if cost > left && !bucket.is_full(now) {
            return Err(Refusal::RateLimited { cost, left });
        }
        let sent = send_plan(store, &mut self.buf, plan(), cost.min(left), send);
        bucket.spend(sent.bytes);
        let stats = &mut self.stats;
        stats.messages += sent.messages;
        stats.packets += sent.packets;
        stats.bytes += sent.bytes;
        if sent.stop == Stop::SendFailed {
            stats.send_failures += 1;
        }
        if sent.messages == 0 {
            return match sent.stop {
                // A full bucket smaller than one packet.
                Stop::Budget => Err(Refusal::RateLimited { cost, left }),
                // The first packet could not be sent (counted above).
                Stop::Done | Stop::Packets | Stop::TooLarge | Stop::SendFailed => Ok(()),
            };
        }
        stats.answered += 1;
        stats.clamped.max_count += u64::from(request.message_count > count);
        match sent.stop {
            Stop::Packets => stats.clamped.max_packets += 1,
            Stop::Budget => stats.clamped.rate += 1,
            Stop::Done | Stop::TooLarge | Stop::SendFailed => {}
        }
        Ok(())
    }

    /// What the server did so far.
    pub fn stats(&self) -> &ServeStats {
        &self.stats
    }

    /// Clients tracked now.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Who is answered.
    pub fn allowlist(&self) -> &Allowlist {
        &self.allow
    }
}

/// A line for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLine {
    /// One refused request.
    Refused {
        /// Who sent it.
        peer: SocketAddr,
        /// Why it was refused.
        refusal: Refusal,
    },
    /// The refusals an interval did not log one by one.
    HeldBack(HeldBack),
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogLine::Refused { peer, refusal } => write!(f, "refused {peer}: {refusal}"),
            LogLine::HeldBack(h) => h.fmt(f),
        }
    }
}

/// Serves requests on `socket` until `stop` is set. Refusals go to `log`
/// as `sampler` decides, and what it holds back is summed up at least every
/// 100 ms of quiet and once more at the end.
pub fn serve(
    socket: &UdpSocket,
    server: &mut Server<'_>,
    sampler: &mut LogSampler,
    stop: &AtomicBool,
    mut log: impl FnMut(LogLine),
) -> std::io::Result<()> {
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let start = Instant::now();
    let mut rx = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let received = socket.recv_from(&mut rx);
        let now = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if let Some(held) = sampler.roll(now) {
            log(LogLine::HeldBack(held));
        }
        let (n, peer) = match received {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Err(refusal) = server.handle(now, peer.ip(), &rx[..n], |p| {
            socket.send_to(p, peer).map(drop)
        }) && sampler.admit(now, peer, refusal.reason())
        {
            log(LogLine::Refused { peer, refusal });
        }
    }
    if let Some(held) = sampler.take() {
        log(LogLine::HeldBack(held));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::store::tests::{store, store_of};
    use super::*;
    use ticklane_protocols::moldudp64::Packet;

    const MS: u64 = 1_000_000;

    fn listed() -> IpAddr {
        IpAddr::from([198, 18, 3, 2])
    }

    fn cfg() -> ServeConfig {
        ServeConfig {
            max_count: 100,
            max_packets: 100,
            max_payload: 1400,
            client_rate: 1_000_000,
            client_burst: 1_000_000,
            max_clients: 4,
        }
    }

    fn server(store: &RetransStore, cfg: ServeConfig) -> Server<'_> {
        Server::new(store, cfg, Allowlist::new(vec![Cidr::host(listed())]))
    }

    fn request(store: &RetransStore, from: u64, count: u16) -> [u8; HEADER_LEN] {
        Request {
            session: store.session(),
            sequence_number: from,
            message_count: count,
        }
        .encode()
    }

    /// What `server` answers `peer` at `now`: the result, the sequence
    /// numbers received (each message is its sequence number in 8 bytes)
    /// and the payload length of each packet.
    fn ask(
        server: &mut Server<'_>,
        now: u64,
        peer: IpAddr,
        datagram: &[u8],
    ) -> (Result<(), Refusal>, Vec<u64>, Vec<usize>) {
        let (mut seqs, mut sizes) = (Vec::new(), Vec::new());
        let r = server.handle(now, peer, datagram, |p| {
            let p = Packet::new_checked(p).expect("a downstream packet");
            sizes.push(p.as_bytes().len());
            for (seq, m) in p.messages() {
                assert_eq!(m, seq.to_be_bytes());
                seqs.push(seq);
            }
            Ok(())
        });
        (r, seqs, sizes)
    }

    #[test]
    fn answers_with_the_messages_asked_for() {
        let store = store();
        let mut s = server(&store, cfg());
        assert_eq!(store.range(), (10, 20));
        let r = ask(&mut s, 0, listed(), &request(&store, 12, 3));
        assert_eq!((r.0, r.1), (Ok(()), vec![12, 13, 14]));
        let r = ask(&mut s, 0, listed(), &request(&store, 18, 5));
        assert_eq!((r.0, r.1), (Ok(()), vec![18, 19]), "up to what it holds");
        let st = s.stats();
        assert_eq!(
            (st.received, st.answered, st.messages, st.packets),
            (2, 2, 5, 2)
        );
        assert_eq!(st.bytes, 2 * 20 + 5 * 10);
        assert_eq!(st.refused.total(), 0);
    }

    #[test]
    fn an_unlisted_sender_gets_nothing_whatever_it_asks() {
        let store = store();
        let mut s = server(&store, cfg());
        let stranger = IpAddr::from([198, 18, 3, 3]);
        for datagram in [&request(&store, 10, u16::MAX)[..], b"short", &[0; 2000]] {
            let (r, seqs, _) = ask(&mut s, 0, stranger, datagram);
            assert_eq!((r, seqs), (Err(Refusal::Unlisted), vec![]));
        }
        assert_eq!(s.stats().refused.get(Reason::Unlisted), 3);
        assert_eq!(s.stats().refused.total(), 3);
        assert_eq!((s.stats().packets, s.clients()), (0, 0), "no slot taken");
        assert_eq!(ask(&mut s, 0, listed(), &request(&store, 10, 1)).0, Ok(()));
    }

    #[test]
    fn bad_requests_are_refused_and_counted_by_reason() {
        let store = store();
        let mut s = server(&store, cfg());
        assert_eq!(
            ask(&mut s, 0, listed(), b"short").0,
            Err(Refusal::Malformed(5))
        );
        assert_eq!(
            ask(&mut s, 0, listed(), &request(&store, 10, 0)).0,
            Err(Refusal::NoMessages)
        );
        assert_eq!(
            ask(&mut s, 0, listed(), &request(&store, 30, 1)).0,
            Err(Refusal::OutOfRange(30))
        );
        assert_eq!(
            ask(&mut s, 0, listed(), &request(&store, u64::MAX, u16::MAX)).0,
            Err(Refusal::OutOfRange(u64::MAX))
        );
        let other = Request {
            session: Session::from_name(b"X").unwrap(),
            sequence_number: 10,
            message_count: 1,
        };
        assert!(matches!(
            ask(&mut s, 0, listed(), &other.encode()).0,
            Err(Refusal::WrongSession(_))
        ));
        let refused = s.stats().refused;
        assert_eq!(
            refused.to_string(),
            "malformed 2, wrong_session 1, out_of_range 2"
        );
        assert_eq!(s.clients(), 0, "bad requests take no slot");
    }

    #[test]
    fn answers_are_bounded_in_messages_and_packets() {
        let store = store();
        let mut s = server(
            &store,
            ServeConfig {
                max_count: 5,
                max_packets: 2,
                max_payload: 20 + 2 * 10,
                ..cfg()
            },
        );
        let (r, seqs, sizes) = ask(&mut s, 0, listed(), &request(&store, 10, 9));
        assert_eq!(
            (r, seqs),
            (Ok(()), vec![10, 11, 12, 13]),
            "two per packet, two packets"
        );
        assert_eq!(sizes, [40, 40]);
        assert_eq!(
            s.stats().clamped,
            Clamps {
                max_count: 1,
                max_packets: 1,
                rate: 0
            }
        );
        let (_, seqs, _) = ask(&mut s, 0, listed(), &request(&store, 10, 3));
        assert_eq!(seqs, [10, 11, 12], "within both limits: not clamped");
        assert_eq!(
            s.stats().clamped,
            Clamps {
                max_count: 1,
                max_packets: 1,
                rate: 0
            }
        );
    }

    #[test]
    fn a_client_gets_whole_answers_within_its_burst_and_rate() {
        let store = store();
        // Two 10-byte blocks per 40-byte packet.
        let mut s = server(
            &store,
            ServeConfig {
                max_payload: 40,
                client_rate: 400,
                client_burst: 100,
                ..cfg()
            },
        );
        assert_eq!(
            ask(&mut s, 0, listed(), &request(&store, 10, 4)).1,
            [10, 11, 12, 13]
        );
        assert_eq!(
            ask(&mut s, 0, listed(), &request(&store, 14, 2)),
            (
                Err(Refusal::RateLimited { cost: 40, left: 20 }),
                vec![],
                vec![]
            ),
            "nothing rather than part of an answer"
        );
        assert_eq!(
            ask(&mut s, 50 * MS, listed(), &request(&store, 14, 2)).1,
            [14, 15],
            "20 more bytes after 50 ms at 400 B/s"
        );
        let (r, seqs, sizes) = ask(&mut s, 1000 * MS, listed(), &request(&store, 10, 10));
        assert_eq!(
            (r, seqs, sizes),
            (Ok(()), vec![10, 11, 12, 13], vec![40, 40]),
            "an answer of 200 bytes, dearer than a full bucket of 100, is cut to the bucket"
        );
        let st = s.stats();
        assert_eq!((st.answered, st.bytes), (3, 80 + 40 + 80));
        assert_eq!(st.refused.get(Reason::RateLimited), 1);
        assert_eq!(st.clamped.rate, 1, "a refusal is not an answer cut short");
    }

    #[test]
    fn a_flood_receives_no_more_than_burst_plus_rate() {
        let store = store_of(1, (1..=5000u64).map(|seq| seq.to_be_bytes().to_vec()));
        let (rate, burst) = (100_000, 20_000);
        let mut s = server(
            &store,
            ServeConfig {
                max_count: 100,
                client_rate: rate,
                client_burst: burst,
                ..cfg()
            },
        );
        let mut received = 0u64;
        // 1,000 requests for 65,535 messages (answered with 100: 1,020 bytes)
        // in one second.
        for i in 0..1000u64 {
            let now = i * MS;
            let (_, _, sizes) = ask(&mut s, now, listed(), &request(&store, 1, u16::MAX));
            received += sizes.iter().sum::<usize>() as u64;
        }
        assert_eq!(received, s.stats().bytes);
        assert!(received <= burst + rate, "{received} bytes in 1 s");
        assert!(
            received > burst + rate - 2 * 1020,
            "{received}: the rate is served"
        );
        assert!(s.stats().refused.get(Reason::RateLimited) > 800);
    }

    #[test]
    fn a_full_client_table_turns_newcomers_away() {
        let store = store();
        let mut s = Server::new(
            &store,
            ServeConfig {
                max_clients: 1,
                client_rate: 1000,
                client_burst: 1000,
                ..cfg()
            },
            "198.18.3.0/24"
                .parse::<Cidr>()
                .map(|n| Allowlist::new(vec![n]))
                .unwrap(),
        );
        assert_eq!(ask(&mut s, 0, listed(), &request(&store, 10, 1)).0, Ok(()));
        let other = IpAddr::from([198, 18, 3, 9]);
        assert_eq!(
            ask(&mut s, MS, other, &request(&store, 10, 1)).0,
            Err(Refusal::TooManyClients)
        );
        assert_eq!(
            ask(&mut s, 1000 * MS, other, &request(&store, 10, 1)).0,
            Ok(()),
            "the first client's 30 bytes have refilled: its slot is reused"
        );
        assert_eq!(s.stats().refused.get(Reason::TooManyClients), 1);
    }

    #[test]
    fn a_message_larger_than_a_packet_is_refused() {
        let store = store_of(1, [1u64.to_be_bytes().to_vec(), vec![7; 200]]);
        let mut s = server(
            &store,
            ServeConfig {
                max_payload: 100,
                ..cfg()
            },
        );
        let (r, seqs, _) = ask(&mut s, 0, listed(), &request(&store, 1, 2));
        assert_eq!((r, seqs), (Ok(()), vec![1]), "up to the large one");
        assert_eq!(
            ask(&mut s, 0, listed(), &request(&store, 2, 1)).0,
            Err(Refusal::TooLarge(2))
        );
        assert_eq!(s.stats().refused.get(Reason::TooLarge), 1);
    }

    #[test]
    fn a_failed_send_ends_the_answer_and_is_counted() {
        let store = store();
        let mut s = server(
            &store,
            ServeConfig {
                max_payload: 20 + 10,
                ..cfg()
            },
        );
        let mut calls = 0;
        let r = s.handle(0, listed(), &request(&store, 10, 5), |_| {
            calls += 1;
            if calls == 2 {
                Err(std::io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Ok(()));
        assert_eq!(
            (calls, s.stats().packets, s.stats().send_failures),
            (2, 1, 1)
        );
        assert_eq!(s.stats().bytes, 30, "only what was sent is charged");
    }

    #[test]
    fn refusals_read_well_in_the_log() {
        let line = LogLine::Refused {
            peer: SocketAddr::from(([198, 18, 3, 3], 4000)),
            refusal: Refusal::Unlisted,
        };
        assert_eq!(
            line.to_string(),
            "refused 198.18.3.3:4000: unlisted: not on the allowlist, not answered"
        );
        assert_eq!(ReasonCounts::default().to_string(), "none");
    }
}
