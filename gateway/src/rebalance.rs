//! Rebalancing: WebSocket connections stay on the replica where they were opened, so a
//! replica the autoscaler adds gets no load by itself. With Redis, every replica publishes
//! its connection count each round (entries expire, so a replica that died drops out), reads
//! the fleet's, and one that has held more than `1 + tolerance` times the fleet mean for
//! [`SUSTAIN_ROUNDS`] rounds in a row closes a few connections with code 4000 (`rebalance`). Clients reconnect at once with `since`/`epoch`
//! and the Service spreads them; recovery makes the move lossless.
//!
//! The policy (how many to shed, which ones) is pure; [`FleetLoad`] is the Redis side and
//! [`round`] ties them to a node.

use std::{
    cmp::Reverse,
    collections::{HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use fred::types::scripts::Script;

use crate::{
    broker::BrokerError,
    config::Config,
    hub::{Closer, close_code},
    node::Node,
    presence::redis::NOW_MS,
    redis_conn::{RedisConnection, redis_err},
};

/// How often a replica publishes its count and may shed; the rate is per round.
pub const ROUND: Duration = Duration::from_secs(1);
/// A replica's published count expires after this long without a refresh.
const ENTRY_TTL: Duration = Duration::from_secs(5);
/// A replica never sheds below this many connections: moving a handful buys nothing.
pub const FLOOR: usize = 10;
/// Rounds in a row a replica must be above its share before it sheds: a reload storm or a
/// replica restarting skews the counts for a round or two, which is no reason to move anyone.
pub const SUSTAIN_ROUNDS: usize = 3;
const COUNTS_KEY: &str = "canvaschat:fleet:connections";
const SEEN_KEY: &str = "canvaschat:fleet:expiry";
pub const REASON: &str = "rebalance";

// KEYS: counts (hash node -> connections), expiry (zset node -> expiry ms). ARGV: node,
// connections, ttl ms. Drops expired replicas, returns the fleet as a flat node, count list.
const REPORT: &str = "local ttl = tonumber(ARGV[3]) \
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) \
    redis.call('ZADD', KEYS[2], now + ttl, ARGV[1]) \
    local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now) \
    for _, n in ipairs(gone) do redis.call('HDEL', KEYS[1], n) end \
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) \
    redis.call('PEXPIRE', KEYS[1], ttl) \
    redis.call('PEXPIRE', KEYS[2], ttl) \
    return redis.call('HGETALL', KEYS[1])";

/// Parses `CANVASCHAT_REBALANCE_TOLERANCE`: a fraction above the fleet mean, 0.05 .. 10.
pub fn parse_tolerance(raw: &str) -> Result<f64, String> {
    let value: f64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("{raw:?} is not a number like 0.2"))?;
    if !(0.05..=10.0).contains(&value) {
        return Err(format!("{value} is outside 0.05 .. 10"));
    }
    Ok(value)
}

/// When and how much a replica sheds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub tolerance: f64,
    /// Most connections closed per round.
    pub rate: usize,
    pub floor: usize,
    /// Rounds in a row above the tolerance before the first shed.
    pub sustain: usize,
}

/// One round's outcome: how many rounds in a row (this one included) the replica has been
/// above its share, and how many connections to close now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub rounds_over: usize,
    pub shed: usize,
}

impl Policy {
    pub fn from_config(config: &Config) -> Self {
        Policy {
            tolerance: config.rebalance_tolerance,
            rate: config.rebalance_rate as usize,
            floor: FLOOR,
            sustain: SUSTAIN_ROUNDS,
        }
    }

    /// [`Self::shed_count`], once the replica has been above its share for `sustain` rounds
    /// in a row; `rounds_over` is the streak before this round.
    pub fn decide(&self, rounds_over: usize, own: usize, others: &[usize]) -> Decision {
        let shed = self.shed_count(own, others);
        if shed == 0 {
            return Decision {
                rounds_over: 0,
                shed: 0,
            };
        }
        let rounds_over = rounds_over.saturating_add(1);
        Decision {
            rounds_over,
            shed: if rounds_over >= self.sustain { shed } else { 0 },
        }
    }

    /// Connections to close this round, holding `own` while the other live replicas hold
    /// `others`: none unless `own` is above `1 + tolerance` times the fleet mean, then
    /// down towards the mean (never below it nor the floor), at most `rate`.
    pub fn shed_count(&self, own: usize, others: &[usize]) -> usize {
        if others.is_empty() {
            return 0;
        }
        let mean = fleet_mean(own, others);
        if own as f64 <= (1.0 + self.tolerance) * mean {
            return 0;
        }
        let keep = (mean.ceil() as usize).max(self.floor);
        own.saturating_sub(keep).min(self.rate)
    }
}

pub fn fleet_mean(own: usize, others: &[usize]) -> f64 {
    (own + others.iter().sum::<usize>()) as f64 / (others.len() + 1) as f64
}

/// Picks up to `n` connections to close from `channels` (each a channel's connections as
/// (age rank, handle), lower rank = older). Round-robin over the channels, largest first,
/// oldest connection of each first, so a round spreads its closes; a channel with several
/// connections here always keeps one this round, so no channel is emptied at once.
/// Connections alone in their channel go last.
pub fn choose<T>(channels: Vec<Vec<(u64, T)>>, n: usize) -> Vec<T> {
    let mut queues: Vec<VecDeque<(u64, T)>> = channels
        .into_iter()
        .filter(|c| !c.is_empty())
        .map(|mut c| {
            c.sort_by_key(|(rank, _)| *rank);
            VecDeque::from(c)
        })
        .collect();
    queues.sort_by_key(|q| (Reverse(q.len()), q.front().map(|(rank, _)| *rank)));
    let (mut shared, singles): (Vec<_>, Vec<_>) = queues.into_iter().partition(|q| q.len() > 1);
    let mut picked = Vec::with_capacity(n);
    let mut took = true;
    while took && picked.len() < n {
        took = false;
        for queue in shared.iter_mut().filter(|q| q.len() > 1) {
            if picked.len() == n {
                break;
            }
            if let Some((_, handle)) = queue.pop_front() {
                picked.push(handle);
                took = true;
            }
        }
    }
    let room = n - picked.len();
    picked.extend(
        singles
            .into_iter()
            .filter_map(|mut q| q.pop_front().map(|(_, handle)| handle))
            .take(room),
    );
    picked
}

/// The fleet's connection counts in Redis, and for how many rounds in a row this replica has
/// been above its share of them.
pub struct FleetLoad {
    conn: Arc<RedisConnection>,
    node: String,
    report: Script,
    rounds_over: AtomicUsize,
}

impl FleetLoad {
    pub fn new(conn: Arc<RedisConnection>, node: String) -> Self {
        FleetLoad {
            conn,
            node,
            report: Script::from_lua(format!("{NOW_MS}{REPORT}")),
            rounds_over: AtomicUsize::new(0),
        }
    }

    /// Publishes this replica's count and returns the other live replicas' counts.
    pub async fn report(&self, own: usize) -> Result<Vec<usize>, BrokerError> {
        let reply: Vec<String> = self
            .report
            .evalsha_with_reload(
                &self.conn.client,
                vec![COUNTS_KEY, SEEN_KEY],
                vec![
                    self.node.clone(),
                    own.to_string(),
                    ENTRY_TTL.as_millis().to_string(),
                ],
            )
            .await
            .map_err(redis_err("fleet load report"))?;
        Ok(others(&reply, &self.node))
    }
}

/// The counts of a flat `node, count` reply, without `own`'s; unreadable entries are skipped.
fn others(reply: &[String], own: &str) -> Vec<usize> {
    let fleet: HashMap<&str, usize> = reply
        .chunks_exact(2)
        .filter_map(|pair| Some((pair[0].as_str(), pair[1].parse().ok()?)))
        .collect();
    fleet
        .into_iter()
        .filter(|(node, _)| *node != own)
        .map(|(_, count)| count)
        .collect()
}

/// One round: publish, read, and shed what the policy says. A draining replica keeps
/// reporting (its connections still count until they move) but never sheds; with
/// rebalancing off it reports and sheds nothing, so the replicas that rebalance see the
/// real fleet; while Redis fails, nothing happens and the streak starts over. The streak is
/// counted (and shown) also where shedding is off, so it is visible when one would have come.
pub async fn round(node: &Node, fleet: &FleetLoad, policy: Policy) {
    let own = node.hub.connection_count();
    let others = match fleet.report(own).await {
        Ok(others) => others,
        Err(error) => {
            tracing::debug!(%error, "fleet load report failed; not rebalancing this round");
            fleet.rounds_over.store(0, Ordering::Relaxed);
            node.metrics.rebalance_rounds_over.set(0);
            return;
        }
    };
    node.metrics
        .rebalance_fleet_mean
        .set(fleet_mean(own, &others));
    let Decision { rounds_over, shed } =
        policy.decide(fleet.rounds_over.load(Ordering::Relaxed), own, &others);
    fleet.rounds_over.store(rounds_over, Ordering::Relaxed);
    node.metrics
        .rebalance_rounds_over
        .set(i64::try_from(rounds_over).unwrap_or(i64::MAX));
    if !node.config.rebalance || node.draining.is_cancelled() || shed == 0 {
        return;
    }
    let picked: Vec<Arc<Closer>> = choose(node.hub.closers_by_channel(), shed);
    tracing::info!(
        own,
        replicas = others.len() + 1,
        mean = fleet_mean(own, &others),
        shed = picked.len(),
        "above the fleet's mean; closing connections so they reconnect elsewhere"
    );
    for closer in &picked {
        closer.close_after_flush(close_code::REBALANCE, REASON);
    }
    node.metrics.rebalance_shed.inc_by(picked.len() as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        tolerance: 0.2,
        rate: 5,
        floor: FLOOR,
        sustain: 3,
    };

    #[test]
    fn a_lone_replica_or_one_within_tolerance_sheds_nothing() {
        assert_eq!(POLICY.shed_count(500, &[]), 0);
        // mean 55: 60 is within 20 % of it.
        assert_eq!(POLICY.shed_count(60, &[50]), 0);
        assert_eq!(POLICY.shed_count(50, &[60]), 0);
    }

    #[test]
    fn above_tolerance_sheds_at_most_the_rate_towards_the_mean() {
        assert_eq!(POLICY.shed_count(120, &[0]), 5);
        let fast = Policy {
            rate: 100,
            ..POLICY
        };
        // mean 60: sheds down to the mean, not further.
        assert_eq!(fast.shed_count(120, &[0]), 60);
        // mean 40.33 -> keeps 41.
        assert_eq!(fast.shed_count(100, &[10, 11]), 59);
    }

    #[test]
    fn never_sheds_below_the_floor() {
        // mean 6: far above it, but only 2 above the floor.
        assert_eq!(POLICY.shed_count(12, &[0]), 2);
        assert_eq!(POLICY.shed_count(FLOOR, &[0, 0, 0]), 0);
    }

    #[test]
    fn sheds_only_after_sustain_rounds_in_a_row_above_the_share() {
        let over = |rounds_over, shed| Decision { rounds_over, shed };
        assert_eq!(POLICY.decide(0, 120, &[0]), over(1, 0));
        assert_eq!(POLICY.decide(1, 120, &[0]), over(2, 0));
        assert_eq!(POLICY.decide(2, 120, &[0]), over(3, 5));
        // Once shedding, every round above the share sheds.
        assert_eq!(POLICY.decide(3, 115, &[5]), over(4, 5));
    }

    #[test]
    fn a_transient_imbalance_sheds_nothing_and_starts_the_streak_over() {
        // A reload storm: two rounds over, then back within the tolerance.
        let mut rounds_over = 0;
        for (own, other) in [(40, 10), (40, 10), (26, 24), (40, 10), (40, 10)] {
            let decision = POLICY.decide(rounds_over, own, &[other]);
            assert_eq!(
                decision.shed, 0,
                "{own} vs {other} after {rounds_over} rounds over"
            );
            rounds_over = decision.rounds_over;
        }
        assert_eq!(rounds_over, 2);
        // Within the floor or the tolerance is not over either.
        assert_eq!(POLICY.decide(7, FLOOR, &[0]).rounds_over, 0);
        assert_eq!(POLICY.decide(7, 60, &[50]).rounds_over, 0);
    }

    #[test]
    fn tolerance_is_parsed_and_bounded() {
        assert_eq!(parse_tolerance("0.2"), Ok(0.2));
        assert!(parse_tolerance("abc").is_err());
        assert!(parse_tolerance("0").is_err());
        assert!(parse_tolerance("-1").is_err());
        assert!(parse_tolerance("NaN").is_err());
    }

    #[test]
    fn the_fleet_reply_skips_this_replica_and_bad_entries() {
        let reply: Vec<String> = ["me", "7", "a", "3", "b", "x", "c"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(others(&reply, "me"), vec![3]);
    }

    fn channel(name: &str, ranks: &[u64]) -> Vec<(u64, String)> {
        ranks.iter().map(|r| (*r, format!("{name}{r}"))).collect()
    }

    #[test]
    fn spreads_over_channels_largest_first_oldest_first() {
        let picked = choose(
            vec![
                channel("a", &[9, 3, 5]),
                channel("b", &[1, 2, 4, 6]),
                channel("c", &[7, 8]),
            ],
            4,
        );
        assert_eq!(picked, vec!["b1", "a3", "c7", "b2"]);
    }

    #[test]
    fn never_empties_a_channel_with_several_connections_in_one_round() {
        let picked = choose(vec![channel("a", &[1, 2]), channel("b", &[3, 4, 5])], 10);
        assert_eq!(picked, vec!["b3", "a1", "b4"]);
    }

    #[test]
    fn connections_alone_in_their_channel_go_last() {
        let picked = choose(
            vec![
                channel("solo", &[1]),
                channel("pair", &[2, 3]),
                channel("x", &[0]),
            ],
            3,
        );
        assert_eq!(picked, vec!["pair2", "x0", "solo1"]);
        assert!(choose(Vec::<Vec<(u64, String)>>::new(), 3).is_empty());
        assert!(choose(vec![channel("a", &[1, 2])], 0).is_empty());
    }
}
