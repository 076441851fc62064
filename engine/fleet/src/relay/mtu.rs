//! The MTU of the link a relay sends its rounds on, for the pacer's count
//! of link bytes ([`haifu_carousel::LinkOverhead::with_mtu`]).
//!
//! A round's datagrams are 1,448 bytes, so the MTU changes the count only
//! below 1,476 (IPv4) or 1,496 (IPv6), where each datagram takes two frames
//! and two sets of headers: a tunnel, PPPoE over a VPN. Read, in order:
//! the config's `multicast.mtu`; the interface named by
//! `multicast.interface` (`/sys/class/net/NAME/mtu`, an address mapped to
//! its interface through the kernel's route table or IPv6 address list);
//! without an interface, the one the kernel routes the group through.
//! Anything unreadable falls back to Ethernet's 1,500, and the round's log
//! line says which source it used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use haifu_carousel::LinkOverhead;

/// The MTU the pacer counts with, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkMtu {
    /// The MTU in bytes.
    pub(crate) mtu: u32,
    /// `config`, `interface NAME`, or `default (why)`.
    pub(crate) source: String,
}

/// The MTU for datagrams to `group` sent from `interface` (a name or an
/// address), `configured` winning when set.
pub(crate) fn link_mtu(configured: Option<u32>, interface: Option<&str>, group: IpAddr) -> LinkMtu {
    if let Some(mtu) = configured {
        return LinkMtu {
            mtu,
            source: "config".into(),
        };
    }
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let name = match interface.map(str::trim) {
        Some(given) => match given.parse::<IpAddr>() {
            Ok(addr) => interface_of(addr, read),
            Err(_) => Some(given.to_owned()),
        },
        None => match group {
            IpAddr::V4(g) => read("/proc/net/route").and_then(|t| route_v4(&t, g)),
            // The IPv6 route table names no multicast routes worth
            // following; the group's scope decides the interface there.
            IpAddr::V6(_) => None,
        },
    };
    let Some(name) = name else {
        return default_mtu("no interface found");
    };
    if !plain_name(&name) {
        return default_mtu("not an interface name");
    }
    match read(&format!("/sys/class/net/{name}/mtu")).and_then(|t| t.trim().parse::<u32>().ok()) {
        Some(mtu) if mtu > 0 => LinkMtu {
            mtu,
            source: format!("interface {name}"),
        },
        _ => default_mtu("interface MTU unreadable"),
    }
}

fn default_mtu(why: &str) -> LinkMtu {
    LinkMtu {
        mtu: LinkOverhead::ETHERNET_MTU,
        source: format!("default ({why})"),
    }
}

/// A name that stays inside `/sys/class/net`.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name != "." && name != ".." && !name.contains('/')
}

/// The interface holding `addr`.
fn interface_of(addr: IpAddr, read: impl Fn(&str) -> Option<String>) -> Option<String> {
    match addr {
        IpAddr::V4(a) if a.is_loopback() => Some("lo".into()),
        IpAddr::V4(a) => read("/proc/net/route").and_then(|t| route_v4(&t, a)),
        IpAddr::V6(a) => read("/proc/net/if_inet6").and_then(|t| owner_v6(&t, a)),
    }
}

/// The interface of the most specific up route in `/proc/net/route`'s
/// text that covers `to`. Its numbers are hexadecimal in the kernel's
/// (little-endian) byte order.
fn route_v4(table: &str, to: Ipv4Addr) -> Option<String> {
    let hex = |s: &str| {
        u32::from_str_radix(s, 16)
            .ok()
            .map(|v| Ipv4Addr::from(v.to_le_bytes()))
    };
    let to = u32::from(to);
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (name, dest, flags, mask) =
                (f.first()?, hex(f.get(1)?)?, f.get(3)?, hex(f.get(7)?)?);
            let up = u16::from_str_radix(flags, 16).ok()? & 1 == 1;
            let (dest, mask) = (u32::from(dest), u32::from(mask));
            (up && to & mask == dest & mask).then(|| (mask.count_ones(), (*name).to_owned()))
        })
        .max_by_key(|(bits, _)| *bits)
        .map(|(_, name)| name)
}

/// The interface `/proc/net/if_inet6`'s text lists `addr` on.
fn owner_v6(list: &str, addr: Ipv6Addr) -> Option<String> {
    let want = addr
        .octets()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    list.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() == 6 && f[0].eq_ignore_ascii_case(&want)).then(|| f[5].to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t01004D0A\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t00004D0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
wg0\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0
down0\t0000A8C0\t00000000\t0000\t0\t0\t0\t0000FFFF\t0\t0\t0
";

    #[test]
    fn the_most_specific_up_route_names_the_interface() {
        let at = |s: &str| route_v4(ROUTE, s.parse().unwrap());
        assert_eq!(at("10.77.0.1").as_deref(), Some("eth0"));
        assert_eq!(at("10.1.2.3").as_deref(), Some("wg0"));
        // Multicast groups follow the default route here.
        assert_eq!(at("239.255.91.7").as_deref(), Some("eth0"));
        // A route that is not up is passed over.
        assert_eq!(at("192.168.1.1").as_deref(), Some("eth0"));
        assert_eq!(route_v4("Iface\n", "10.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn hostile_route_text_is_no_route() {
        for table in [
            "",
            "header\nnot enough fields",
            "h\neth0\tZZ\t0\t1\t0\t0\t0\tFF",
        ] {
            assert_eq!(
                route_v4(table, "10.0.0.1".parse().unwrap()),
                None,
                "{table:?}"
            );
        }
    }

    #[test]
    fn an_ipv6_address_is_found_in_the_address_list() {
        let list = "fd000000000000000000000000000001 03 40 00 80 eth1\n\
                    00000000000000000000000000000001 01 80 10 80 lo\n";
        assert_eq!(
            owner_v6(list, "fd00::1".parse().unwrap()).as_deref(),
            Some("eth1")
        );
        assert_eq!(
            owner_v6(list, "::1".parse().unwrap()).as_deref(),
            Some("lo")
        );
        assert_eq!(owner_v6(list, "fd00::2".parse().unwrap()), None);
    }

    #[test]
    fn the_config_wins_and_odd_names_fall_back_to_ethernet() {
        let group: IpAddr = "239.255.91.7".parse().unwrap();
        assert_eq!(link_mtu(Some(1400), Some("eth9"), group).mtu, 1400);
        for bad in ["../../etc", "no-such-interface-here"] {
            let got = link_mtu(None, Some(bad), group);
            assert_eq!(got.mtu, LinkOverhead::ETHERNET_MTU, "{bad}");
            assert!(got.source.starts_with("default ("), "{got:?}");
        }
    }

    #[test]
    fn loopback_is_read_from_the_kernel() {
        // Every Linux machine has `lo`; its MTU is whatever it is set to.
        let got = link_mtu(None, Some("127.0.0.1"), "239.255.91.7".parse().unwrap());
        assert_eq!(got.source, "interface lo");
        let sys = std::fs::read_to_string("/sys/class/net/lo/mtu").unwrap();
        assert_eq!(got.mtu, sys.trim().parse::<u32>().unwrap());
    }
}
