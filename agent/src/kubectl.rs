//! `kubectl apply -f`, `delete -f` and `delete namespace` over a manifest
//! directory: in manifest mode the directory *is* the API server's store,
//! so these helpers write it the way those commands change the cluster,
//! and every agent watching the directory sees the change as a relist.
//!
//! `apply -f FILE` validates the file (the same parser the agents use, so a
//! file that would not load is refused before anything is written) and puts
//! it into the directory under its own name, atomically (a dot-file renamed
//! into place: agents never see half a file). `delete -f FILE` removes that
//! copy and, for each Deployment in it, the replicas `label` wrote out (their
//! controller ownerReference names it), as the garbage collector does with a
//! Deployment's Pods. `delete namespace NAME` removes the Namespace and every object in
//! it from every file of the directory, as the namespace controller deletes
//! a namespace's contents; a file left without documents is removed.
//! `label pod NAME KEY=VALUE|KEY- -n NS` changes a Pod's labels where the Pod
//! is written; a Pod that exists only as a Deployment's expansion is first
//! written out, as the API server holds it, into `DIR/pods-NS.yaml` (a Pod is
//! its own object once created; the written one wins over the expansion),
//! so a label can be put on one replica, as the seed does.
//! Each prints kubectl's lines (`namespace/development created`).

use crate::manifest;
use crate::object::{Kind, Object};
use serde::Deserialize;
use serde_norway::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// kubectl's name for an object in its messages: `deployment.apps/web`.
pub fn resource_name(o: &Object) -> String {
    let kind = o.kind().name().to_ascii_lowercase();
    let group = match o.kind() {
        crate::object::Kind::Deployment => ".apps",
        crate::object::Kind::EndpointSlice => ".discovery.k8s.io",
        _ => "",
    };
    format!("{kind}{group}/{}", o.meta().name.as_deref().unwrap_or(""))
}

fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn target(dir: &Path, file: &Path) -> Result<PathBuf, String> {
    let name = file
        .file_name()
        .ok_or_else(|| format!("{}: not a file", file.display()))?;
    Ok(dir.join(name))
}

/// The objects of a file as written (Deployments not expanded), by key.
fn objects_of(path: &Path) -> Result<BTreeMap<String, Object>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(manifest::parse(&text, path)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|o| (o.key().to_string(), o))
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// `apply -f FILE` into `dir`.
pub fn apply(dir: &Path, file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let new: Vec<Object> = manifest::parse(&text, file).map_err(|e| e.to_string())?;
    let to = target(dir, file)?;
    let old = objects_of(&to)?;
    write_atomically(&to, &text)?;
    let mut out = String::new();
    for o in &new {
        let verb = match old.get(&o.key().to_string()) {
            None => "created",
            Some(before) if before == o => "unchanged",
            Some(_) => "configured",
        };
        out += &format!("{} {verb}\n", resource_name(o));
    }
    Ok(out)
}

/// `delete -f FILE` from `dir`.
pub fn delete_file(dir: &Path, file: &Path) -> Result<String, String> {
    let to = target(dir, file)?;
    let old = objects_of(&to)?;
    if old.is_empty() && !to.exists() {
        return Err(format!("{} was not applied", file.display()));
    }
    std::fs::remove_file(&to).map_err(|e| format!("{}: {e}", to.display()))?;
    let owners: Vec<(String, String)> = old
        .values()
        .filter(|o| matches!(o, Object::Deployment(_)))
        .map(|o| {
            let m = o.meta();
            let ns = m.namespace.clone().unwrap_or_else(|| "default".into());
            (ns, m.name.clone().unwrap_or_default())
        })
        .collect();
    if !owners.is_empty() {
        remove_docs(dir, |v| {
            owners
                .iter()
                .any(|(ns, name)| controlled_by_deployment(v, ns, name))
        })?;
    }
    Ok(old
        .values()
        .map(|o| format!("{} deleted\n", resource_name(o)))
        .collect())
}

/// Whether document `v` is a Pod in `namespace` whose controller is
/// Deployment `name`: a replica that `label` wrote out.
fn controlled_by_deployment(v: &Value, namespace: &str, name: &str) -> bool {
    let meta = v.get("metadata");
    let in_ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or("default")
        == namespace;
    let owned = meta
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_sequence)
        .is_some_and(|refs| {
            refs.iter().any(|r| {
                r.get("kind").and_then(Value::as_str) == Some("Deployment")
                    && r.get("name").and_then(Value::as_str) == Some(name)
                    && r.get("controller").and_then(Value::as_bool) == Some(true)
            })
        });
    v.get("kind").and_then(Value::as_str) == Some("Pod") && in_ns && owned
}

/// Removes every document `gone` picks from every file of `dir`; a file
/// left without documents is removed. Returns the documents removed.
fn remove_docs(dir: &Path, gone: impl Fn(&Value) -> bool) -> Result<Vec<Value>, String> {
    let mut removed = Vec::new();
    for f in manifest::files(dir).map_err(|e| e.to_string())? {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let mut keep = Vec::new();
        let before = removed.len();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).map_err(|e| format!("{}: {e}", f.display()))?;
            if v.is_null() {
                continue;
            }
            if gone(&v) {
                removed.push(v);
            } else {
                keep.push(v);
            }
        }
        if removed.len() == before {
            continue;
        }
        if keep.is_empty() {
            std::fs::remove_file(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        } else {
            write_atomically(&f, &join_docs(&keep)?)?;
        }
    }
    Ok(removed)
}

fn doc_is_in(v: &Value, namespace: &str) -> bool {
    let s = |path: &[&str]| {
        let mut v = v;
        for p in path {
            v = v.get(*p)?;
        }
        v.as_str()
    };
    match s(&["kind"]) {
        Some("Namespace") => s(&["metadata", "name"]) == Some(namespace),
        _ => s(&["metadata", "namespace"]) == Some(namespace),
    }
}

/// `delete namespace NAME`: the Namespace and everything in it, from every
/// file of `dir`.
pub fn delete_namespace(dir: &Path, namespace: &str) -> Result<String, String> {
    let exists = manifest::load_dir(dir)
        .map_err(|e| e.to_string())?
        .iter()
        .any(|o| o.key() == crate::object::ObjectKey::new(Kind::Namespace, "", namespace));
    if !exists {
        return Err(format!(
            "Error from server (NotFound): namespaces \"{namespace}\" not found"
        ));
    }
    remove_docs(dir, |v| doc_is_in(v, namespace))?;
    Ok(format!("namespace \"{namespace}\" deleted\n"))
}

/// One `kubectl label` change: set `key` to a value, or remove it.
fn parse_label(arg: &str) -> Result<(String, Option<String>), String> {
    if let Some(k) = arg.strip_suffix('-') {
        return Ok((k.to_string(), None));
    }
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), Some(v.to_string()))),
        _ => Err(format!("{arg:?}: expected KEY=VALUE or KEY-")),
    }
}

fn edit_labels(v: &mut Value, changes: &[(String, Option<String>)]) -> Result<(), String> {
    let meta = v
        .get_mut("metadata")
        .and_then(Value::as_mapping_mut)
        .ok_or("the Pod has no metadata")?;
    let key = Value::String("labels".into());
    if !matches!(meta.get(&key), Some(Value::Mapping(_))) {
        meta.insert(key.clone(), Value::Mapping(Default::default()));
    }
    let labels = meta
        .get_mut(&key)
        .and_then(Value::as_mapping_mut)
        .ok_or("labels is not a map")?;
    for (k, val) in changes {
        let k = Value::String(k.clone());
        match val {
            Some(val) => {
                labels.insert(k, Value::String(val.clone()));
            }
            None => {
                labels.remove(&k);
            }
        }
    }
    Ok(())
}

fn is_pod(v: &Value, namespace: &str, name: &str) -> bool {
    let s = |path: &[&str]| {
        let mut v = v;
        for p in path {
            v = v.get(*p)?;
        }
        v.as_str()
    };
    s(&["kind"]) == Some("Pod")
        && s(&["metadata", "name"]) == Some(name)
        && s(&["metadata", "namespace"]).unwrap_or("default") == namespace
}

/// `label pod NAME CHANGES... -n NAMESPACE`.
pub fn label(dir: &Path, namespace: &str, name: &str, args: &[String]) -> Result<String, String> {
    let changes = args
        .iter()
        .map(|a| parse_label(a))
        .collect::<Result<Vec<_>, _>>()?;
    if changes.is_empty() {
        return Err("label pod NAME KEY=VALUE|KEY- ...".into());
    }
    let done = format!("pod/{name} labeled\n");
    // A Pod document somewhere in the directory: edited in place.
    for f in manifest::files(dir).map_err(|e| e.to_string())? {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let mut docs = Vec::new();
        let mut hit = false;
        for doc in serde_norway::Deserializer::from_str(&text) {
            let mut v = Value::deserialize(doc).map_err(|e| format!("{}: {e}", f.display()))?;
            if v.is_null() {
                continue;
            }
            if is_pod(&v, namespace, name) {
                edit_labels(&mut v, &changes)?;
                hit = true;
            }
            docs.push(v);
        }
        if hit {
            write_atomically(&f, &join_docs(&docs)?)?;
            return Ok(done);
        }
    }
    // Else a replica of a Deployment: written out, then labelled.
    let objects = manifest::load_dir(dir).map_err(|e| e.to_string())?;
    let pod = objects
        .iter()
        .find_map(|o| match o {
            Object::Pod(p)
                if o.key()
                    == crate::object::ObjectKey::new(crate::object::Kind::Pod, namespace, name) =>
            {
                Some(p.clone())
            }
            _ => None,
        })
        .ok_or_else(|| format!("Error from server (NotFound): pods \"{name}\" not found"))?;
    let mut v: Value = serde_norway::to_value(&pod).map_err(|e| e.to_string())?;
    if let Some(m) = v.as_mapping_mut() {
        m.insert(
            Value::String("apiVersion".into()),
            Value::String("v1".into()),
        );
        m.insert(Value::String("kind".into()), Value::String("Pod".into()));
    }
    edit_labels(&mut v, &changes)?;
    let file = dir.join(format!("pods-{namespace}.yaml"));
    let mut docs = Vec::new();
    if let Ok(text) = std::fs::read_to_string(&file) {
        for doc in serde_norway::Deserializer::from_str(&text) {
            let d = Value::deserialize(doc).map_err(|e| format!("{}: {e}", file.display()))?;
            if !d.is_null() {
                docs.push(d);
            }
        }
    }
    docs.push(v);
    write_atomically(&file, &join_docs(&docs)?)?;
    Ok(done)
}

fn join_docs(docs: &[Value]) -> Result<String, String> {
    let mut text = String::new();
    for v in docs {
        text += "---\n";
        text += &serde_norway::to_string(v).map_err(|e| e.to_string())?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("oxvs-kubectl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("cluster")).unwrap();
        d
    }

    const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n";
    const APP: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: dev}\n\
        spec:\n  ports: [{port: 80}]\n---\napiVersion: v1\nkind: Service\n\
        metadata: {name: other, namespace: prod}\nspec:\n  ports: [{port: 80}]\n";

    #[test]
    fn apply_delete_and_namespace_deletion() {
        let d = scratch("a");
        let dir = d.join("cluster");
        std::fs::write(d.join("ns.yaml"), NS).unwrap();
        std::fs::write(d.join("app.yaml"), APP).unwrap();
        assert_eq!(
            apply(&dir, &d.join("ns.yaml")).unwrap(),
            "namespace/dev created\n"
        );
        assert_eq!(
            apply(&dir, &d.join("ns.yaml")).unwrap(),
            "namespace/dev unchanged\n"
        );
        apply(&dir, &d.join("app.yaml")).unwrap();
        assert_eq!(manifest::load_dir(&dir).unwrap().len(), 3);
        // A file that does not parse is refused and nothing is written.
        std::fs::write(
            d.join("bad.yaml"),
            "kind: Service\nmetadata: {name: x}\nspec: {ports: 3}\n",
        )
        .unwrap();
        assert!(apply(&dir, &d.join("bad.yaml")).is_err());
        assert!(!dir.join("bad.yaml").exists());

        let out = delete_namespace(&dir, "dev").unwrap();
        assert_eq!(out, "namespace \"dev\" deleted\n");
        assert!(!dir.join("ns.yaml").exists());
        let left = manifest::load_dir(&dir).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].key().to_string(), "Service/prod/other");
        assert!(delete_namespace(&dir, "dev").is_err());

        assert_eq!(
            delete_file(&dir, &d.join("app.yaml")).unwrap(),
            "service/other deleted\n"
        );
        assert!(manifest::load_dir(&dir).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    const DEPLOY: &str =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: fe, namespace: dev}\n\
        spec:\n  replicas: 2\n  selector: {matchLabels: {tier: fe}}\n  template:\n\
        \x20   metadata: {labels: {tier: fe}}\n    spec: {containers: [{name: c, image: i}]}\n";

    fn labels_of(dir: &Path, name: &str) -> BTreeMap<String, String> {
        manifest::load_dir(dir)
            .unwrap()
            .into_iter()
            .filter(|o| matches!(o, Object::Pod(_)) && o.meta().name.as_deref() == Some(name))
            .map(|o| o.meta().labels.clone().unwrap_or_default())
            .next()
            .unwrap()
    }

    #[test]
    fn label_a_replica_then_remove_it() {
        let d = scratch("l");
        let dir = d.join("cluster");
        std::fs::write(d.join("fe.yaml"), DEPLOY).unwrap();
        apply(&dir, &d.join("fe.yaml")).unwrap();
        let pods: Vec<String> = manifest::load_dir(&dir)
            .unwrap()
            .iter()
            .filter(|o| matches!(o, Object::Pod(_)))
            .map(|o| o.meta().name.clone().unwrap())
            .collect();
        assert_eq!(pods.len(), 2);
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            label(&dir, "dev", &pods[0], &args(&["secgroup=web"])).unwrap(),
            format!("pod/{} labeled\n", pods[0])
        );
        // Still two pods: the written-out one replaces its expansion.
        let all = manifest::load_dir(&dir).unwrap();
        assert_eq!(
            all.iter().filter(|o| matches!(o, Object::Pod(_))).count(),
            2
        );
        assert_eq!(labels_of(&dir, &pods[0])["secgroup"], "web");
        assert_eq!(labels_of(&dir, &pods[0])["tier"], "fe");
        assert!(!labels_of(&dir, &pods[1]).contains_key("secgroup"));
        // The second change edits the written Pod in place.
        label(&dir, "dev", &pods[0], &args(&["secgroup-"])).unwrap();
        assert!(!labels_of(&dir, &pods[0]).contains_key("secgroup"));
        assert!(label(&dir, "dev", "nope", &args(&["a=b"])).is_err());
        assert!(label(&dir, "dev", &pods[1], &args(&["=b"])).is_err());
        // A failed namespace deletion changes nothing.
        let before = manifest::load_dir(&dir).unwrap();
        assert!(delete_namespace(&dir, "dev").is_err());
        assert_eq!(manifest::load_dir(&dir).unwrap(), before);
        // Deleting the namespace takes the written-out Pod too.
        std::fs::write(d.join("ns.yaml"), NS).unwrap();
        apply(&dir, &d.join("ns.yaml")).unwrap();
        delete_namespace(&dir, "dev").unwrap();
        assert!(manifest::load_dir(&dir).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    /// `delete -f` of a Deployment takes the replicas `label` wrote out, as
    /// the garbage collector follows their ownerReferences, and nothing
    /// else: not another Deployment's replica, not a Pod of its own.
    #[test]
    fn deleting_a_deployment_takes_its_written_out_replicas() {
        let d = scratch("gc");
        let dir = d.join("cluster");
        std::fs::write(d.join("fe.yaml"), DEPLOY).unwrap();
        std::fs::write(d.join("be.yaml"), DEPLOY.replace("fe", "be")).unwrap();
        let solo = "apiVersion: v1\nkind: Pod\nmetadata: {name: solo, namespace: dev}\n\
            spec: {containers: [{name: c, image: i}]}\n";
        std::fs::write(d.join("solo.yaml"), solo).unwrap();
        for f in ["fe.yaml", "be.yaml", "solo.yaml"] {
            apply(&dir, &d.join(f)).unwrap();
        }
        let pods = |prefix: &str| -> Vec<String> {
            manifest::load_dir(&dir)
                .unwrap()
                .iter()
                .filter(|o| matches!(o, Object::Pod(_)))
                .filter_map(|o| o.meta().name.clone())
                .filter(|n| n.starts_with(prefix))
                .collect()
        };
        let (fe, be) = (pods("fe-"), pods("be-"));
        let args = vec!["secgroup=web".to_string()];
        label(&dir, "dev", &fe[0], &args).unwrap();
        label(&dir, "dev", &be[0], &args).unwrap();
        assert_eq!(
            delete_file(&dir, &d.join("fe.yaml")).unwrap(),
            "deployment.apps/fe deleted\n"
        );
        assert!(pods("fe-").is_empty(), "{:?}", pods("fe-"));
        assert_eq!(pods("be-"), be);
        assert_eq!(labels_of(&dir, &be[0])["secgroup"], "web");
        assert_eq!(pods("solo"), ["solo"]);
        delete_file(&dir, &d.join("be.yaml")).unwrap();
        assert!(pods("be-").is_empty());
        // The written-out replicas' file went with its last document.
        assert!(!dir.join("pods-dev.yaml").exists());
        assert_eq!(pods(""), ["solo"]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
