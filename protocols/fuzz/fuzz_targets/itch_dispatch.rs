//! ITCH dispatcher: any bytes as one message, through `parse` and `dispatch`,
//! which must agree; a parsed message re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ticklane_protocols::itch::{self, Handler};

struct Seen(Option<u8>);

impl Handler for Seen {
    fn on_add_order(&mut self, _: &itch::AddOrder) {
        self.0 = Some(b'A');
    }
    fn on_noii(&mut self, _: &itch::Noii) {
        self.0 = Some(b'I');
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = itch::parse(data);
    let mut seen = Seen(None);
    let dispatched = itch::dispatch(data, &mut seen);
    assert_eq!(parsed.is_ok(), dispatched.is_ok());
    if let Ok(m) = parsed {
        assert_eq!(m.as_bytes(), data);
        let mut fields = 0;
        m.for_each_field(|_, _| fields += 1);
        assert!(fields > 0);
    }
});
