//! What can go wrong on the control plane, once, with the gRPC status code
//! and the `ERR` line each refusal becomes.

use ticklane_appliance::source::FeedChangeError;
use ticklane_appliance::source::steering::SteeringError;

/// Why a control request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// No book has this stock.
    #[error("no book for stock {0}: the feed has not named or traded it (check the symbol)")]
    UnknownStock(String),
    /// Unsubscribing what is not a feed.
    #[error("{0} is not subscribed: FEEDS (or ListFeeds) lists the feeds")]
    NotSubscribed(String),
    /// Subscribing what is a feed already.
    #[error("{feed} is subscribed already, on feed line {line}")]
    AlreadySubscribed {
        /// GROUP:PORT.
        feed: String,
        /// Its line.
        line: usize,
    },
    /// A mutating call without the right token.
    #[error("{0}")]
    Unauthenticated(String),
    /// A limit was reached.
    #[error("{0}")]
    Exhausted(String),
    /// The appliance cannot do this as it runs.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The poller is gone (the appliance is stopping).
    #[error("the appliance is stopping: its poller answers no more requests")]
    Stopping,
    /// The XDP subscription map.
    #[error("changing the XDP subscription map")]
    Steering(#[from] SteeringError),
    /// Joining or leaving a group.
    #[error("joining or leaving the multicast group")]
    Membership(#[source] std::io::Error),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} for {what} (is the address free and local?)")]
    Bind {
        /// What listens.
        what: &'static str,
        /// Where.
        addr: std::net::SocketAddr,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// The change was made live, but the store could not record it.
    #[error("the change is live, but was not recorded for restarts")]
    Store(#[from] crate::store::StoreError),
    /// The TLS certificate or key was refused.
    #[error(
        "the TLS certificate or key (--tls-cert, --tls-key) was refused: give the PEM \
         certificate chain and its PEM private key"
    )]
    Tls(#[source] tonic::transport::Error),
    /// The runtime could not start.
    #[error("starting the control plane's runtime")]
    Runtime(#[source] std::io::Error),
}

impl ControlError {
    /// The gRPC status the error becomes.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::UnknownStock(_) | Self::NotSubscribed(_) => Code::NotFound,
            Self::AlreadySubscribed { .. } => Code::AlreadyExists,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::Exhausted(_) => Code::ResourceExhausted,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Stopping => Code::Unavailable,
            Self::Steering(_)
            | Self::Membership(_)
            | Self::Bind { .. }
            | Self::Runtime(_)
            | Self::Tls(_)
            | Self::Store(_) => Code::Internal,
        }
    }

    /// The message with every cause after it.
    pub fn full(&self) -> String {
        let mut message = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cause = c.source();
        }
        message
    }

    /// A feed change the poller refused.
    pub(crate) fn feed_change(feed: String, e: FeedChangeError) -> Self {
        match e {
            FeedChangeError::AlreadySubscribed { line } => Self::AlreadySubscribed { feed, line },
            FeedChangeError::NotSubscribed => Self::NotSubscribed(feed),
            FeedChangeError::Full => Self::Exhausted(e.to_string()),
            FeedChangeError::Unsupported => Self::FailedPrecondition(format!(
                "{feed}: this appliance's feeds are fixed while it runs (a capture): restart \
                 it with the --feed options wanted"
            )),
        }
    }
}

impl From<ControlError> for tonic::Status {
    fn from(e: ControlError) -> Self {
        tonic::Status::new(e.code(), e.full())
    }
}
