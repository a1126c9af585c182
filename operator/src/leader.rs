//! Leader election over a `coordination.k8s.io` Lease, so that two operator replicas never
//! reconcile at once. The decision is pure; the loop around it reads and writes the Lease with
//! optimistic concurrency (a lost race is a 409, never two leaders).
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseDecision {
    /// Nobody holds it, or the holder stopped renewing: take it.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds it and is renewing.
    Follow { holder: String },
}

/// What to do with `lease` as `me`. `unchanged_for` is how long, by this replica's own clock,
/// the lease has been seen with the same holder and renew time: another node's clock is never
/// compared with ours, so clock skew cannot make two leaders.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, unchanged_for: Duration) -> LeaseDecision {
    let Some(spec) = lease else {
        return LeaseDecision::Acquire;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => LeaseDecision::Acquire,
        Some(holder) if holder == me => LeaseDecision::Renew,
        Some(holder) => {
            let duration = lease_duration(spec);
            if unchanged_for > duration {
                LeaseDecision::Acquire
            } else {
                LeaseDecision::Follow {
                    holder: holder.to_owned(),
                }
            }
        }
    }
}

fn lease_duration(spec: &LeaseSpec) -> Duration {
    Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15))
}

/// The Lease's spec after `decision` (Acquire or Renew) by `me` at `now`.
pub fn claimed(
    previous: Option<&LeaseSpec>,
    decision: &LeaseDecision,
    me: &str,
    now: DateTime<Utc>,
    duration: Duration,
) -> LeaseSpec {
    let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
    let acquired = *decision == LeaseDecision::Acquire;
    LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(i32::try_from(duration.as_secs()).unwrap_or(15)),
        acquire_time: if acquired {
            Some(MicroTime(now))
        } else {
            previous.and_then(|s| s.acquire_time.clone())
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if acquired && previous.is_some() {
            transitions + 1
        } else {
            transitions
        }),
        ..LeaseSpec::default()
    }
}

/// Who held the lease and when they last renewed it, and when this replica first saw that.
#[derive(Debug, Clone, PartialEq)]
struct Sighting {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    since: Instant,
}

pub struct Election {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    last: Option<Sighting>,
}

impl Election {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
            last: None,
        }
    }

    /// How long the lease has looked the same to us.
    fn unchanged_for(&mut self, spec: Option<&LeaseSpec>) -> Duration {
        let holder = spec.and_then(|s| s.holder_identity.clone());
        let renew_time = spec.and_then(|s| s.renew_time.clone());
        match &self.last {
            Some(s) if s.holder == holder && s.renew_time == renew_time => s.since.elapsed(),
            _ => {
                self.last = Some(Sighting {
                    holder,
                    renew_time,
                    since: Instant::now(),
                });
                Duration::ZERO
            }
        }
    }

    /// One round: read, decide, write. True while this replica leads.
    async fn round(&mut self) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(&self.name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let unchanged_for = self.unchanged_for(spec);
        let decision = decide(spec, &self.identity, unchanged_for);
        if let LeaseDecision::Follow { holder } = &decision {
            tracing::debug!(%holder, "following the leader");
            return Ok(false);
        }
        let new_spec = claimed(spec, &decision, &self.identity, Utc::now(), self.duration);
        let written = match current {
            Some(mut lease) => {
                lease.spec = Some(new_spec);
                // resourceVersion is kept: a concurrent writer makes this a 409.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(new_spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
        };
        match written {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs forever, publishing whether this replica leads. A leader gives up (false) once it
    /// has not renewed for two thirds of the lease, timed from before the read: well before a
    /// follower, which waits a whole lease after the last renewal it saw, may take over.
    pub async fn run(mut self, leading: watch::Sender<bool>) {
        let period = self.duration / 3;
        let renew_deadline = self.duration * 2 / 3;
        let mut renewed_at: Option<Instant> = None;
        loop {
            let started = Instant::now();
            match tokio::time::timeout(period, self.round()).await {
                Ok(Ok(true)) => renewed_at = Some(started),
                Ok(Ok(false)) => renewed_at = None,
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot read or renew the leader lease"),
                Err(_) => tracing::warn!("the leader lease round timed out"),
            }
            let lead = renewed_at.is_some_and(|at| at.elapsed() < renew_deadline);
            if *leading.borrow() != lead {
                tracing::info!(identity = %self.identity, leading = lead, "leadership changed");
            }
            leading.send_replace(lead);
            crate::metrics::leader(lead);
            tokio::time::sleep(period.saturating_sub(started.elapsed())).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Utc::now())),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_missing_or_unheld_lease_is_acquired() {
        assert_eq!(decide(None, "a", Duration::ZERO), LeaseDecision::Acquire);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "a", Duration::ZERO),
            LeaseDecision::Acquire
        );
    }

    #[test]
    fn the_holder_renews_and_others_follow_while_it_keeps_renewing() {
        let lease = held_by("a");
        assert_eq!(
            decide(Some(&lease), "a", Duration::from_secs(60)),
            LeaseDecision::Renew
        );
        assert_eq!(
            decide(Some(&lease), "b", Duration::from_secs(15)),
            LeaseDecision::Follow { holder: "a".into() }
        );
    }

    #[test]
    fn a_lease_unchanged_for_longer_than_its_duration_is_taken_over_and_counted() {
        let lease = held_by("a");
        let decision = decide(Some(&lease), "b", Duration::from_secs(16));
        assert_eq!(decision, LeaseDecision::Acquire);
        let next = claimed(
            Some(&lease),
            &decision,
            "b",
            Utc::now(),
            Duration::from_secs(15),
        );
        assert_eq!(next.holder_identity.as_deref(), Some("b"));
        assert_eq!(next.lease_transitions, Some(1));
    }

    #[test]
    fn a_renew_time_far_in_the_past_by_our_clock_is_not_expiry_on_its_own() {
        // The holder's clock runs an hour behind ours; it renews all the same.
        let mut lease = held_by("a");
        lease.renew_time = Some(MicroTime(
            Utc::now() - k8s_openapi::chrono::Duration::hours(1),
        ));
        assert_eq!(
            decide(Some(&lease), "b", Duration::from_secs(1)),
            LeaseDecision::Follow { holder: "a".into() }
        );
    }
}
