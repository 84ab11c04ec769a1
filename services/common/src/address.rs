//! Who a request counts as when bounds are kept per client: one rule for the tracker's bounds
//! per source address and the peer's login limit.

use std::net::IpAddr;

/// The key a client address is counted under: IPv4 (also when mapped into IPv6) as is, IPv6 by
/// its /64 (what one host or one customer usually gets, so a host cannot step around a bound
/// by walking its own prefix).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_as_is_mapped_ipv4_unmapped_ipv6_by_its_64() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(client_key(v4), v4);
        assert_eq!(client_key("::ffff:192.0.2.7".parse().unwrap()), v4);
        let a = client_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = client_key("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(a, client_key("2001:db8:1:3::1".parse().unwrap()));
    }
}
