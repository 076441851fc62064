//! A round's figures on both ends: the relay's bytes by round and its
//! repair symbols, the client's datagrams received beside what became of
//! them.

use super::super::*;
use super::{done, parse, value};

#[test]
fn a_relays_bytes_are_counted_by_round_and_repairs_by_symbol() {
    let m = RelayMetrics::new(std::sync::Arc::default());
    m.round_sent(&done(10, 14_480, 100, None));
    let mut second = done(3, 4_344, 50, None);
    second.round = 2;
    m.round_sent(&second);
    let mut hostile = done(1, 1_448, 5, None);
    hostile.round = u32::MAX;
    m.round_sent(&hostile);
    m.repairs_sent(2);
    let samples = parse(&m.exporter().text().unwrap());
    let get = |n: &str, l: &str| value(&samples, n, l);
    assert_eq!(
        get("haifu_relay_round_sent_bytes_total", "round=\"1\""),
        Some(14_480.0)
    );
    assert_eq!(
        get("haifu_relay_round_sent_bytes_total", "round=\"2\""),
        Some(4_344.0)
    );
    assert_eq!(
        get("haifu_relay_round_sent_bytes_total", "round=\"other\""),
        Some(1_448.0),
        "a round no run can have is one label, not a new series per number"
    );
    assert_eq!(get("haifu_relay_repair_symbols_sent_total", ""), Some(2.0));
}

#[test]
fn a_clients_received_datagrams_are_counted_beside_their_fate() {
    use haifu_carousel::{CarouselConfig, CarouselKey, Receiver, Sender};
    let key = CarouselKey::new(4, [1; 32]);
    let sender = Sender::new(key.clone(), 1000, CarouselConfig::default()).unwrap();
    let r = Receiver::new(key, sender.plan().unwrap());
    let m = ClientMetrics::new(std::sync::Arc::default());
    let mut stats = crate::broadcast::ReceiveStats {
        received: 7,
        accepted: 4,
        redundant: 1,
        ..Default::default()
    };
    stats.rejected.insert("bad_tag", 2);
    m.received(1, &stats, &r);
    let samples = parse(&m.exporter().text().unwrap());
    let get = |n: &str, l: &str| value(&samples, n, l);
    assert_eq!(get("haifu_client_datagrams_received_total", ""), Some(7.0));
    assert_eq!(get("haifu_client_datagrams_accepted_total", ""), Some(4.0));
    assert_eq!(
        get(
            "haifu_client_datagrams_rejected_total",
            "reason=\"bad_tag\""
        ),
        Some(2.0)
    );
}
