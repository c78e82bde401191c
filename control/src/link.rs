//! The one thread that talks to the poller's request ring (an SPSC ring has
//! one producer): async callers hand it requests through a bounded channel
//! and wait for their answers; it keeps at most
//! [`ticklane_appliance::request::RING_SLOTS`] in flight, waits on nothing
//! the poller holds, and sleeps when nothing is in flight.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use ticklane_appliance::request::{Answer, Ask, Requester};
use tokio::sync::oneshot;

use crate::ControlError;

/// Requests queued for the link thread at most (beyond those in flight).
pub const QUEUE: usize = 1024;

/// How often the thread looks for answers while requests are in flight.
const ANSWER_POLL: Duration = Duration::from_micros(100);

type Job = (Ask, oneshot::Sender<Answer>);

/// The async side of the link.
#[derive(Debug, Clone)]
pub struct Link {
    jobs: SyncSender<Job>,
}

impl Link {
    /// Starts the thread that owns `requester`.
    pub fn spawn(requester: Requester) -> Result<Self, ControlError> {
        let (jobs, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("ticklane-link".into())
            .spawn(move || serve(requester, rx))
            .map_err(ControlError::Runtime)?;
        Ok(Self { jobs })
    }

    /// Asks the poller; waits for its answer (without blocking the runtime).
    pub async fn ask(&self, ask: Ask) -> Result<Answer, ControlError> {
        let (tx, rx) = oneshot::channel();
        match self.jobs.try_send((ask, tx)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ControlError::Exhausted(format!(
                    "{QUEUE} requests are waiting for the poller already: retry in a moment"
                )));
            }
            Err(TrySendError::Disconnected(_)) => return Err(ControlError::Stopping),
        }
        rx.await.map_err(|_| ControlError::Stopping)
    }
}

fn serve(mut requester: Requester, jobs: mpsc::Receiver<Job>) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut in_flight: HashMap<u64, oneshot::Sender<Answer>> = HashMap::new();
    loop {
        let next = if in_flight.is_empty() && waiting.is_empty() {
            jobs.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            jobs.recv_timeout(ANSWER_POLL)
        };
        match next {
            Ok(job) => waiting.push_back(job),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while waiting.len() < QUEUE
            && let Ok(job) = jobs.try_recv()
        {
            waiting.push_back(job);
        }
        while let Some((ask, reply)) = waiting.pop_front() {
            match requester.send(ask) {
                Ok(id) => {
                    in_flight.insert(id, reply);
                }
                Err(ask) => {
                    waiting.push_front((ask, reply));
                    break;
                }
            }
        }
        while let Some((id, answer)) = requester.receive() {
            if let Some(reply) = in_flight.remove(&id) {
                // The asker may have given up (its client went away).
                let _ = reply.send(answer);
            }
        }
        if requester.is_abandoned() {
            // The poller is gone: every waiting asker learns it (their
            // senders drop here).
            return;
        }
    }
}
