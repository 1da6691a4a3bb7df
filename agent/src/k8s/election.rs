//! One Kubernetes Lease per announced IP, decided as a pure state machine: fed what the lease
//! watch shows, whether this node is eligible, and the results of its own writes; it says what
//! to write next, when to wake up, and whether to announce right now. No I/O and no clock of
//! its own: every call takes `now`, so the tests drive time by hand.
//!
//! The rules, and why:
//! - Expiry is judged by when *this node* saw the lease last change, plus the lease's duration
//!   (client-go's rule): clocks of different nodes never get compared.
//! - The holder renews every [`Timings::renew_interval`] and, if renewals fail, stops
//!   announcing at last success + interval + renew deadline, which is always before anyone
//!   else may take over (last change + duration).
//! - Except in an API outage: when renewals fail with transport errors (no answer, 5xx, 429),
//!   nobody else can take the lease either, so the holder keeps announcing, until it sees
//!   another MAC claim the address on the wire ([`Election::wire_conflict`]) or learns that the
//!   lease changed hands. An outage of the API server alone does not take the network down.
//! - A free or expired lease is tried by the best-ranked eligible node at once and by the
//!   others after a delay that grows with their rank (rendezvous hashing), which spreads the
//!   addresses over the nodes instead of piling them onto whichever asks first.
//! - Every write carries the resourceVersion it was decided on; a conflict means "look again".

use std::time::Duration;

use tokio::time::Instant;

/// Lease timings, with Cilium's defaults and validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(5),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Timings that cannot work.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimingsError {
    #[error("lease duration must be greater than the renew deadline")]
    DurationNotAboveDeadline,
    #[error("renew deadline must be greater than 1.2 × the retry period")]
    DeadlineNotAboveRetry,
    #[error("lease timings must be positive")]
    NotPositive,
}

impl Timings {
    /// Cilium's rules (`pkg/l2announcer`): duration > deadline > 1.2 × retry period.
    pub fn validate(&self) -> Result<(), TimingsError> {
        if self.retry_period.is_zero() || self.renew_deadline.is_zero() {
            return Err(TimingsError::NotPositive);
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(TimingsError::DurationNotAboveDeadline);
        }
        if self.renew_deadline.as_secs_f64() <= self.retry_period.as_secs_f64() * 1.2 {
            return Err(TimingsError::DeadlineNotAboveRetry);
        }
        Ok(())
    }

    /// How often a holder renews: a third of the duration, but early enough that a holder
    /// whose renewals fail stops (interval + deadline) before the lease can expire (duration).
    pub fn renew_interval(&self) -> Duration {
        (self.lease_duration / 3).min(self.lease_duration.saturating_sub(self.renew_deadline) / 2)
    }

    /// How long a node ranked `rank` waits before trying a free or expired lease.
    pub fn acquire_delay(&self, rank: usize) -> Duration {
        (self.retry_period / 2) * rank.min(4) as u32
    }
}

/// What the watch shows of a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub holder: Option<String>,
    /// The lease's own duration (`spec.leaseDurationSeconds`), if set.
    pub duration: Option<Duration>,
    /// `spec.renewTime` as written, compared only for change, never with a clock.
    pub renew_time: Option<String>,
    pub transitions: i32,
    pub resource_version: String,
}

impl LeaseRecord {
    /// Whether `other` is the same lease state (only the fields a holder changes).
    fn same_claim(&self, other: &LeaseRecord) -> bool {
        self.holder == other.holder
            && self.renew_time == other.renew_time
            && self.transitions == other.transitions
    }
}

/// A write the shell should make, each conditioned on the resourceVersion given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Create the lease held by us (it does not exist).
    Create,
    /// Renew our lease.
    Renew { resource_version: String },
    /// Take a free or expired lease: holder us, transitions + 1 if it changes hands.
    Acquire {
        resource_version: String,
        transitions: i32,
    },
    /// Give the lease up: holder cleared, so watching candidates take over at once.
    Release { resource_version: String },
}

/// How a write ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteResult {
    /// Written; the lease as the server returned it.
    Ok(LeaseRecord),
    /// 409 (stale resourceVersion, or the lease already exists): look again.
    Conflict,
    /// No answer, 5xx, 429: the API server is unreachable or overloaded.
    Unavailable,
    /// Any other refusal (403, 422, …).
    Rejected,
}

#[derive(Clone, Debug)]
struct Observed {
    record: LeaseRecord,
    /// When this node saw the claim (holder, renew time, transitions) last change.
    changed_at: Instant,
    /// The holder, or after a release the node that released it: it is leaving, so it does
    /// not count among the nodes ranked ahead of this one.
    last_holder: Option<String>,
}

#[derive(Clone, Debug)]
struct Holding {
    last_renew: Instant,
    /// The last renewal failed with a transport error (not a refusal or conflict).
    unavailable_since: Option<Instant>,
}

/// The election for one IP on this node.
#[derive(Debug)]
pub struct Election {
    me: String,
    timings: Timings,
    keep_on_outage: bool,
    lease: Option<Observed>,
    /// The watch has listed leases at least once: before that, "absent" means "unknown".
    synced: bool,
    holding: Option<Holding>,
    eligible: bool,
    /// The eligible nodes ranked ahead of this one, best first.
    ahead: Vec<String>,
    in_flight: bool,
    /// Earliest time for the next write attempt (after a failure).
    retry_at: Option<Instant>,
    /// Another MAC claimed the address on the wire while we held it.
    wire_conflict: bool,
    /// Since when this node has been trying to get a free lease (for takeover latency).
    wanted_since: Option<Instant>,
    /// The lease watch is down: renewals may be happening unseen.
    blind: bool,
    /// When the lease of the acquisition in flight became available to this node.
    available_since: Option<Instant>,
}

/// What [`Election::decide`] says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub write: Option<Write>,
    /// When to call `decide` again at the latest.
    pub wake_at: Option<Instant>,
}

impl Election {
    pub fn new(me: impl Into<String>, timings: Timings, keep_on_outage: bool) -> Self {
        Self {
            me: me.into(),
            timings,
            keep_on_outage,
            lease: None,
            synced: false,
            holding: None,
            eligible: false,
            ahead: Vec::new(),
            in_flight: false,
            retry_at: None,
            wire_conflict: false,
            wanted_since: None,
            blind: false,
            available_since: None,
        }
    }

    /// The lease watch failed: until it has listed again ([`Election::relisted`]) this node
    /// cannot see renewals, so it takes nothing over. A holder keeps renewing.
    pub fn set_blind(&mut self) {
        self.blind = true;
    }

    /// The lease as the watch now shows it (`None`: it does not exist).
    pub fn observe(&mut self, record: Option<LeaseRecord>, now: Instant) {
        self.synced = true;
        match record {
            None => {
                self.lease = None;
                if self.holding.is_some() && !self.in_flight {
                    // Deleted under us: we no longer hold anything.
                    self.holding = None;
                }
            }
            Some(record) => {
                let changed_at = match &self.lease {
                    Some(old) if old.record.same_claim(&record) => old.changed_at,
                    _ => now,
                };
                let last_holder = record
                    .holder
                    .clone()
                    .or_else(|| self.lease.as_ref().and_then(|o| o.last_holder.clone()));
                if self.holding.is_some() && record.holder.as_deref() != Some(&self.me) {
                    // Somebody else holds it now: we lost it.
                    self.holding = None;
                }
                self.lease = Some(Observed {
                    record,
                    changed_at,
                    last_holder,
                });
            }
        }
    }

    /// The lease as a fresh list of the watch shows it, after a (re)connection. Expiry counts
    /// from now: while the watch was down this node could not see renewals, so it must not
    /// conclude there were none (after an API outage the holder, which kept announcing,
    /// renews first instead of losing the address to a node that merely lost sight of it).
    pub fn relisted(&mut self, record: Option<LeaseRecord>, now: Instant) {
        self.blind = false;
        self.lease = None;
        self.observe(record, now);
    }

    /// Whether this node may hold the lease, and the eligible nodes ranked ahead of it (best
    /// first; its rank is their number).
    pub fn set_eligible(&mut self, eligible: bool, ahead: Vec<String>, now: Instant) {
        if eligible && !self.eligible {
            self.wanted_since = Some(now);
        }
        self.eligible = eligible;
        self.ahead = ahead;
    }

    /// This node's rank for a lease last held by `last_holder`: the nodes ahead of it, less
    /// that one. After a graceful stop (a release) or a crash (an expiry) the node that held
    /// the lease is going away; counting it would make the next node wait a rank step.
    fn rank_after(&self, last_holder: Option<&str>) -> usize {
        self.ahead
            .iter()
            .filter(|n| Some(n.as_str()) != last_holder)
            .count()
    }

    /// The XDP program counted another MAC claiming this address.
    pub fn wire_conflict(&mut self) {
        if self.holding.is_some() {
            self.wire_conflict = true;
        }
    }

    /// The result of the write `decide` asked for.
    pub fn written(&mut self, write: &Write, result: WriteResult, now: Instant) {
        self.in_flight = false;
        match (write, result) {
            (Write::Release { .. }, WriteResult::Ok(record)) => {
                self.holding = None;
                self.observe(Some(record), now);
            }
            (Write::Release { .. }, _) => {
                // Our entries are gone already; the lease will expire by itself.
                self.holding = None;
                self.retry_at = Some(now + self.timings.retry_period);
            }
            (_, WriteResult::Ok(record)) => {
                self.holding = Some(Holding {
                    last_renew: now,
                    unavailable_since: None,
                });
                self.wire_conflict = false;
                self.retry_at = None;
                self.observe(Some(record), now);
            }
            (_, WriteResult::Unavailable) => {
                if let Some(h) = &mut self.holding {
                    h.unavailable_since.get_or_insert(now);
                }
                self.retry_at = Some(now + self.timings.retry_period);
            }
            (_, WriteResult::Conflict | WriteResult::Rejected) => {
                // Someone else wrote first, or we may not write: not ours until proven.
                if let Some(h) = &mut self.holding {
                    h.unavailable_since = None;
                }
                if matches!(write, Write::Renew { .. }) {
                    self.holding = None;
                }
                self.retry_at = Some(now + self.timings.retry_period);
            }
        }
    }

    /// Holding the lease or waiting for a write: not to be forgotten yet.
    pub fn busy(&self) -> bool {
        self.holding.is_some() || self.in_flight
    }

    /// Whether this node holds the lease (whatever the deadline says).
    pub fn holds(&self) -> bool {
        self.holding.is_some()
    }

    /// After a successful acquisition: how long since the lease became available to this
    /// node (free, expired, or wanted when it did not exist yet). Reported once.
    pub fn take_takeover_latency(&mut self, now: Instant) -> Option<std::time::Duration> {
        self.available_since
            .take()
            .map(|since| now.saturating_duration_since(since))
    }

    /// Whether to announce the address right now.
    pub fn announcing(&self, now: Instant) -> bool {
        let Some(h) = &self.holding else {
            return false;
        };
        if !self.eligible || self.wire_conflict {
            return false;
        }
        let deadline = h.last_renew + self.timings.renew_interval() + self.timings.renew_deadline;
        now < deadline || (self.keep_on_outage && h.unavailable_since.is_some())
    }

    /// The next write to make, if any, and when to look again.
    pub fn decide(&mut self, now: Instant) -> Decision {
        if self.in_flight || !self.synced {
            return Decision {
                write: None,
                wake_at: None,
            };
        }
        let mut wake = Wakes::default();
        if let Some(at) = self.retry_at
            && now < at
        {
            wake.at(at);
            return wake.decision(None);
        }
        let write = match (&self.holding, &self.lease) {
            (Some(h), Some(lease)) => {
                if !self.eligible || self.wire_conflict {
                    Some(Write::Release {
                        resource_version: lease.record.resource_version.clone(),
                    })
                } else {
                    let due = h.last_renew + self.timings.renew_interval();
                    if now >= due {
                        Some(Write::Renew {
                            resource_version: lease.record.resource_version.clone(),
                        })
                    } else {
                        wake.at(due);
                        // Wake at the deadline too, so that announcing() is re-read then.
                        wake.at(due + self.timings.renew_deadline);
                        None
                    }
                }
            }
            // Holding but the lease vanished from the watch: write it again.
            (Some(_), None) => Some(Write::Create),
            (None, _) if !self.eligible || self.blind => None,
            (None, None) => {
                let wanted = self.wanted_since.unwrap_or(now);
                let at = wanted + self.timings.acquire_delay(self.ahead.len());
                if now >= at {
                    self.available_since = Some(wanted);
                    Some(Write::Create)
                } else {
                    wake.at(at);
                    None
                }
            }
            (None, Some(lease)) => {
                let record = &lease.record;
                let free_since = match record.holder.as_deref() {
                    // Ours by name (this node restarted): take it back at once.
                    Some(h) if h == self.me => Some(lease.changed_at),
                    None | Some("") => Some(lease.changed_at),
                    Some(_) => {
                        let duration = record.duration.unwrap_or(self.timings.lease_duration);
                        let expiry = lease.changed_at + duration;
                        if now >= expiry {
                            Some(expiry)
                        } else {
                            wake.at(expiry);
                            None
                        }
                    }
                };
                match free_since {
                    Some(since) => {
                        let ours = record.holder.as_deref() == Some(self.me.as_str());
                        let at = if ours {
                            since
                        } else {
                            since
                                + self
                                    .timings
                                    .acquire_delay(self.rank_after(lease.last_holder.as_deref()))
                        };
                        if now >= at {
                            let wanted = self.wanted_since.unwrap_or(since);
                            self.available_since = Some(since.max(wanted));
                            let changes_hands = !ours;
                            Some(Write::Acquire {
                                resource_version: record.resource_version.clone(),
                                transitions: record.transitions + i32::from(changes_hands),
                            })
                        } else {
                            wake.at(at);
                            None
                        }
                    }
                    None => None,
                }
            }
        };
        if write.is_some() {
            self.in_flight = true;
        }
        wake.decision(write)
    }

    /// On shutdown: the release to write if we hold the lease (after the entries are gone).
    pub fn release(&mut self) -> Option<Write> {
        self.eligible = false;
        let lease = self.lease.as_ref()?;
        self.holding.as_ref()?;
        self.in_flight = true;
        Some(Write::Release {
            resource_version: lease.record.resource_version.clone(),
        })
    }

    /// The lease as last seen.
    pub fn lease(&self) -> Option<&LeaseRecord> {
        self.lease.as_ref().map(|o| &o.record)
    }
}

#[derive(Default)]
struct Wakes(Option<Instant>);

impl Wakes {
    fn at(&mut self, t: Instant) {
        self.0 = Some(self.0.map_or(t, |w| w.min(t)));
    }

    fn decision(self, write: Option<Write>) -> Decision {
        Decision {
            write,
            wake_at: self.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn record(holder: Option<&str>, renew: &str, rv: &str) -> LeaseRecord {
        LeaseRecord {
            holder: holder.map(Into::into),
            duration: Some(15 * S),
            renew_time: Some(renew.into()),
            transitions: 0,
            resource_version: rv.into(),
        }
    }

    fn node(name: &str, now: Instant) -> Election {
        let mut e = Election::new(name, Timings::default(), true);
        e.set_eligible(true, ahead(0), now);
        e
    }

    #[test]
    fn cilium_defaults_and_validation() {
        let t = Timings::default();
        assert_eq!(t.validate(), Ok(()));
        assert_eq!(t.renew_interval(), 5 * S);
        let bad = Timings {
            lease_duration: 5 * S,
            ..t
        };
        assert_eq!(bad.validate(), Err(TimingsError::DurationNotAboveDeadline));
        let bad = Timings {
            retry_period: 5 * S,
            ..t
        };
        assert_eq!(bad.validate(), Err(TimingsError::DeadlineNotAboveRetry));
        // A long renew deadline shortens the interval so that interval + deadline < duration.
        let long = Timings {
            renew_deadline: 12 * S,
            ..t
        };
        assert!(long.renew_interval() + long.renew_deadline < long.lease_duration);
    }

    #[test]
    fn nothing_is_written_before_the_watch_has_listed() {
        let now = Instant::now();
        let mut e = node("a", now);
        assert_eq!(e.decide(now).write, None);
        e.observe(None, now);
        assert_eq!(e.decide(now).write, Some(Write::Create));
    }

    #[test]
    fn creates_holds_renews_on_cadence() {
        let t0 = Instant::now();
        let mut e = node("a", t0);
        e.observe(None, t0);
        let w = e.decide(t0).write.unwrap();
        assert_eq!(e.decide(t0).write, None, "one write in flight at a time");
        e.written(&w, WriteResult::Ok(record(Some("a"), "r1", "1")), t0);
        assert!(e.announcing(t0));
        let d = e.decide(t0 + S);
        assert_eq!(d.write, None);
        assert_eq!(d.wake_at, Some(t0 + 5 * S));
        let w = e.decide(t0 + 5 * S).write.unwrap();
        assert_eq!(
            w,
            Write::Renew {
                resource_version: "1".into()
            }
        );
    }

    #[test]
    fn a_candidate_waits_for_expiry_judged_by_its_own_observation() {
        let t0 = Instant::now();
        let mut b = node("b", t0);
        // Whatever the holder's clock wrote, expiry counts from when b saw the change.
        b.observe(Some(record(Some("a"), "1970-01-01T00:00:00Z", "5")), t0);
        let d = b.decide(t0);
        assert_eq!(d.write, None);
        assert_eq!(d.wake_at, Some(t0 + 15 * S));
        // A renewal seen at t0+5 pushes expiry to t0+20.
        b.observe(Some(record(Some("a"), "r2", "6")), t0 + 5 * S);
        assert_eq!(b.decide(t0 + 15 * S).write, None);
        // A change of resourceVersion alone (labels) does not.
        b.observe(Some(record(Some("a"), "r2", "7")), t0 + 10 * S);
        assert_eq!(
            b.decide(t0 + 20 * S).write,
            Some(Write::Acquire {
                resource_version: "7".into(),
                transitions: 1
            })
        );
    }

    #[test]
    fn a_relist_restarts_the_expiry_clock() {
        let t0 = Instant::now();
        let mut b = node("b", t0);
        b.observe(Some(record(Some("a"), "r1", "5")), t0);
        // The watch was down for 20 s; after the relist the same record is seen again.
        b.relisted(Some(record(Some("a"), "r1", "5")), t0 + 20 * S);
        assert_eq!(b.decide(t0 + 20 * S).write, None, "not expired: just seen");
        assert!(matches!(
            b.decide(t0 + 35 * S).write,
            Some(Write::Acquire { .. })
        ));
    }

    #[test]
    fn a_blind_candidate_takes_nothing_until_it_has_relisted() {
        let t0 = Instant::now();
        let mut b = node("b", t0);
        b.observe(Some(record(Some("a"), "r1", "5")), t0);
        b.set_blind();
        assert_eq!(
            b.decide(t0 + 60 * S).write,
            None,
            "expired by the clock, but unseen"
        );
        b.relisted(Some(record(Some("a"), "r1", "5")), t0 + 60 * S);
        assert!(matches!(
            b.decide(t0 + 75 * S).write,
            Some(Write::Acquire { .. })
        ));
    }

    #[test]
    fn takeover_latency_counts_from_expiry_not_from_the_start() {
        let t0 = Instant::now();
        let mut b = node("b", t0);
        b.observe(Some(record(Some("a"), "r1", "5")), t0);
        let w = b.decide(t0 + 16 * S).write.unwrap();
        b.written(
            &w,
            WriteResult::Ok(record(Some("b"), "r2", "6")),
            t0 + 16 * S + S / 10,
        );
        assert_eq!(
            b.take_takeover_latency(t0 + 16 * S + S / 10),
            Some(S + S / 10),
            "expired at t0+15, held at t0+16.1"
        );
        assert_eq!(b.take_takeover_latency(t0 + 17 * S), None, "reported once");
    }

    /// `n` nodes ranked ahead, none of them the ones the tests name.
    fn ahead(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("ahead-{i}")).collect()
    }

    #[test]
    fn the_node_that_released_or_let_expire_does_not_count_ahead() {
        let t0 = Instant::now();
        let ranked = |me: &str, ahead: &[&str]| {
            let mut e = node(me, t0);
            e.set_eligible(true, ahead.iter().map(|s| s.to_string()).collect(), t0);
            e.observe(Some(record(Some("a"), "r1", "5")), t0);
            e
        };
        // "a" stops gracefully: "b", ranked right after it, takes the lease at once; "c",
        // after both, waits one step (not two).
        let mut b = ranked("b", &["a"]);
        let mut c = ranked("c", &["a", "b"]);
        for e in [&mut b, &mut c] {
            e.observe(Some(record(None, "r2", "6")), t0 + S);
        }
        assert!(matches!(
            b.decide(t0 + S).write,
            Some(Write::Acquire { .. })
        ));
        assert_eq!(c.decide(t0 + S).wake_at, Some(t0 + S + S));
        // "a" crashes: at expiry (15 s after its last renewal was seen) "b" takes over at once.
        let mut b = ranked("b", &["a"]);
        let d = b.decide(t0 + 15 * S - S / 10);
        assert_eq!((d.write, d.wake_at), (None, Some(t0 + 15 * S)));
        assert!(matches!(
            b.decide(t0 + 15 * S).write,
            Some(Write::Acquire { .. })
        ));
        // A node that did not hold it still counts.
        let mut c = ranked("c", &["b"]);
        c.observe(Some(record(None, "r2", "6")), t0 + S);
        assert_eq!(c.decide(t0 + S).wake_at, Some(t0 + S + S));
    }

    #[test]
    fn a_released_lease_is_taken_at_once_by_the_best_ranked_and_later_by_others() {
        let t0 = Instant::now();
        let mut first = node("b", t0);
        let mut second = node("c", t0);
        second.set_eligible(true, ahead(2), t0);
        for e in [&mut first, &mut second] {
            e.observe(Some(record(Some("a"), "r1", "5")), t0);
            e.observe(Some(record(None, "r1", "6")), t0 + S);
        }
        assert!(matches!(
            first.decide(t0 + S).write,
            Some(Write::Acquire { .. })
        ));
        let d = second.decide(t0 + S);
        assert_eq!(d.write, None);
        assert_eq!(d.wake_at, Some(t0 + S + 2 * S));
    }

    #[test]
    fn a_holder_whose_renewals_are_refused_stops_before_expiry() {
        let t0 = Instant::now();
        let mut e = Election::new("a", Timings::default(), true);
        e.set_eligible(true, ahead(0), t0);
        e.observe(None, t0);
        let w = e.decide(t0).write.unwrap();
        e.written(&w, WriteResult::Ok(record(Some("a"), "r1", "1")), t0);
        let w = e.decide(t0 + 5 * S).write.unwrap();
        e.written(&w, WriteResult::Conflict, t0 + 5 * S);
        assert!(!e.holds(), "a conflict on renew means somebody else wrote");
        assert!(!e.announcing(t0 + 5 * S));
    }

    #[test]
    fn renew_deadline_stops_announcing_unless_the_api_is_unreachable() {
        let t0 = Instant::now();
        for keep_on_outage in [false, true] {
            let mut e = Election::new("a", Timings::default(), keep_on_outage);
            e.set_eligible(true, ahead(0), t0);
            e.observe(None, t0);
            let w = e.decide(t0).write.unwrap();
            e.written(&w, WriteResult::Ok(record(Some("a"), "r1", "1")), t0);
            let w = e.decide(t0 + 5 * S).write.unwrap();
            e.written(&w, WriteResult::Unavailable, t0 + 5 * S);
            assert!(e.announcing(t0 + 9 * S), "within interval + deadline");
            // Past interval + deadline (10 s), still 5 s before anyone may take over.
            assert_eq!(e.announcing(t0 + 11 * S), keep_on_outage);
            if keep_on_outage {
                // Someone else claiming the address on the wire ends it.
                e.wire_conflict();
                assert!(!e.announcing(t0 + 11 * S));
                assert!(matches!(
                    e.decide(t0 + 11 * S).write,
                    Some(Write::Release { .. })
                ));
            }
        }
    }

    #[test]
    fn losing_the_lease_to_another_holder_stops_announcing_at_once() {
        let t0 = Instant::now();
        let mut e = node("a", t0);
        e.observe(None, t0);
        let w = e.decide(t0).write.unwrap();
        e.written(&w, WriteResult::Ok(record(Some("a"), "r1", "1")), t0);
        e.observe(Some(record(Some("b"), "r9", "9")), t0 + S);
        assert!(!e.holds());
        assert!(!e.announcing(t0 + S));
    }

    #[test]
    fn becoming_ineligible_releases() {
        let t0 = Instant::now();
        let mut e = node("a", t0);
        e.observe(None, t0);
        let w = e.decide(t0).write.unwrap();
        e.written(&w, WriteResult::Ok(record(Some("a"), "r1", "1")), t0);
        e.set_eligible(false, ahead(0), t0 + S);
        assert!(
            !e.announcing(t0 + S),
            "stops answering before the release is written"
        );
        let w = e.decide(t0 + S).write.unwrap();
        assert_eq!(
            w,
            Write::Release {
                resource_version: "1".into()
            }
        );
        e.written(&w, WriteResult::Ok(record(None, "r1", "2")), t0 + S);
        assert!(!e.holds());
        assert_eq!(e.decide(t0 + 2 * S).write, None, "ineligible: no retry");
    }

    #[test]
    fn a_restarted_holder_takes_its_own_lease_back_without_waiting() {
        let t0 = Instant::now();
        let mut e = node("a", t0);
        e.observe(Some(record(Some("a"), "r1", "3")), t0);
        assert_eq!(
            e.decide(t0).write,
            Some(Write::Acquire {
                resource_version: "3".into(),
                transitions: 0
            })
        );
    }

    #[test]
    fn a_lost_create_race_waits_for_the_watch() {
        let t0 = Instant::now();
        let mut e = node("a", t0);
        e.observe(None, t0);
        let w = e.decide(t0).write.unwrap();
        e.written(&w, WriteResult::Conflict, t0);
        assert!(!e.holds());
        let d = e.decide(t0);
        assert_eq!(d.write, None);
        assert_eq!(d.wake_at, Some(t0 + 2 * S));
        e.observe(Some(record(Some("b"), "r1", "4")), t0 + S);
        assert_eq!(e.decide(t0 + 3 * S).write, None, "held by b, not expired");
    }

    #[test]
    fn two_nodes_never_both_announce() {
        // Drive two elections against one simulated API server with preconditions, with
        // failures and restarts, and check the invariant at every step.
        let t0 = Instant::now();
        let mut server: Option<LeaseRecord> = None;
        let mut rv = 0u64;
        let mut nodes = [node("a", t0), node("b", t0)];
        nodes[1].set_eligible(true, ahead(1), t0);
        for n in &mut nodes {
            n.observe(None, t0);
        }
        let mut now = t0;
        let mut gap = 0;
        for step in 0..400u32 {
            now += Duration::from_millis(250);
            for i in 0..2 {
                // Node a goes ineligible for a while, then comes back.
                if i == 0 {
                    nodes[0].set_eligible(!(100..200).contains(&step), ahead(0), now);
                }
                if let Some(w) = nodes[i].decide(now).write {
                    let current = server.as_ref().map(|r| r.resource_version.clone());
                    let ok = match &w {
                        Write::Create => server.is_none(),
                        Write::Renew { resource_version }
                        | Write::Acquire {
                            resource_version, ..
                        }
                        | Write::Release { resource_version } => {
                            current.as_deref() == Some(resource_version.as_str())
                        }
                    };
                    let result = if ok {
                        rv += 1;
                        let me = ["a", "b"][i];
                        let holder = match &w {
                            Write::Release { .. } => None,
                            _ => Some(me),
                        };
                        let r = LeaseRecord {
                            holder: holder.map(Into::into),
                            duration: Some(15 * S),
                            renew_time: Some(format!("t{rv}")),
                            transitions: 0,
                            resource_version: rv.to_string(),
                        };
                        server = Some(r.clone());
                        WriteResult::Ok(r)
                    } else {
                        WriteResult::Conflict
                    };
                    nodes[i].written(&w, result, now);
                }
                for n in &mut nodes {
                    n.observe(server.clone(), now);
                }
            }
            let announcing = nodes.iter().filter(|n| n.announcing(now)).count();
            assert!(announcing <= 1, "step {step}: two nodes announce");
            // Handovers leave short gaps (a release, then the next node's ranked delay).
            gap = if announcing == 0 { gap + 1 } else { 0 };
            assert!(gap <= 12, "step {step}: nobody announced for 3 s");
        }
    }
}
