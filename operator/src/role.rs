//! The `filestore.dev/role` label of the managed database's pods, and its only writer. The label
//! is the single switch of the database (the `-db-rw` Service selects the primary by it, the
//! `-db-ro` Service the replicas, and each pod's start script waits for it before it serves), so
//! its key, its values and the one patch that sets it live here: the reconcile (a first or a
//! recreated primary, new replicas) and the failover routine (fence, repoint, rejoin) both go
//! through [`set`].
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

/// The label's key; `build/database/start.sh` reads it under the same name.
pub const LABEL: &str = "filestore.dev/role";

/// A database pod's role, as its label spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PodRole {
    /// Serves writes; selected by the read-write Service.
    Primary,
    /// A streaming standby; selected by the read-only Service.
    Replica,
    /// A former primary kept out of both Services, and stopped, until it rejoins as a standby.
    Fenced,
}

impl PodRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PodRole::Primary => "primary",
            PodRole::Replica => "replica",
            PodRole::Fenced => "fenced",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        [PodRole::Primary, PodRole::Replica, PodRole::Fenced]
            .into_iter()
            .find(|r| r.as_str() == value)
    }
}

impl std::fmt::Display for PodRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role `pod` is labelled with; `None` without a label, or with a value no role spells.
pub fn of(pod: &Pod) -> Option<PodRole> {
    pod.labels().get(LABEL).and_then(|v| PodRole::parse(v))
}

/// Whether `pod` carries the label at all, whatever its value: a value the operator does not
/// know is still someone's decision, never overwritten as if the pod had none.
pub fn is_labelled(pod: &Pod) -> bool {
    pod.labels().contains_key(LABEL)
}

/// The label as a selector entry, for the Services that follow a role.
pub fn selector(role: PodRole) -> (String, String) {
    (LABEL.to_owned(), role.as_str().to_owned())
}

/// `pod` as it will be once labelled `role`, for decisions that look ahead of the write.
pub fn assume(pod: &mut Pod, role: PodRole) {
    pod.labels_mut()
        .insert(LABEL.to_owned(), role.as_str().to_owned());
}

/// Labels the pod `name` with `role`: a merge patch of that one label, so that every other
/// label, and any concurrent writer's, stays as it is.
pub async fn set(pods: &Api<Pod>, name: &str, role: PodRole) -> Result<(), kube::Error> {
    let patch = serde_json::json!({ "metadata": { "labels": { LABEL: role.as_str() } } });
    pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(value: Option<&str>) -> Pod {
        let mut pod = Pod::default();
        if let Some(v) = value {
            pod.labels_mut().insert(LABEL.to_owned(), v.to_owned());
        }
        pod
    }

    #[test]
    fn a_label_reads_back_as_the_role_that_wrote_it() {
        for role in [PodRole::Primary, PodRole::Replica, PodRole::Fenced] {
            let mut pod = labelled(None);
            assume(&mut pod, role);
            assert_eq!(of(&pod), Some(role));
            assert!(is_labelled(&pod));
        }
    }

    #[test]
    fn an_unknown_value_is_no_role_but_still_a_label() {
        let pod = labelled(Some("leader"));
        assert_eq!(of(&pod), None);
        assert!(is_labelled(&pod));
        assert!(!is_labelled(&labelled(None)));
    }

    #[test]
    fn the_spelling_is_the_one_the_start_script_and_the_services_use() {
        assert_eq!(LABEL, "filestore.dev/role");
        assert_eq!(
            selector(PodRole::Primary),
            ("filestore.dev/role".to_owned(), "primary".to_owned())
        );
        assert_eq!(PodRole::Replica.to_string(), "replica");
        assert_eq!(PodRole::Fenced.as_str(), "fenced");
    }
}
