//! MoldUDP64 walker: any bytes as a downstream packet; every message of a
//! packet that passes the check is walked and dispatched.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ticklane_protocols::itch::{self, Handler};
use ticklane_protocols::moldudp64::Packet;

struct Touch(u64);

impl Handler for Touch {
    fn on_add_order(&mut self, m: &itch::AddOrder) {
        self.0 = self.0.wrapping_add(m.order_reference_number());
    }
    fn on_order_replace(&mut self, m: &itch::OrderReplace) {
        self.0 = self.0.wrapping_add(m.new_order_reference_number());
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::new_checked(data) {
        let mut h = Touch(0);
        let mut n = 0u16;
        for (seq, m) in p.messages() {
            assert_eq!(seq, p.sequence_number() + u64::from(n));
            n += 1;
            let _ = itch::dispatch(m, &mut h);
        }
        assert_eq!(n, p.messages_len());
    }
});
