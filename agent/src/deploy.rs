//! Deployments expanded into Pods, for manifest mode where no ReplicaSet
//! controller runs: `replicas` Pods named `NAME-HASH-I`, where HASH is a
//! hash of the Pod template (as the `pod-template-hash` label is), so the
//! same manifest always gives the same Pods and a changed template gives
//! new ones, like a rollout.

use crate::cookie::fnv1a;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The Pods of `d`.
pub fn expand(d: &Deployment) -> Vec<Pod> {
    let name = d.metadata.name.clone().unwrap_or_default();
    let ns = d
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let spec = &d.spec;
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let template = serde_json::to_string(&spec.template).unwrap_or_default();
    let hash = format!("{:010x}", fnv1a(template.as_bytes()) & 0xff_ffff_ffff);
    let tmeta = spec.template.metadata.clone().unwrap_or_default();
    (0..replicas)
        .map(|i| {
            let mut labels = tmeta.labels.clone().unwrap_or_default();
            labels.insert("pod-template-hash".into(), hash.clone());
            Pod {
                metadata: ObjectMeta {
                    name: Some(format!("{name}-{hash}-{i}")),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    annotations: tmeta.annotations.clone(),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "Deployment".into(),
                        name: name.clone(),
                        uid: d.metadata.uid.clone().unwrap_or_default(),
                        controller: Some(true),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                spec: spec.template.spec.clone(),
                status: None,
            }
        })
        .collect()
}
