//! Which instance should be the primary, given what was observed: a pure function, so every
//! rule is tested over arbitrary states without a database.
//!
//! The rules, after CloudNativePG's: fail over only once the primary has been gone longer than
//! a delay (a restart is not a failover); promote the live standby that has received the most
//! WAL; fence every old primary so two never serve at once; and refuse when too few standbys
//! answer to be sure one of them holds every acknowledged commit. With N instances and commits
//! confirmed by the primary and k standbys (`ANY k (...)`, so W = k + 1 copies), R answering
//! standbys are enough only when R + W > N.
use std::cmp::Reverse;
use std::time::Duration;

use crate::failover::Lsn;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Standby,
}

/// One instance as last observed. A dead instance keeps the role and positions it last had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    /// It answered the last probe.
    pub alive: bool,
    /// Kept from serving as primary until it has rejoined as a standby.
    pub fenced: bool,
    pub role: Role,
    pub timeline: u32,
    /// WAL received (a standby) or written (a primary).
    pub received: Lsn,
    /// WAL replayed (a standby); the written position for a primary.
    pub replayed: Lsn,
}

impl Instance {
    /// An instance that does not answer now: what it was when `last` saw it, or nothing known.
    pub fn gone(name: &str, last: Option<Instance>) -> Instance {
        Instance {
            alive: false,
            ..last.unwrap_or(Instance {
                name: name.to_owned(),
                alive: false,
                fenced: false,
                role: Role::Standby,
                timeline: 0,
                received: Lsn(0),
                replayed: Lsn(0),
            })
        }
    }
}

impl Instance {
    fn serves_as_primary(&self) -> bool {
        self.alive && !self.fenced && self.role == Role::Primary
    }

    fn is_candidate(&self) -> bool {
        self.alive && !self.fenced && self.role == Role::Standby
    }

    /// How far a standby has come: more WAL received, then more replayed; the name breaks ties
    /// so the choice is deterministic. Positions, not timelines: a standby whose receiver is
    /// down can only report the timeline of its last restartpoint, which may be stale, and the
    /// standbys of one primary share its history, so their positions compare directly.
    fn standby_progress(&self) -> (Lsn, Lsn, Reverse<&str>) {
        (self.received, self.replayed, Reverse(self.name.as_str()))
    }

    /// Between two serving primaries, the later timeline is the one promoted last.
    fn primary_progress(&self) -> (u32, Lsn, Reverse<&str>) {
        (self.timeline, self.received, Reverse(self.name.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// How long the primary must be gone before a failover.
    pub failover_delay: Duration,
    /// k of `synchronous_standby_names = 'ANY k (...)'`: standbys that confirm every commit.
    pub synchronous_standbys: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `primary` serves; each of `rejoin` (fenced, or a second primary) must become its standby.
    Healthy {
        primary: String,
        rejoin: Vec<String>,
    },
    /// No primary serves, but not for long enough to fail over.
    Wait { remaining: Duration },
    /// Fence every old primary, then promote `promote`.
    Failover { fence: Vec<String>, promote: String },
    /// No primary serves and promoting any standby could lose acknowledged commits.
    Refuse { reason: String },
}

/// What to do about `instances`, whose primary (if none serves) has been gone `primary_down_for`.
pub fn decide(instances: &[Instance], policy: &Policy, primary_down_for: Duration) -> Decision {
    if let Some(primary) = instances
        .iter()
        .filter(|i| i.serves_as_primary())
        .max_by_key(|i| i.primary_progress())
    {
        // A second serving primary (an old one restarted unfenced) is the one further behind.
        let rejoin = instances
            .iter()
            .filter(|i| i.name != primary.name && (i.fenced || i.serves_as_primary()))
            .map(|i| i.name.clone())
            .collect();
        return Decision::Healthy {
            primary: primary.name.clone(),
            rejoin,
        };
    }
    if primary_down_for < policy.failover_delay {
        return Decision::Wait {
            remaining: policy.failover_delay - primary_down_for,
        };
    }
    let total = instances.len();
    let copies_per_commit = policy.synchronous_standbys + 1;
    let candidates: Vec<&Instance> = instances.iter().filter(|i| i.is_candidate()).collect();
    let answering = candidates.len();
    if answering + copies_per_commit <= total {
        return Decision::Refuse {
            reason: format!(
                "only {answering} of {} standbys answer; every commit is on the primary and \
                 {} standby(s), so the newest acknowledged commits may be on a standby that \
                 does not answer; waiting for one more",
                total.saturating_sub(1),
                policy.synchronous_standbys
            ),
        };
    }
    let Some(best) = candidates.into_iter().max_by_key(|i| i.standby_progress()) else {
        return Decision::Refuse {
            reason: "no standby answers".into(),
        };
    };
    let fence = instances
        .iter()
        .filter(|i| i.role == Role::Primary && !i.fenced)
        .map(|i| i.name.clone())
        .collect();
    Decision::Failover {
        fence,
        promote: best.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DELAY: Duration = Duration::from_secs(10);

    fn policy() -> Policy {
        Policy {
            failover_delay: DELAY,
            synchronous_standbys: 1,
        }
    }

    /// An instance builder: `primary("a")`, `standby("b").at(10)`, `.dead()`, `.fenced()`.
    #[derive(Clone)]
    struct Build(Instance);

    fn primary(name: &str) -> Build {
        Build(Instance {
            name: name.into(),
            alive: true,
            fenced: false,
            role: Role::Primary,
            timeline: 1,
            received: Lsn(100),
            replayed: Lsn(100),
        })
    }

    fn standby(name: &str) -> Build {
        Build(Instance {
            role: Role::Standby,
            ..primary(name).0
        })
    }

    impl Build {
        fn at(mut self, received: u64) -> Self {
            self.0.received = Lsn(received);
            self.0.replayed = Lsn(received);
            self
        }
        fn replayed(mut self, replayed: u64) -> Self {
            self.0.replayed = Lsn(replayed);
            self
        }
        fn timeline(mut self, t: u32) -> Self {
            self.0.timeline = t;
            self
        }
        fn dead(mut self) -> Self {
            self.0.alive = false;
            self
        }
        fn fenced(mut self) -> Self {
            self.0.fenced = true;
            self
        }
    }

    fn cluster(builds: &[Build]) -> Vec<Instance> {
        builds.iter().map(|b| b.0.clone()).collect()
    }

    #[test]
    fn a_live_primary_is_left_alone() {
        let c = cluster(&[primary("a"), standby("b").at(90), standby("c").dead()]);
        assert_eq!(
            decide(&c, &policy(), Duration::ZERO),
            Decision::Healthy {
                primary: "a".into(),
                rejoin: vec![]
            }
        );
    }

    #[test]
    fn a_short_outage_is_waited_out() {
        let c = cluster(&[primary("a").dead(), standby("b"), standby("c")]);
        assert_eq!(
            decide(&c, &policy(), Duration::from_secs(4)),
            Decision::Wait {
                remaining: Duration::from_secs(6)
            }
        );
    }

    #[test]
    fn the_standby_with_the_most_wal_received_is_promoted_and_the_old_primary_fenced() {
        let c = cluster(&[
            primary("a").dead(),
            standby("b").at(120).replayed(80),
            standby("c").at(110).replayed(110),
        ]);
        assert_eq!(
            decide(&c, &policy(), DELAY),
            Decision::Failover {
                fence: vec!["a".into()],
                promote: "b".into()
            }
        );
    }

    #[test]
    fn standbys_are_ranked_by_wal_received_whatever_timeline_they_report() {
        // c's receiver is down, so it reports the older timeline of its last restartpoint.
        let c = cluster(&[
            primary("a").dead(),
            standby("b").at(200).timeline(2),
            standby("c").at(210).timeline(1),
        ]);
        assert!(matches!(
            decide(&c, &policy(), DELAY),
            Decision::Failover { promote, .. } if promote == "c"
        ));
    }

    #[test]
    fn too_few_answering_standbys_refuse_with_a_reason() {
        // Commits were confirmed by a and one of b, c; with c silent, b may lack the newest.
        let c = cluster(&[primary("a").dead(), standby("b"), standby("c").dead()]);
        match decide(&c, &policy(), DELAY) {
            Decision::Refuse { reason } => assert!(reason.contains("only 1 of 2"), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_fenced_old_primary_or_a_second_primary_rejoins_as_a_standby() {
        let c = cluster(&[
            primary("a").fenced().dead(),
            primary("b").timeline(2),
            standby("c").timeline(2),
        ]);
        assert_eq!(
            decide(&c, &policy(), Duration::ZERO),
            Decision::Healthy {
                primary: "b".into(),
                rejoin: vec!["a".into()]
            }
        );
        let split = cluster(&[primary("a"), primary("b").timeline(2), standby("c")]);
        assert_eq!(
            decide(&split, &policy(), Duration::ZERO),
            Decision::Healthy {
                primary: "b".into(),
                rejoin: vec!["a".into()]
            }
        );
    }

    fn arbitrary_instance(name: &'static str) -> impl Strategy<Value = Instance> {
        (
            any::<bool>(),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.3),
            1u32..3,
            0u64..50,
            0u64..50,
        )
            .prop_map(
                move |(alive, fenced, is_primary, timeline, received, lag)| Instance {
                    name: name.into(),
                    alive,
                    fenced,
                    role: if is_primary {
                        Role::Primary
                    } else {
                        Role::Standby
                    },
                    timeline,
                    received: Lsn(received),
                    replayed: Lsn(received.saturating_sub(lag)),
                },
            )
    }

    fn arbitrary_cluster() -> impl Strategy<Value = Vec<Instance>> {
        prop::collection::vec(
            prop::sample::select(vec!["a", "b", "c", "d", "e"]).prop_flat_map(arbitrary_instance),
            1..6,
        )
        .prop_map(|mut v| {
            // Names are unique within a cluster.
            let mut seen = std::collections::HashSet::new();
            v.retain(|i| seen.insert(i.name.clone()));
            v
        })
    }

    proptest! {
        #[test]
        fn never_promotes_a_standby_behind_another_live_one(
            c in arbitrary_cluster(), k in 0usize..3, down in 0u64..20,
        ) {
            let p = Policy { failover_delay: DELAY, synchronous_standbys: k };
            if let Decision::Failover { promote, .. } = decide(&c, &p, Duration::from_secs(down)) {
                let chosen = c.iter().find(|i| i.name == promote).unwrap();
                prop_assert!(chosen.is_candidate());
                for other in c.iter().filter(|i| i.is_candidate()) {
                    prop_assert!(other.received <= chosen.received,
                        "{} is ahead of the promoted {}", other.name, promote);
                }
            }
        }

        #[test]
        fn never_leaves_two_primaries_serving(
            c in arbitrary_cluster(), k in 0usize..3, down in 0u64..20,
        ) {
            let p = Policy { failover_delay: DELAY, synchronous_standbys: k };
            match decide(&c, &p, Duration::from_secs(down)) {
                Decision::Failover { fence, promote } => {
                    prop_assert!(c.iter().all(|i| !i.serves_as_primary()));
                    for old in c.iter().filter(|i| i.role == Role::Primary && !i.fenced) {
                        prop_assert!(fence.contains(&old.name));
                    }
                    prop_assert!(!fence.contains(&promote));
                }
                Decision::Healthy { primary, rejoin } => {
                    for other in c.iter().filter(|i| i.serves_as_primary() && i.name != primary) {
                        prop_assert!(rejoin.contains(&other.name));
                    }
                }
                Decision::Wait { .. } | Decision::Refuse { .. } => {
                    prop_assert!(c.iter().all(|i| !i.serves_as_primary()));
                }
            }
        }

        #[test]
        fn never_promotes_without_the_quorum_that_holds_every_acknowledged_commit(
            c in arbitrary_cluster(), k in 0usize..3, down in 0u64..20,
        ) {
            let p = Policy { failover_delay: DELAY, synchronous_standbys: k };
            if let Decision::Failover { .. } = decide(&c, &p, Duration::from_secs(down)) {
                let answering = c.iter().filter(|i| i.is_candidate()).count();
                prop_assert!(answering + k + 1 > c.len());
                prop_assert!(down >= DELAY.as_secs());
            }
        }
    }
}
