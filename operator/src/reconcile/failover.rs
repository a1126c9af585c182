//! The failover routine inside the reconcile: one supervisor per FileStore, ticked on every
//! reconcile of an initialised managed database, over the pods' instance operations.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::{Client, ResourceExt};

use super::observed::Observed;
use super::plan::Notice;
use crate::build::secrets::{self, Credentials};
use crate::build::{self, Owner};
use crate::crd::{FileStore, Provisioning};
use crate::failover::{Instance, PodInstances, Policy, Step, Supervisor};

/// While the primary is gone, look again this soon rather than at the next poll.
const WATCH_CLOSELY: Duration = Duration::from_secs(3);

/// Supervisors by FileStore, kept across reconciles: each remembers since when its primary is
/// gone and where it last saw each instance.
#[derive(Default)]
pub struct Supervisors {
    by_filestore: BTreeMap<String, Watched>,
}

struct Watched {
    supervisor: Supervisor,
    last_step: Option<Step>,
    /// Fences a failed tick left unfinished (instance to pod UID), for the next tick only: a
    /// tick that succeeds has finished or abandoned them, and a UID remembered longer could
    /// take a later, unrelated restart for a finished fence.
    pending_fences: BTreeMap<String, String>,
}

/// What one tick found and did.
pub struct Outcome {
    pub step: Step,
    pub instances: Vec<Instance>,
    pub notice: Option<Notice>,
}

impl Outcome {
    /// Whether the pods' roles changed, so what was observed before is stale.
    pub fn moved_roles(&self) -> bool {
        matches!(self.step, Step::FailedOver { .. } | Step::Rejoined { .. })
    }

    /// How soon to reconcile again, when sooner than the usual poll.
    pub fn requeue_within(&self) -> Option<Duration> {
        match &self.step {
            Step::Waiting { remaining } => {
                Some((*remaining).clamp(Duration::from_secs(1), WATCH_CLOSELY))
            }
            Step::FailedOver { .. } | Step::Rejoined { .. } | Step::Refused { .. } => {
                Some(WATCH_CLOSELY)
            }
            Step::Healthy { .. } => None,
        }
    }
}

pub fn policy(fs: &FileStore) -> Policy {
    let db = &fs.spec.database.managed;
    Policy {
        failover_delay: Duration::from_secs(u64::try_from(db.failover_delay_seconds).unwrap_or(0)),
        synchronous_standbys: usize::try_from(db.synchronous_standbys).unwrap_or(0),
    }
}

/// Whether the routine watches this FileStore's database: managed, bootstrapped, more than one
/// instance, and the superuser password at hand.
fn watched(fs: &FileStore, seen: &Observed) -> Option<String> {
    let db = &fs.spec.database;
    let initialised = seen.database_marked_initialised
        || fs.status.as_ref().is_some_and(|s| s.database_initialised);
    if db.mode != Provisioning::Managed || !initialised || db.managed.instances < 2 {
        return None;
    }
    let credentials = Credentials::from_secret(seen.credentials.as_ref()?);
    credentials
        .get(secrets::SUPERUSER_PASSWORD)
        .map(str::to_owned)
}

impl Supervisors {
    /// One tick of `fs`'s supervisor; `None` when its database is not watched.
    pub async fn tick(
        &mut self,
        client: &Client,
        fs: &FileStore,
        ns: &str,
        seen: &Observed,
    ) -> Option<Outcome> {
        let key = format!("{ns}/{}", fs.name_any());
        let Some(password) = watched(fs, seen) else {
            self.by_filestore.remove(&key);
            return None;
        };
        let owner = Owner::of(fs).ok()?;
        let instances = build::database::instance_names(&owner, &fs.spec.database.managed);
        let selector = build::component_selector(&owner.name, build::database::COMPONENT);
        let watched = self.by_filestore.entry(key).or_insert_with(|| Watched {
            supervisor: Supervisor::new(policy(fs)),
            last_step: None,
            pending_fences: BTreeMap::new(),
        });
        watched.supervisor.set_policy(policy(fs));
        let ops = PodInstances::new(client.clone(), ns, instances, selector, password)
            .remembering(watched.supervisor.last_seen())
            .fencing(std::mem::take(&mut watched.pending_fences));
        let step = match watched.supervisor.tick(&ops, Instant::now()).await {
            Ok(step) => step,
            Err(e) => {
                watched.pending_fences = ops.pending_fences();
                Step::Refused {
                    reason: format!("the failover routine failed: {e}"),
                }
            }
        };
        let notice = notice(watched.last_step.as_ref(), &step);
        watched.last_step = Some(step.clone());
        Some(Outcome {
            step,
            instances: watched.supervisor.last_seen().to_vec(),
            notice,
        })
    }

    pub fn forget(&mut self, ns: &str, name: &str) {
        self.by_filestore.remove(&format!("{ns}/{name}"));
    }
}

/// The event a step deserves: every failover and rejoin, a refusal or a lost primary once
/// until something changes.
pub fn notice(previous: Option<&Step>, step: &Step) -> Option<Notice> {
    let (warning, reason, action, note) = match step {
        Step::Healthy { .. } => return None,
        Step::Waiting { remaining } => {
            if matches!(previous, Some(Step::Waiting { .. })) {
                return None;
            }
            (
                true,
                "PrimaryUnavailable",
                "WaitBeforeFailover",
                format!(
                    "the primary does not answer; failing over in {remaining:?} unless it returns"
                ),
            )
        }
        Step::Refused { reason } => {
            if previous == Some(step) {
                return None;
            }
            (true, "FailoverRefused", "Failover", reason.clone())
        }
        Step::FailedOver { promoted, fenced } => (
            true,
            "FailedOver",
            "Promote",
            format!("promoted {promoted}; fenced {}", fenced.join(", ")),
        ),
        Step::Rejoined { instance, primary } => (
            false,
            "Rejoined",
            "Rejoin",
            format!("{instance} rejoins as a standby of {primary}"),
        ),
    };
    Some(Notice {
        warning,
        reason,
        action,
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(secs: u64) -> Step {
        Step::Waiting {
            remaining: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_lost_primary_is_announced_once_not_on_every_tick() {
        let first = notice(None, &waiting(30)).expect("announced");
        assert_eq!(first.reason, "PrimaryUnavailable");
        assert!(first.warning);
        assert!(notice(Some(&waiting(30)), &waiting(27)).is_none());
    }

    #[test]
    fn a_refusal_is_repeated_only_when_its_reason_changes() {
        let refused = |why: &str| Step::Refused { reason: why.into() };
        assert!(notice(Some(&waiting(0)), &refused("only 0 of 2 standbys answer")).is_some());
        assert!(notice(Some(&refused("a")), &refused("a")).is_none());
        assert!(notice(Some(&refused("a")), &refused("b")).is_some());
    }

    #[test]
    fn failovers_and_rejoins_are_always_recorded_and_health_is_quiet() {
        let failed_over = Step::FailedOver {
            promoted: "files-db-1".into(),
            fenced: vec!["files-db-0".into()],
        };
        let n = notice(Some(&failed_over), &failed_over).expect("recorded");
        assert_eq!(n.reason, "FailedOver");
        assert_eq!(n.note, "promoted files-db-1; fenced files-db-0");
        let rejoined = Step::Rejoined {
            instance: "files-db-0".into(),
            primary: "files-db-1".into(),
        };
        assert_eq!(notice(None, &rejoined).map(|n| n.reason), Some("Rejoined"));
        let healthy = Step::Healthy {
            primary: "files-db-1".into(),
        };
        assert!(notice(Some(&failed_over), &healthy).is_none());
    }

    #[test]
    fn while_the_primary_is_gone_the_reconcile_looks_again_within_seconds() {
        let outcome = |step| Outcome {
            step,
            instances: Vec::new(),
            notice: None,
        };
        assert_eq!(outcome(waiting(30)).requeue_within(), Some(WATCH_CLOSELY));
        assert_eq!(
            outcome(Step::Waiting {
                remaining: Duration::ZERO
            })
            .requeue_within(),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            outcome(Step::Healthy {
                primary: "a".into()
            })
            .requeue_within(),
            None
        );
    }
}
