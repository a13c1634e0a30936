//! The private-address rule of webhook URLs: unless the server runs with
//! `--allow-private-webhooks`, a webhook may reach only public addresses. Checked when a
//! webhook is registered ([`AddressPolicy`]) and again at every delivery, where the HTTP
//! client resolves names through [`PublicResolver`], which drops internal addresses, so a
//! name that later resolves inside (DNS rebinding) reaches nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use contextd_core::service::webhooks::UrlPolicy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Time allowed to resolve a webhook's host at registration.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

const REFUSED: &str = "webhooks may reach public addresses only; this server refuses loopback, \
private, link-local and other internal addresses unless it runs with --allow-private-webhooks";

/// Whether `ip` is a public unicast address: not loopback, private (RFC 1918, fc00::/7),
/// link-local, unspecified, shared (CGNAT 100.64.0.0/10), multicast, broadcast or reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, 198.18.0.0/15
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96, and the local-use 64:ff9b:1::/48) reaches the IPv4 address in
    // its last 32 bits; 6to4 (2002::/16) in the 32 bits after the prefix.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..3] == [0x64, 0xff9b, 1] {
        let [.., hi, lo] = s;
        return is_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    if s[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::from((u32::from(s[1]) << 16) | u32::from(s[2])));
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
}

/// Refuses a URL whose host is an IP address that is not public (names are left to
/// [`PublicResolver`] at delivery).
pub fn check_literal(url: &Url) -> Result<(), String> {
    let ip = match url.host() {
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if is_public(ip) {
        Ok(())
    } else {
        Err(format!("{ip} is not a public address: {REFUSED}"))
    }
}

/// The registration check: the URL's host must be, or resolve only to, public addresses.
pub struct AddressPolicy {
    /// `--allow-private-webhooks`: accept every address.
    pub allow_private: bool,
}

impl UrlPolicy for AddressPolicy {
    async fn check(&self, url: &Url) -> Result<(), String> {
        if self.allow_private {
            return Ok(());
        }
        check_literal(url)?;
        let Some(Host::Domain(name)) = url.host() else {
            return Ok(());
        };
        let port = url.port_or_known_default().unwrap_or(443);
        let lookup = tokio::net::lookup_host((name, port));
        let addrs: Vec<SocketAddr> = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(_)) | Err(_) => {
                return Err(format!("the host {name} could not be resolved"));
            }
        };
        match addrs.iter().find(|a| !is_public(a.ip())) {
            Some(internal) => Err(format!(
                "the host {name} resolves to {}, not a public address: {REFUSED}",
                internal.ip()
            )),
            None if addrs.is_empty() => Err(format!("the host {name} resolves to no address")),
            None => Ok(()),
        }
    }
}

/// The delivery client's resolver: the system's, without any internal address.
pub struct PublicResolver;

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = resolved.filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address ({REFUSED})").into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for internal in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a00:1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            "198.18.0.1",
            "198.19.255.255",
            "192.0.0.8",
        ] {
            let ip: IpAddr = internal.parse().expect("an address");
            assert!(!is_public(ip), "{internal} is internal");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "198.20.0.1",
            "192.0.2.1",
        ] {
            let ip: IpAddr = public.parse().expect("an address");
            assert!(is_public(ip), "{public} is public");
        }
    }

    #[test]
    fn literal_hosts_are_checked_in_every_spelling_the_url_parser_accepts() {
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://[::1]:8080/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data",
        ] {
            let url = Url::parse(url).expect("a URL");
            assert!(check_literal(&url).is_err(), "{url}");
        }
        let url = Url::parse("https://example.com/").expect("a URL");
        assert!(check_literal(&url).is_ok());
    }

    #[tokio::test]
    async fn names_of_loopback_are_refused_at_registration_unless_allowed() {
        let url = Url::parse("http://localhost:9/hook").expect("a URL");
        let strict = AddressPolicy {
            allow_private: false,
        };
        assert!(strict.check(&url).await.is_err());
        let open = AddressPolicy {
            allow_private: true,
        };
        assert!(open.check(&url).await.is_ok());
    }
}
