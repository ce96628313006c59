//! Who may connect, and how much: the authentication mode with its token verifier, the
//! per-client-IP connection cap, the per-user join rate and the per-connection budget of
//! invalid frames. These hold in both authentication modes.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use crate::{
    auth::{AuthConfigError, Authenticator},
    config::{AuthMode, Config},
    presence::Millis,
    rate_limit::{Bucket, RateLimiter, admit},
};

pub struct Access {
    /// Set in JWT mode: connections authenticate with a token before joining.
    pub authenticator: Option<Authenticator>,
    max_per_ip: u32,
    trusted_proxy_hops: u32,
    per_ip: Arc<Mutex<HashMap<IpAddr, u32>>>,
    joins: Mutex<RateLimiter>,
    joins_per_minute: u32,
    invalid_frames_per_minute: u32,
    started: Instant,
}

impl Access {
    pub fn new(config: &Config) -> Result<Self, AuthConfigError> {
        let authenticator = match config.auth {
            AuthMode::Anonymous => None,
            AuthMode::Jwt => Some(Authenticator::new(&config.auth_settings())?),
        };
        Ok(Access {
            authenticator,
            max_per_ip: config.max_connections_per_ip,
            trusted_proxy_hops: config.trusted_proxy_hops,
            per_ip: Arc::default(),
            joins: Mutex::default(),
            joins_per_minute: config.joins_per_minute,
            invalid_frames_per_minute: config.invalid_frames_per_minute,
            started: Instant::now(),
        })
    }

    /// The client's address: the peer, or behind `trusted_proxy_hops` proxies the entry of
    /// `X-Forwarded-For` the outermost trusted proxy wrote.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a str>,
    ) -> IpAddr {
        client_ip(peer, forwarded_for, self.trusted_proxy_hops)
    }

    /// Takes one of the client IP's connection slots, released when the slot is dropped;
    /// `None` when the IP is at its cap.
    pub fn connect_from(&self, ip: IpAddr) -> Option<IpSlot> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let count = per_ip.entry(ip).or_default();
        if *count >= self.max_per_ip {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            ip,
            per_ip: self.per_ip.clone(),
        })
    }

    /// Counts a join of `user`; false when the user joined too often in the last minute.
    pub fn allow_join(&self, user: &str) -> bool {
        let now = self.now();
        self.joins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(user, now, self.joins_per_minute)
    }

    /// A fresh budget of invalid frames for one connection.
    pub fn invalid_frame_budget(&self) -> InvalidFrames {
        InvalidFrames {
            bucket: None,
            limit: self.invalid_frames_per_minute,
        }
    }

    pub fn now(&self) -> Millis {
        Millis::try_from(self.started.elapsed().as_millis()).unwrap_or(Millis::MAX)
    }
}

/// One connection counted against its client IP; the count drops (and the IP is forgotten
/// at zero, so the map holds only connected IPs) when this is dropped.
pub struct IpSlot {
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Invalid frames a connection may still send: the chat limit's leaky bucket, per connection.
pub struct InvalidFrames {
    bucket: Option<Bucket>,
    limit: u32,
}

impl InvalidFrames {
    /// Counts one invalid frame; false when the connection is over its budget.
    pub fn allow(&mut self, now: Millis) -> bool {
        match admit(self.bucket, now, self.limit) {
            Some(bucket) => {
                self.bucket = Some(bucket);
                true
            }
            None => false,
        }
    }
}

/// Each trusted proxy appends the address it received the request from, so with `hops`
/// trusted proxies the client is the `hops`-th entry from the right; entries left of it
/// were written by the client and are ignored. A shorter or unreadable list means the
/// request did not come through the proxies: the leftmost readable entry, else the peer.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    hops: u32,
) -> IpAddr {
    if hops == 0 {
        return peer;
    }
    let entries: Vec<&str> = forwarded_for
        .flat_map(|header| header.split(','))
        .map(str::trim)
        .collect();
    let from_right = (hops as usize).min(entries.len());
    entries
        .len()
        .checked_sub(from_right)
        .and_then(|index| entries.get(index))
        .and_then(|entry| entry.parse().ok())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn the_client_ip_comes_from_trusted_hops_only() {
        let peer = ip("10.0.0.9");
        assert_eq!(client_ip(peer, ["1.2.3.4"].into_iter(), 0), peer);
        assert_eq!(
            client_ip(peer, ["6.6.6.6, 1.2.3.4"].into_iter(), 1),
            ip("1.2.3.4"),
            "what the client wrote is skipped"
        );
        assert_eq!(
            client_ip(peer, ["6.6.6.6", "1.2.3.4, 10.0.0.1"].into_iter(), 2),
            ip("1.2.3.4"),
            "headers are read in order"
        );
        assert_eq!(client_ip(peer, ["1.2.3.4"].into_iter(), 3), ip("1.2.3.4"));
        assert_eq!(client_ip(peer, std::iter::empty(), 1), peer);
        assert_eq!(client_ip(peer, ["junk"].into_iter(), 1), peer);
        assert_eq!(
            client_ip(peer, ["2001:db8::1"].into_iter(), 1),
            ip("2001:db8::1")
        );
    }

    fn access(max_per_ip: u32) -> Access {
        use clap::Parser;
        let config = Config::try_parse_from([
            "canvaschat-gateway",
            "--max-connections-per-ip",
            &max_per_ip.to_string(),
            "--joins-per-minute",
            "2",
            "--invalid-frames-per-minute",
            "3",
        ])
        .expect("config");
        Access::new(&config).expect("access")
    }

    #[test]
    fn ip_slots_are_capped_and_released() {
        let access = access(2);
        let a = ip("1.1.1.1");
        let first = access.connect_from(a).expect("first");
        let _second = access.connect_from(a).expect("second");
        assert!(access.connect_from(a).is_none(), "over the cap");
        assert!(access.connect_from(ip("2.2.2.2")).is_some(), "per IP");
        drop(first);
        assert!(
            access.connect_from(a).is_some(),
            "a closed slot is free again"
        );
        assert!(
            access.per_ip.lock().expect("lock").len() <= 1,
            "IPs without connections are forgotten"
        );
    }

    #[test]
    fn joins_and_invalid_frames_are_limited() {
        let access = access(10);
        assert!(access.allow_join("alice"));
        assert!(access.allow_join("alice"));
        assert!(!access.allow_join("alice"));
        assert!(access.allow_join("bob"));
        let mut budget = access.invalid_frame_budget();
        assert_eq!((0..5).filter(|_| budget.allow(1_000)).count(), 3);
    }
}
