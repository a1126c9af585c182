//! The failover routine: observe, decide, act, one step per tick. The instance operations sit
//! behind [`InstanceOps`], so the same routine drives pods in Kubernetes and local processes in
//! the test suite.
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::failover::decision::{Decision, Instance, Policy, decide};

#[derive(Debug, thiserror::Error)]
#[error("{op} on {instance} failed: {reason}")]
pub struct OpsError {
    pub op: &'static str,
    pub instance: String,
    pub reason: String,
}

impl OpsError {
    pub fn new(op: &'static str, instance: &str, reason: impl std::fmt::Display) -> Self {
        Self {
            op,
            instance: instance.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// What the routine can do to the instances.
#[async_trait]
pub trait InstanceOps: Send + Sync {
    /// Probes every instance. One that does not answer is reported not alive, with the role and
    /// positions it last had.
    async fn observe(&self) -> Vec<Instance>;
    /// Keeps `instance` from serving as primary (stops it where it still runs) until it rejoins.
    async fn fence(&self, instance: &str) -> Result<(), OpsError>;
    /// Ends recovery on the standby `instance`; returns once it accepts writes.
    async fn promote(&self, instance: &str) -> Result<(), OpsError>;
    /// Points the read-write address, and every other standby's replication, at `primary`.
    async fn repoint(&self, primary: &str) -> Result<(), OpsError>;
    /// Makes the fenced `instance` a streaming standby of `primary` (rewound to the new
    /// timeline, or cloned afresh when it cannot be), and lifts its fence.
    async fn rejoin(&self, instance: &str, primary: &str) -> Result<(), OpsError>;
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Healthy {
        primary: String,
    },
    /// The primary is gone; failing over once `remaining` has passed, if it stays gone.
    Waiting {
        remaining: Duration,
    },
    FailedOver {
        promoted: String,
        fenced: Vec<String>,
    },
    Rejoined {
        instance: String,
        primary: String,
    },
    /// Failing over now could lose acknowledged commits.
    Refused {
        reason: String,
    },
}

/// Runs the routine: call [`Supervisor::tick`] every few seconds.
pub struct Supervisor {
    policy: Policy,
    primary_gone_since: Option<Instant>,
    /// Where the read-write address points, as far as this supervisor knows.
    pointed_at: Option<String>,
    /// The instances as the last tick observed them.
    last_seen: Vec<Instance>,
}

impl Supervisor {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            primary_gone_since: None,
            pointed_at: None,
            last_seen: Vec::new(),
        }
    }

    /// The instances as the last tick observed them (positions included, for the status).
    pub fn last_seen(&self) -> &[Instance] {
        &self.last_seen
    }

    /// The policy can change with the spec; what was observed stays.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// Observes once and takes the step the decision calls for.
    pub async fn tick(&mut self, ops: &dyn InstanceOps, now: Instant) -> Result<Step, OpsError> {
        let seen = ops.observe().await;
        self.last_seen = seen.clone();
        let serving = seen
            .iter()
            .any(|i| i.alive && !i.fenced && i.role == crate::failover::Role::Primary);
        let gone_for = if serving {
            self.primary_gone_since = None;
            Duration::ZERO
        } else {
            now.duration_since(*self.primary_gone_since.get_or_insert(now))
        };
        match decide(&seen, &self.policy, gone_for) {
            Decision::Healthy { primary, rejoin } => {
                if self.pointed_at.as_deref() != Some(primary.as_str()) {
                    ops.repoint(&primary).await?;
                    self.pointed_at = Some(primary.clone());
                }
                if let Some(instance) = rejoin.into_iter().next() {
                    tracing::info!(%instance, %primary, "rejoining as a standby");
                    ops.fence(&instance).await?;
                    ops.rejoin(&instance, &primary).await?;
                    return Ok(Step::Rejoined { instance, primary });
                }
                Ok(Step::Healthy { primary })
            }
            Decision::Wait { remaining } => {
                tracing::warn!(
                    ?remaining,
                    "the primary is gone; waiting before failing over"
                );
                Ok(Step::Waiting { remaining })
            }
            Decision::Refuse { reason } => {
                tracing::error!(%reason, "not failing over");
                Ok(Step::Refused { reason })
            }
            Decision::Failover { fence, promote } => {
                tracing::warn!(?fence, %promote, "failing over");
                for old in &fence {
                    ops.fence(old).await?;
                }
                ops.promote(&promote).await?;
                ops.repoint(&promote).await?;
                self.pointed_at = Some(promote.clone());
                self.primary_gone_since = None;
                Ok(Step::FailedOver {
                    promoted: promote,
                    fenced: fence,
                })
            }
        }
    }
}
