//! Leader election through a `coordination.k8s.io/v1` Lease, the algorithm
//! of client-go's `leaderelection` package, so that of several controller
//! replicas exactly one writes allocations.
//!
//! * No Lease: create it naming ourselves (a second creator gets
//!   `409 AlreadyExists` and follows).
//! * Held by another: follow until the record has not changed for
//!   `leaseDurationSeconds` **as measured by our own clock** since we first
//!   saw it; client-go does not compare `renewTime` with its clock, because
//!   the two machines' clocks need not agree. Then take it over:
//!   `holderIdentity` = us, `acquireTime` = `renewTime` = now,
//!   `leaseTransitions` + 1.
//! * Held by us: renew (`renewTime` = now).
//!
//! Every change is a PUT carrying the `resourceVersion` we read, so of two
//! candidates racing for an expired lease the API server accepts one and
//! answers the other `409 Conflict` (optimistic concurrency). A leader that
//! has not renewed for `renew_deadline` stops acting as leader before its
//! lease can expire anywhere else.
//!
//! [`Elector::decide`] is pure (the Lease read and the two clocks in, the
//! write to make out); [`Elector::try_acquire_or_renew`] does the I/O.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use std::time::{Duration, Instant};

/// Timing, client-go's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease is valid after its last renewal (15 s).
    pub lease_duration: Duration,
    /// A leader that could not renew for this long steps down (10 s).
    pub renew_deadline: Duration,
    /// How often candidates and the leader try (2 s).
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do after reading the Lease.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// No Lease: create this one.
    Create(Lease),
    /// Write this one (renewal or takeover), with the resourceVersion read.
    Update(Lease),
    /// Someone else holds it; it is theirs until `until` on our clock.
    Follow {
        /// The holder.
        holder: String,
        /// When it expires unless renewed.
        until: Instant,
    },
}

/// Our role after a try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// We hold the lease.
    Leader,
    /// Someone else does (or nobody we could see).
    Follower {
        /// The holder, if known.
        holder: Option<String>,
    },
}

/// One candidate.
#[derive(Clone, Debug)]
pub struct Elector {
    /// Our identity (the pod name, or `hostname_pid`).
    pub identity: String,
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// Timing.
    pub timing: Timing,
    /// The holder's record as last read, and when (our clock) it last changed.
    observed: Option<(LeaseSpec, Instant)>,
    /// When we last wrote the lease successfully as its holder.
    renewed: Option<Instant>,
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

impl Elector {
    /// A candidate for the lease `namespace/name`.
    pub fn new(identity: &str, namespace: &str, name: &str, timing: Timing) -> Elector {
        Elector {
            identity: identity.into(),
            namespace: namespace.into(),
            name: name.into(),
            timing,
            observed: None,
            renewed: None,
        }
    }

    /// Whether we are the leader at `now`: we renewed less than
    /// `renew_deadline` ago.
    pub fn is_leader(&self, now: Instant) -> bool {
        self.renewed
            .is_some_and(|t| now.saturating_duration_since(t) < self.timing.renew_deadline)
    }

    /// The write to make after reading `current` (`None`: not found), at
    /// `now` on our monotonic clock and `wall` on the wall clock.
    pub fn decide(&mut self, current: Option<&Lease>, now: Instant, wall: Timestamp) -> Decision {
        let stamp = Some(MicroTime(wall));
        let Some(current) = current else {
            self.observed = None;
            return Decision::Create(Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(secs(self.timing.lease_duration)),
                    acquire_time: stamp.clone(),
                    renew_time: stamp,
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            });
        };
        let spec = current.spec.clone().unwrap_or_default();
        match &self.observed {
            Some((seen, _)) if *seen == spec => {}
            _ => self.observed = Some((spec.clone(), now)),
        }
        let since = self.observed.as_ref().map_or(now, |(_, t)| *t);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.timing.lease_duration, Duration::from_secs);
        if !holder.is_empty() && holder != self.identity && now < since + duration {
            return Decision::Follow {
                holder,
                until: since + duration,
            };
        }
        let mut next = current.clone();
        let s = next.spec.get_or_insert_with(LeaseSpec::default);
        if holder != self.identity {
            s.acquire_time = stamp.clone();
            s.lease_transitions = Some(s.lease_transitions.unwrap_or(0) + 1);
            s.holder_identity = Some(self.identity.clone());
        }
        s.renew_time = stamp;
        s.lease_duration_seconds = Some(secs(self.timing.lease_duration));
        Decision::Update(next)
    }

    /// Reads the Lease and creates, renews or takes it over as
    /// [`Elector::decide`] says. A `409` (someone else wrote first) makes
    /// us a follower; other errors are returned, and leave us leader only
    /// until the renew deadline passes.
    pub async fn try_acquire_or_renew(
        &mut self,
        client: &kube::Client,
        now: Instant,
        wall: Timestamp,
    ) -> kube::Result<Role> {
        let api: Api<Lease> = Api::namespaced(client.clone(), &self.namespace);
        let current = api.get_opt(&self.name).await?;
        let pp = PostParams::default();
        let written = match self.decide(current.as_ref(), now, wall) {
            Decision::Follow { holder, .. } => {
                self.renewed = None;
                return Ok(Role::Follower {
                    holder: Some(holder),
                });
            }
            Decision::Create(l) => api.create(&pp, &l).await,
            Decision::Update(l) => api.replace(&self.name, &pp, &l).await,
        };
        match written {
            Ok(l) => {
                self.observed = l.spec.map(|s| (s, now));
                self.renewed = Some(now);
                Ok(Role::Leader)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                self.renewed = None;
                Ok(Role::Follower { holder: None })
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(who: &str, rv: &str) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("oxvs-controller".into()),
                namespace: Some("kube-system".into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(who.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(Timestamp::from_second(1000).unwrap())),
                lease_transitions: Some(3),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn follows_until_the_record_is_unchanged_for_a_lease_duration_then_takes_over() {
        let mut b = Elector::new("b", "kube-system", "oxvs-controller", Timing::default());
        let t0 = Instant::now();
        // The holder's renewTime is far in the past by our wall clock: it
        // does not matter, only how long we have seen the record unchanged.
        let wall = Timestamp::from_second(5000).unwrap();
        let d = b.decide(Some(&held_by("a", "1")), t0, wall);
        assert!(matches!(d, Decision::Follow { ref holder, .. } if holder == "a"));
        let d = b.decide(Some(&held_by("a", "1")), t0 + Duration::from_secs(14), wall);
        assert!(matches!(d, Decision::Follow { .. }));
        let Decision::Update(l) =
            b.decide(Some(&held_by("a", "1")), t0 + Duration::from_secs(15), wall)
        else {
            panic!("takes over after 15 s")
        };
        let s = l.spec.unwrap();
        assert_eq!(s.holder_identity.as_deref(), Some("b"));
        assert_eq!(s.lease_transitions, Some(4));
        assert_eq!(s.acquire_time, Some(MicroTime(wall)));
        assert_eq!(
            l.metadata.resource_version.as_deref(),
            Some("1"),
            "optimistic concurrency"
        );
    }

    #[test]
    fn a_renewal_restarts_the_follower_clock() {
        let mut b = Elector::new("b", "kube-system", "oxvs-controller", Timing::default());
        let t0 = Instant::now();
        let wall = Timestamp::from_second(5000).unwrap();
        b.decide(Some(&held_by("a", "1")), t0, wall);
        let mut renewed = held_by("a", "2");
        renewed.spec.as_mut().unwrap().renew_time =
            Some(MicroTime(Timestamp::from_second(1010).unwrap()));
        let d = b.decide(Some(&renewed), t0 + Duration::from_secs(10), wall);
        assert!(
            matches!(d, Decision::Follow { until, .. } if until == t0 + Duration::from_secs(25))
        );
    }
}
