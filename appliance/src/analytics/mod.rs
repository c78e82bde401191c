//! What the pipeline derives from the books' executions besides the books
//! themselves: VWAP over a sliding window and the trade tape.

pub mod tape;
pub mod vwap;
