//! PostgreSQL failover: [`decision`] says what to do given what was observed, [`routine`]
//! observes, decides and acts through [`routine::InstanceOps`].
pub mod decision;
pub mod lsn;
pub mod pods;
pub mod probe;
pub mod routine;
pub mod status;

pub use decision::{Decision, Instance, Policy, Role, decide};
pub use lsn::Lsn;
pub use pods::PodInstances;
pub use routine::{InstanceOps, OpsError, Step, Supervisor};
pub use status::{ReplicationStatus, StandbyStatus, replication_status};
