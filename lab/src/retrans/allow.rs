//! Who may ask: an allowlist of networks (`198.18.3.2/32`, `198.18.3.0/24`,
//! `fd00::/8`). A request from any other address is refused unanswered.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A network: an address and a prefix length, host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why text is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The part before `/` is not an IP address.
    #[error("{0:?} is not an IP address (expected e.g. 198.18.3.2/32 or fd00::/8)")]
    Address(String),
    /// The prefix length is not a number that fits the address.
    #[error("{text:?} is not a prefix length of 0 to {max}")]
    Prefix {
        /// The text after `/`.
        text: String,
        /// Longest prefix of the address family.
        max: u8,
    },
}

impl Cidr {
    /// The network of `addr` with `prefix` leading bits (host bits are
    /// cleared); `None` if the prefix is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() & mask_v4(prefix)?)),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() & mask_v6(prefix)?)),
        };
        Some(Self { network, prefix })
    }

    /// The network holding only `addr`.
    pub fn host(addr: IpAddr) -> Self {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self {
            network: addr,
            prefix,
        }
    }

    /// True when `addr` lies in this network. An IPv4 address seen by an
    /// IPv6 socket (`::ffff:198.18.3.2`) counts as the IPv4 address.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, addr.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                mask_v4(self.prefix).is_some_and(|m| a.to_bits() & m == n.to_bits())
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                mask_v6(self.prefix).is_some_and(|m| a.to_bits() & m == n.to_bits())
            }
            _ => false,
        }
    }
}

fn mask_v4(prefix: u8) -> Option<u32> {
    (prefix <= 32).then(|| u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0))
}

fn mask_v6(prefix: u8) -> Option<u128> {
    (prefix <= 128).then(|| u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0))
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ADDR/PREFIX`, or a bare `ADDR` for that one host.
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::Address(addr.to_owned()))?;
        let Some(text) = prefix else {
            return Ok(Self::host(addr));
        };
        let max = Self::host(addr).prefix;
        text.parse()
            .ok()
            .and_then(|p| Self::new(addr, p))
            .ok_or_else(|| CidrError::Prefix {
                text: text.to_owned(),
                max,
            })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The networks whose addresses are answered; everyone else is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    nets: Vec<Cidr>,
}

impl Allowlist {
    /// Exactly these networks (none: nobody is answered).
    pub fn new(nets: Vec<Cidr>) -> Self {
        Self { nets }
    }

    /// The default when none is given: loopback, and the subnets configured
    /// on this host that hold `listen` (the lab's own link). Listening on
    /// every address (`0.0.0.0`, `::`) adds no subnet: loopback only.
    pub fn local(listen: IpAddr) -> nix::Result<Self> {
        let mut nets = vec![
            Cidr {
                network: Ipv4Addr::new(127, 0, 0, 0).into(),
                prefix: 8,
            },
            Cidr::host(Ipv6Addr::LOCALHOST.into()),
        ];
        if !listen.is_unspecified() {
            for ifa in nix::ifaddrs::getifaddrs()? {
                if let Some(net) = ifa.address.zip(ifa.netmask).and_then(|(a, m)| subnet(a, m))
                    && net.contains(listen)
                    && !nets.contains(&net)
                {
                    nets.push(net);
                }
            }
        }
        Ok(Self { nets })
    }

    /// True when `addr` may be answered.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(addr))
    }

    /// The networks, in order.
    pub fn nets(&self) -> &[Cidr] {
        &self.nets
    }
}

/// The subnet of an interface address and its netmask.
fn subnet(
    addr: nix::sys::socket::SockaddrStorage,
    mask: nix::sys::socket::SockaddrStorage,
) -> Option<Cidr> {
    if let (Some(a), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
        let prefix = u8::try_from(m.ip().to_bits().leading_ones()).ok()?;
        return Cidr::new(a.ip().into(), prefix);
    }
    let (a, m) = (addr.as_sockaddr_in6()?, mask.as_sockaddr_in6()?);
    let prefix = u8::try_from(m.ip().to_bits().leading_ones()).ok()?;
    Cidr::new(a.ip().into(), prefix)
}

impl fmt::Display for Allowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nets.is_empty() {
            return f.write_str("nobody");
        }
        for (i, n) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_networks_and_hosts() {
        let n: Cidr = "198.18.3.77/24".parse().unwrap();
        assert_eq!(n.to_string(), "198.18.3.0/24", "host bits cleared");
        assert_eq!(
            "198.18.3.2".parse::<Cidr>().unwrap().to_string(),
            "198.18.3.2/32"
        );
        assert_eq!(
            "0.0.0.0/0".parse::<Cidr>().unwrap().to_string(),
            "0.0.0.0/0"
        );
        assert_eq!("fd00::1/8".parse::<Cidr>().unwrap().to_string(), "fd00::/8");
        assert_eq!(
            "198.18.3.0/33".parse::<Cidr>(),
            Err(CidrError::Prefix {
                text: "33".into(),
                max: 32
            })
        );
        assert!(matches!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::Prefix { max: 128, .. })
        ));
        assert!(matches!(
            "198.18.3.0/x".parse::<Cidr>(),
            Err(CidrError::Prefix { .. })
        ));
        assert!(matches!(
            "198.18.3/24".parse::<Cidr>(),
            Err(CidrError::Address(_))
        ));
        assert!(matches!("".parse::<Cidr>(), Err(CidrError::Address(_))));
    }

    #[test]
    fn contains_exactly_the_network() {
        let n: Cidr = "198.18.3.0/24".parse().unwrap();
        assert!(n.contains(ip("198.18.3.0")) && n.contains(ip("198.18.3.255")));
        assert!(!n.contains(ip("198.18.4.1")) && !n.contains(ip("198.18.2.255")));
        assert!(
            n.contains(ip("::ffff:198.18.3.9")),
            "v4 seen by a v6 socket"
        );
        assert!(!n.contains(ip("fd00::1")));
        let host: Cidr = "198.18.3.2".parse().unwrap();
        assert!(host.contains(ip("198.18.3.2")) && !host.contains(ip("198.18.3.3")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")) && !all.contains(ip("::1")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fdff::1")) && !v6.contains(ip("fe80::1")));
    }

    #[test]
    fn an_allowlist_answers_its_networks_only() {
        let list = Allowlist::new(vec![
            "198.18.3.2".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]);
        assert!(list.contains(ip("198.18.3.2")) && list.contains(ip("fd12::5")));
        assert!(!list.contains(ip("198.18.3.3")) && !list.contains(ip("127.0.0.1")));
        assert_eq!(list.to_string(), "198.18.3.2/32, fd00::/8");
        assert!(!Allowlist::default().contains(ip("127.0.0.1")));
        assert_eq!(Allowlist::default().to_string(), "nobody");
    }

    #[test]
    fn the_local_default_is_loopback_and_the_listen_subnet() {
        let wildcard = Allowlist::local(ip("0.0.0.0")).unwrap();
        assert_eq!(wildcard.to_string(), "127.0.0.0/8, ::1/128");
        let lo = Allowlist::local(ip("127.0.0.1")).unwrap();
        assert!(lo.contains(ip("127.0.0.2")));
        assert!(!lo.contains(ip("198.18.3.3")) && !lo.contains(ip("8.8.8.8")));
    }
}
