//! Leader election over a `coordination.k8s.io` Lease, so that two operator replicas never
//! reconcile at once. The decision is pure; the loop around it reads and writes the Lease with
//! optimistic concurrency (a lost race is a 409, never two leaders).
use std::time::Duration;

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

/// What to do with `lease` as `me` at `now`.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: DateTime<Utc>) -> LeaseDecision {
    let Some(spec) = lease else {
        return LeaseDecision::Acquire;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => LeaseDecision::Acquire,
        Some(holder) if holder == me => LeaseDecision::Renew,
        Some(holder) => {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            let expired = spec
                .renew_time
                .as_ref()
                .is_none_or(|t| t.0 + k8s_openapi::chrono::Duration::seconds(duration) < now);
            if expired {
                LeaseDecision::Acquire
            } else {
                LeaseDecision::Follow {
                    holder: holder.to_owned(),
                }
            }
        }
    }
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

pub struct Election {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
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
        }
    }

    /// One round: read, decide, write. True while this replica leads.
    async fn round(&self) -> Result<bool, kube::Error> {
        let now = Utc::now();
        let current = self.api.get_opt(&self.name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let decision = decide(spec, &self.identity, now);
        if let LeaseDecision::Follow { holder } = &decision {
            tracing::debug!(%holder, "following the leader");
            return Ok(false);
        }
        let new_spec = claimed(spec, &decision, &self.identity, now, self.duration);
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

    /// Runs forever, publishing whether this replica leads. Leadership is given up (false) as
    /// soon as a renewal has not succeeded for the lease's duration.
    pub async fn run(self, leading: watch::Sender<bool>) {
        let period = self.duration / 3;
        let mut last_success = tokio::time::Instant::now();
        loop {
            match self.round().await {
                Ok(lead) => {
                    last_success = tokio::time::Instant::now();
                    if *leading.borrow() != lead {
                        tracing::info!(identity = %self.identity, leading = lead, "leadership changed");
                    }
                    leading.send_replace(lead);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the leader lease");
                    if last_success.elapsed() >= self.duration {
                        leading.send_replace(false);
                    }
                }
            }
            crate::metrics::leader(*leading.borrow());
            tokio::time::sleep(period).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, renewed_secs_ago: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(
                Utc::now() - k8s_openapi::chrono::Duration::seconds(renewed_secs_ago),
            )),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_missing_or_unheld_lease_is_acquired() {
        assert_eq!(decide(None, "a", Utc::now()), LeaseDecision::Acquire);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "a", Utc::now()),
            LeaseDecision::Acquire
        );
    }

    #[test]
    fn the_holder_renews_and_others_follow_while_it_is_fresh() {
        let lease = held_by("a", 5);
        assert_eq!(decide(Some(&lease), "a", Utc::now()), LeaseDecision::Renew);
        assert_eq!(
            decide(Some(&lease), "b", Utc::now()),
            LeaseDecision::Follow { holder: "a".into() }
        );
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_counted_as_a_transition() {
        let lease = held_by("a", 20);
        let decision = decide(Some(&lease), "b", Utc::now());
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
}
