//! Manifests: a directory of multi-document YAML (or JSON) files, read the
//! way `kubectl apply -f DIR` reads them — every `.yaml`, `.yml` and `.json`
//! file in name order, `---` between documents, `kind: List` unpacked —
//! into typed objects for the store.
//!
//! Errors name the file, the document's index in it (from 0, as kubectl's
//! messages count) and the field that did not fit, e.g.
//! `web.yaml, document 2 (Service default/web): spec.ports[0].port: invalid type`.
//! Kinds the agent has no use for (ConfigMaps, RBAC...) are skipped, not
//! refused, so a real application's manifests load as they are.
//!
//! Files whose names start with `.` are not manifests (the controller's
//! state file lives beside them).

use crate::deploy;
use crate::object::Object;
use serde::Deserialize;
use serde_norway::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// Why manifests could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The file.
    pub file: PathBuf,
    /// The document's index in the file, if the problem is in one.
    pub document: Option<usize>,
    /// What the document is, when known (`Service default/web`).
    pub what: Option<String>,
    /// The message, starting with the field path when there is one.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(d) = self.document {
            write!(f, ", document {d}")?;
        }
        if let Some(w) = &self.what {
            write!(f, " ({w})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

/// The manifest files of `dir`, in name order.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let err = |e: std::io::Error| ManifestError {
        file: dir.into(),
        document: None,
        what: None,
        message: e.to_string(),
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let p = entry.map_err(err)?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !name.starts_with('.') && matches!(ext, "yaml" | "yml" | "json") && p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every manifest of `dir`; Deployments are kept and also expanded
/// into their Pods ([`deploy::expand`]).
pub fn load_dir(dir: &Path) -> Result<Vec<Object>, ManifestError> {
    let mut out = Vec::new();
    for f in files(dir)? {
        let text = std::fs::read_to_string(&f).map_err(|e| ManifestError {
            file: f.clone(),
            document: None,
            what: None,
            message: e.to_string(),
        })?;
        out.extend(parse(&text, &f)?);
    }
    expand(&mut out);
    Ok(out)
}

/// Adds the Pods of every Deployment in `objects`, except those a Pod
/// document of the same name already gives: a Pod, once created, is its own
/// object (`kubectl label` changes it, not its Deployment), so a written-out
/// Pod wins over the template it came from.
pub fn expand(objects: &mut Vec<Object>) {
    let explicit: std::collections::BTreeSet<_> = objects
        .iter()
        .filter(|o| matches!(o, Object::Pod(_)))
        .map(Object::key)
        .collect();
    let pods: Vec<Object> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Deployment(d) => Some(deploy::expand(d)),
            _ => None,
        })
        .flatten()
        .map(Object::Pod)
        .filter(|p| !explicit.contains(&p.key()))
        .collect();
    objects.extend(pods);
}

/// Parses one file's text; `file` only names it in errors.
pub fn parse(text: &str, file: &Path) -> Result<Vec<Object>, ManifestError> {
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let err = |what: Option<String>, message: String| ManifestError {
            file: file.into(),
            document: Some(i),
            what,
            message,
        };
        let v = Value::deserialize(doc).map_err(|e| err(None, e.to_string()))?;
        if v.is_null() {
            continue; // an empty document (a trailing `---`)
        }
        read_value(v, &mut out).map_err(|(what, m)| err(what, m))?;
    }
    Ok(out)
}

fn str_field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = v;
    for p in path {
        v = v.get(*p)?;
    }
    v.as_str()
}

type DocError = (Option<String>, String);

fn read_value(v: Value, out: &mut Vec<Object>) -> Result<(), DocError> {
    let kind = str_field(&v, &["kind"])
        .ok_or((
            None,
            "kind: missing (every manifest names its kind)".to_string(),
        ))?
        .to_string();
    if kind == "List" || kind.ends_with("List") && v.get("items").is_some() {
        let items = match v.get("items") {
            Some(Value::Sequence(s)) => s.clone(),
            Some(Value::Null) | None => Vec::new(),
            Some(_) => return Err((Some(kind), "items: expected a list".into())),
        };
        for (j, item) in items.into_iter().enumerate() {
            read_value(item, out).map_err(|(w, m)| (w, format!("items[{j}].{m}")))?;
        }
        return Ok(());
    }
    let name = str_field(&v, &["metadata", "name"]).unwrap_or("");
    let what = match str_field(&v, &["metadata", "namespace"]) {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    };
    let o = match kind.as_str() {
        "Namespace" => Object::Namespace(typed(v, &what)?),
        "Node" => Object::Node(typed(v, &what)?),
        "Pod" => Object::Pod(typed(v, &what)?),
        "Service" => Object::Service(typed(v, &what)?),
        "EndpointSlice" => Object::EndpointSlice(typed(v, &what)?),
        "Deployment" => Object::Deployment(typed(v, &what)?),
        "NetworkPolicy" => Object::NetworkPolicy(typed(v, &what)?),
        "AdminNetworkPolicy" => Object::AdminNetworkPolicy(typed(v, &what)?),
        "BaselineAdminNetworkPolicy" => Object::BaselineAdminNetworkPolicy(typed(v, &what)?),
        _ => return Ok(()),
    };
    if o.meta().name.as_deref().unwrap_or("").is_empty() {
        return Err((Some(what), "metadata.name: missing".into()));
    }
    out.push(o);
    Ok(())
}

fn typed<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> Result<T, DocError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let msg = if path == "." || path.is_empty() {
            inner
        } else {
            format!("{path}: {inner}")
        };
        (Some(what.to_string()), msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Kind;

    const GUESTBOOK: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: development
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: frontend, namespace: development}
  spec:
    selector: {app: guestbook}
    ports: [{port: 80, targetPort: http}]
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: ignored}
---
"#;

    #[test]
    fn multi_document_and_lists() {
        let objs = parse(GUESTBOOK, Path::new("g.yaml")).unwrap();
        let kinds: Vec<Kind> = objs.iter().map(Object::kind).collect();
        assert_eq!(kinds, vec![Kind::Namespace, Kind::Service]);
        assert_eq!(objs[1].key().to_string(), "Service/development/frontend");
    }

    #[test]
    fn errors_name_file_document_and_field() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\
                    apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: x}\n\
                    spec:\n  ports:\n  - port: eighty\n";
        let e = parse(text, Path::new("web.yaml")).unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("web.yaml, document 1 (Service x/web): spec.ports[0].port:"),
            "{s}"
        );
        let e = parse("apiVersion: v1\nmetadata: {name: a}\n", Path::new("a.yaml")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a.yaml, document 0: kind: missing (every manifest names its kind)"
        );
        let e = parse("a: [1\n", Path::new("b.yaml")).unwrap_err();
        assert!(e.to_string().starts_with("b.yaml, document 0: "), "{e}");
    }
}
