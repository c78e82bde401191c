//! The live data path: the XDP steering program's loader, AF_XDP sockets,
//! the kernel UDP fallback, and the frame sender for labs.

pub mod send;
pub mod steering;
pub mod udp;
pub mod xsk;
