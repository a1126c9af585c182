//! The StatefulSet skeleton both managed backends share: one pod per member, started in
//! parallel, each with its own ReadWriteOnce `data` volume.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::Owner;

/// What differs between the managed backends' StatefulSets.
pub struct Members<'a> {
    pub name: String,
    pub component: &'a str,
    /// The headless Service that names the members.
    pub service: String,
    pub replicas: i32,
    pub storage: &'a str,
    pub storage_class: Option<&'a str>,
    /// Delete the volumes with the StatefulSet (kept otherwise, and always on scale-in).
    pub delete_volumes: bool,
}

pub fn stateful_set(owner: &Owner, members: Members<'_>, pod: PodSpec) -> StatefulSet {
    let labels = owner.selector(members.component);
    let on_delete = if members.delete_volumes {
        "Delete"
    } else {
        "Retain"
    };
    StatefulSet {
        metadata: owner.meta(members.name, members.component),
        spec: Some(StatefulSetSpec {
            replicas: Some(members.replicas),
            service_name: Some(members.service),
            // Members start on their own: a dead member 0 must not hold back the others.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(on_delete.into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![claim_template(
                "data",
                members.storage,
                members.storage_class,
            )]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// A ReadWriteOnce volume per member.
fn claim_template(name: &str, size: &str, class: Option<&str>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: class.map(str::to_owned),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(size.to_owned()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}
