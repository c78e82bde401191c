//! Frame walker: any bytes as an Ethernet frame, its checksums verified, down
//! to the MoldUDP64 packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ticklane_protocols::moldudp64::Packet;
use ticklane_protocols::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(udp) = wire::parse_ethernet_udp(data) {
        assert!(udp.payload.len() <= data.len());
        let _ = (udp.ipv4_checksum_ok(), udp.udp_checksum());
        if let Ok(p) = Packet::new_checked(udp.payload) {
            let _ = p.messages().count();
        }
    }
});
