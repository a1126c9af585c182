//! What the FileStore status reports about the database: which instance is the primary, and how
//! far behind it each standby is.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::failover::decision::{Instance, Role};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationStatus {
    /// The instance serving writes, if one does.
    pub primary: Option<String>,
    pub standbys: Vec<StandbyStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StandbyStatus {
    pub name: String,
    pub alive: bool,
    /// Bytes of WAL the primary wrote that this standby has not received yet.
    pub receive_lag_bytes: Option<u64>,
    /// Bytes of WAL the primary wrote that this standby has not replayed yet.
    pub replay_lag_bytes: Option<u64>,
}

/// The status of `instances` as observed together. Lag is only known for live standbys while a
/// primary serves.
pub fn replication_status(instances: &[Instance]) -> ReplicationStatus {
    let primary = instances
        .iter()
        .filter(|i| i.alive && !i.fenced && i.role == Role::Primary)
        .max_by_key(|i| (i.timeline, i.received));
    let lag = |standby: &Instance, at: fn(&Instance) -> u64| {
        primary
            .filter(|_| standby.alive)
            .map(|p| p.received.0.saturating_sub(at(standby)))
    };
    ReplicationStatus {
        primary: primary.map(|p| p.name.clone()),
        standbys: instances
            .iter()
            .filter(|i| primary.is_none_or(|p| p.name != i.name))
            .map(|s| StandbyStatus {
                name: s.name.clone(),
                alive: s.alive && !s.fenced,
                receive_lag_bytes: lag(s, |s| s.received.0),
                replay_lag_bytes: lag(s, |s| s.replayed.0),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::Lsn;

    fn instance(name: &str, role: Role, alive: bool, received: u64, replayed: u64) -> Instance {
        Instance {
            name: name.into(),
            alive,
            fenced: false,
            role,
            timeline: 1,
            received: Lsn(received),
            replayed: Lsn(replayed),
        }
    }

    #[test]
    fn standbys_report_how_far_behind_the_primary_they_are() {
        let status = replication_status(&[
            instance("a", Role::Primary, true, 1000, 1000),
            instance("b", Role::Standby, true, 990, 900),
            instance("c", Role::Standby, false, 500, 500),
        ]);
        assert_eq!(status.primary.as_deref(), Some("a"));
        assert_eq!(
            status.standbys,
            vec![
                StandbyStatus {
                    name: "b".into(),
                    alive: true,
                    receive_lag_bytes: Some(10),
                    replay_lag_bytes: Some(100),
                },
                StandbyStatus {
                    name: "c".into(),
                    alive: false,
                    receive_lag_bytes: None,
                    replay_lag_bytes: None,
                },
            ]
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["standbys"][0]["replayLagBytes"], 100);
    }

    #[test]
    fn without_a_primary_there_is_no_lag_to_report() {
        let status = replication_status(&[
            instance("a", Role::Primary, false, 1000, 1000),
            instance("b", Role::Standby, true, 990, 900),
        ]);
        assert_eq!(status.primary, None);
        assert_eq!(status.standbys.len(), 2);
        assert!(status.standbys.iter().all(|s| s.replay_lag_bytes.is_none()));
    }
}
