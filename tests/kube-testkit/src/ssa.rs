//! Field ownership (`metadata.managedFields`, FieldsV1) and server-side apply.
//!
//! Ownership is tracked per leaf field. A path is a list of FieldsV1 elements: `f:<name>` for a
//! map field, `k:<json>` for an item of a keyed list, `v:<json>` for a set member, and `.` for
//! the list item itself.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::schema::{ListKind, Schema};

pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

/// Which part of an object a write touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource; `status` is excluded when the kind has a status subresource.
    Main { exclude_status: bool },
    /// The `/status` subresource.
    Status,
}

impl Scope {
    fn includes_top(self, key: &str) -> bool {
        match self {
            Scope::Status => key == "status",
            Scope::Main { exclude_status } => {
                !(matches!(key, "apiVersion" | "kind") || exclude_status && key == "status")
            }
        }
    }

    fn includes(self, path: &FieldPath) -> bool {
        path.first()
            .and_then(|e| e.strip_prefix("f:"))
            .is_some_and(|k| self.includes_top(k))
    }

    fn subresource(self) -> &'static str {
        match self {
            Scope::Status => "status",
            Scope::Main { .. } => "",
        }
    }
}

const OWNED_METADATA: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];

/// The leaf fields set in `obj` within `scope`.
pub fn leaf_fields(obj: &Value, schema: &Schema, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (k, v) in map {
        if !scope.includes_top(k) {
            continue;
        }
        if k == "metadata" {
            for mk in OWNED_METADATA {
                if let Some(mv) = v.get(mk) {
                    let mut names = vec!["metadata".to_string(), mk.to_string()];
                    let mut elems = vec!["f:metadata".to_string(), format!("f:{mk}")];
                    collect(mv, schema, &mut names, &mut elems, &mut out);
                }
            }
            continue;
        }
        let mut names = vec![k.clone()];
        let mut elems = vec![format!("f:{k}")];
        collect(v, schema, &mut names, &mut elems, &mut out);
    }
    out
}

fn item_key(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    format!("k:{}", Value::Object(m))
}

fn collect(
    v: &Value,
    schema: &Schema,
    names: &mut Vec<String>,
    elems: &mut FieldPath,
    out: &mut FieldSet,
) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                names.push(k.clone());
                elems.push(format!("f:{k}"));
                collect(c, schema, names, elems, out);
                names.pop();
                elems.pop();
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let n: Vec<&str> = names.iter().map(String::as_str).collect();
            match schema.list_kind(&n) {
                ListKind::Atomic => {
                    out.insert(elems.clone());
                }
                ListKind::Set => {
                    for item in a {
                        elems.push(format!("v:{item}"));
                        out.insert(elems.clone());
                        elems.pop();
                    }
                }
                ListKind::Map(keys) => {
                    for item in a {
                        elems.push(item_key(item, &keys));
                        elems.push(".".into());
                        out.insert(elems.clone());
                        elems.pop();
                        if let Some(m) = item.as_object() {
                            for (k, c) in m {
                                names.push(k.clone());
                                elems.push(format!("f:{k}"));
                                collect(c, schema, names, elems, out);
                                names.pop();
                                elems.pop();
                            }
                        }
                        elems.pop();
                    }
                }
            }
        }
        _ => {
            out.insert(elems.clone());
        }
    }
}

fn find_item(arr: &[Value], elem: &str) -> Option<usize> {
    if let Some(k) = elem.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        arr.iter()
            .position(|item| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))
    } else if let Some(v) = elem.strip_prefix("v:") {
        let val: Value = serde_json::from_str(v).ok()?;
        arr.iter().position(|item| *item == val)
    } else {
        None
    }
}

/// The value at a field path.
pub fn get_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for e in path {
        if e == "." {
            continue;
        }
        cur = match e.strip_prefix("f:") {
            Some(name) => cur.get(name)?,
            None => {
                let arr = cur.as_array()?;
                &arr[find_item(arr, e)?]
            }
        };
    }
    Some(cur)
}

/// Removes the field (or list item, for paths ending in `.`, `k:` or `v:`) at a path.
pub fn remove_at(v: &mut Value, path: &[String]) {
    let path: Vec<&String> = path.iter().filter(|e| *e != ".").collect();
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for e in parents {
        let next = match e.strip_prefix("f:") {
            Some(name) => cur.get_mut(name),
            None => match cur.as_array() {
                Some(arr) => match find_item(arr, e) {
                    Some(i) => cur.get_mut(i),
                    None => None,
                },
                None => None,
            },
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last.strip_prefix("f:") {
        Some(name) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(name);
            }
        }
        None => {
            if let Some(arr) = cur.as_array_mut()
                && let Some(i) = find_item(arr, last)
            {
                arr.remove(i);
            }
        }
    }
}

/// FieldsV1 JSON of a set of paths.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for path in set {
        let mut cur = &mut root;
        for e in path {
            let Some(m) = cur.as_object_mut() else { break };
            cur = m
                .entry(e.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

/// The set of paths of a FieldsV1 value.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, c) in m {
                    prefix.push(k.clone());
                    walk(c, prefix, out);
                    prefix.pop();
                }
            }
            _ if !prefix.is_empty() => {
                out.insert(prefix.clone());
            }
            _ => {}
        }
    }
    let mut out = FieldSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Managed {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: FieldSet,
}

pub fn read_managed(obj: &Value) -> Vec<Managed> {
    let Some(list) = obj
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .map(|e| {
            let s = |k: &str| {
                e.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            Managed {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                time: s("time"),
                subresource: s("subresource"),
                fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
            }
        })
        .collect()
}

pub fn write_managed(obj: &mut Value, entries: &[Managed]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                               "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields)});
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    let meta = crate::util::meta_mut(obj);
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub manager: String,
    pub field: String,
}

/// Renders a path as the API server names fields in conflict messages (`.spec.ports[port=80]`).
pub fn render_path(path: &[String]) -> String {
    let mut s = String::new();
    for e in path {
        if let Some(n) = e.strip_prefix("f:") {
            s.push('.');
            s.push_str(n);
        } else if let Some(k) = e.strip_prefix("k:") {
            let inner = serde_json::from_str::<Map<String, Value>>(k)
                .map(|m| {
                    m.iter()
                        .map(|(a, b)| format!("{a}={b}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            s.push_str(&format!("[{inner}]"));
        } else if let Some(v) = e.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// Merges an applied configuration into an object (keyed lists by all their keys, sets by
/// value, everything else replaced).
pub fn merge_config(target: &mut Value, cfg: &Value, schema: &Schema, names: &mut Vec<String>) {
    let (Some(_), Some(cmap)) = (target.as_object(), cfg.as_object()) else {
        *target = cfg.clone();
        return;
    };
    for (k, cv) in cmap {
        names.push(k.clone());
        let Some(tmap) = target.as_object_mut() else {
            return;
        };
        let entry = tmap.entry(k.clone()).or_insert(Value::Null);
        match cv {
            Value::Object(_) if entry.is_object() => merge_config(entry, cv, schema, names),
            Value::Array(items) if entry.is_array() => {
                let n: Vec<&str> = names.iter().map(String::as_str).collect();
                let kind = schema.list_kind(&n);
                if let Some(cur) = entry.as_array_mut() {
                    match kind {
                        ListKind::Atomic => *cur = items.clone(),
                        ListKind::Set => {
                            for v in items {
                                if !cur.contains(v) {
                                    cur.push(v.clone());
                                }
                            }
                        }
                        ListKind::Map(keys) => {
                            for item in items {
                                let pos = cur.iter().position(|c| {
                                    keys.iter().all(|key| c.get(key) == item.get(key))
                                });
                                match pos {
                                    Some(i) => merge_config(&mut cur[i], item, schema, names),
                                    None => cur.push(item.clone()),
                                }
                            }
                        }
                    }
                }
            }
            _ => *entry = cv.clone(),
        }
        names.pop();
    }
}

/// Server-side apply of `config` by `manager` onto `live` (an object, possibly new and empty).
/// Returns the new object with updated `managedFields`, or the conflicts when not forced.
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of an apply request and its context"
)]
pub fn apply(
    live: &Value,
    config: &Value,
    manager: &str,
    force: bool,
    schema: &Schema,
    scope: Scope,
    api_version: &str,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let cfg_fields = leaf_fields(config, schema, scope);
    let mut managed = read_managed(live);
    let sub = scope.subresource();
    let is_me =
        |e: &Managed| e.manager == manager && e.operation == "Apply" && e.subresource == sub;

    let mut conflicts = Vec::new();
    let mut taken: FieldSet = FieldSet::new();
    for e in managed.iter().filter(|e| !is_me(e)) {
        for p in e.fields.intersection(&cfg_fields) {
            if get_at(live, p) != get_at(config, p) {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    field: render_path(p),
                });
                taken.insert(p.clone());
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for e in managed.iter_mut().filter(|e| !is_me(e)) {
        e.fields.retain(|p| !taken.contains(p));
    }

    let mut out = live.clone();
    let previous: FieldSet = managed
        .iter()
        .filter(|e| is_me(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut removed: Vec<&FieldPath> = previous.difference(&cfg_fields).collect();
    removed.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in removed {
        let owned_by_other = managed.iter().any(|e| !is_me(e) && e.fields.contains(p));
        if !owned_by_other {
            remove_at(&mut out, p);
        }
    }

    let mut scoped = Map::new();
    if let Some(m) = config.as_object() {
        for (k, v) in m {
            if k == "metadata" {
                let mut meta = Map::new();
                for mk in OWNED_METADATA {
                    if let Some(mv) = v.get(mk) {
                        meta.insert(mk.into(), mv.clone());
                    }
                }
                scoped.insert(k.clone(), Value::Object(meta));
            } else if scope.includes_top(k) {
                scoped.insert(k.clone(), v.clone());
            }
        }
    }
    merge_config(&mut out, &Value::Object(scoped), schema, &mut Vec::new());

    managed.retain(|e| !is_me(e));
    managed.push(Managed {
        manager: manager.into(),
        operation: "Apply".into(),
        api_version: api_version.into(),
        time: now.into(),
        subresource: sub.into(),
        fields: cfg_fields,
    });
    write_managed(&mut out, &managed);
    Ok(out)
}

/// Records a non-apply write (create, update, patch) by `manager`: it takes the fields it
/// changed away from every other manager; fields that vanished are owned by no one.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    schema: &Schema,
    scope: Scope,
    api_version: &str,
    now: &str,
) {
    let new_fields = leaf_fields(new, schema, scope);
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| old.and_then(|o| get_at(o, p)) != get_at(new, p))
        .cloned()
        .collect();
    let mut managed = old.map(read_managed).unwrap_or_default();
    let sub = scope.subresource();
    for e in managed.iter_mut() {
        e.fields
            .retain(|p| !scope.includes(p) || new_fields.contains(p));
        if !(e.manager == manager && e.operation == "Update" && e.subresource == sub) {
            e.fields.retain(|p| !changed.contains(p));
        }
    }
    if !changed.is_empty() {
        match managed
            .iter_mut()
            .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == sub)
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now.into();
            }
            None => managed.push(Managed {
                manager: manager.into(),
                operation: "Update".into(),
                api_version: api_version.into(),
                time: now.into(),
                subresource: sub.into(),
                fields: changed,
            }),
        }
    }
    write_managed(new, &managed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::Builtin("services".into())
    }
    const MAIN: Scope = Scope::Main {
        exclude_status: true,
    };

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"metadata": {"name": "a", "labels": {"x": "1"}, "finalizers": ["f"]},
                         "spec": {"ports": [{"port": 80, "protocol": "TCP"}], "type": "LoadBalancer"},
                         "status": {"x": 1}});
        let f = leaf_fields(&obj, &schema(), MAIN);
        assert!(f.contains(&vec!["f:metadata".into(), "f:labels".into(), "f:x".into()]));
        assert!(f.contains(&vec![
            "f:spec".into(),
            "f:ports".into(),
            "k:{\"port\":80,\"protocol\":\"TCP\"}".into(),
            ".".into()
        ]));
        assert!(f.contains(&vec![
            "f:metadata".into(),
            "f:finalizers".into(),
            "v:\"f\"".into()
        ]));
        assert!(!f.iter().any(|p| p[0] == "f:status"));
        assert!(
            !f.iter()
                .any(|p| p.get(1).map(String::as_str) == Some("f:name"))
        );
        assert_eq!(from_fields_v1(&to_fields_v1(&f)), f);
        for p in &f {
            assert!(get_at(&obj, p).is_some(), "{p:?}");
        }
    }

    #[test]
    fn two_managers_conflict_then_force() {
        let a = apply(&json!({"metadata": {"name": "s"}}),
                      &json!({"metadata": {"name": "s"}, "spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]}}),
                      "a", false, &schema(), MAIN, "v1", "t").unwrap();
        // b sets the same value: shared ownership, no conflict.
        let b = apply(
            &a,
            &json!({"spec": {"type": "ClusterIP"}}),
            "b",
            false,
            &schema(),
            MAIN,
            "v1",
            "t",
        )
        .unwrap();
        // b changes it: conflict with a.
        let err = apply(
            &b,
            &json!({"spec": {"type": "LoadBalancer"}}),
            "b",
            false,
            &schema(),
            MAIN,
            "v1",
            "t",
        )
        .unwrap_err();
        assert_eq!(
            err,
            vec![Conflict {
                manager: "a".into(),
                field: ".spec.type".into()
            }]
        );
        let forced = apply(
            &b,
            &json!({"spec": {"type": "LoadBalancer"}}),
            "b",
            true,
            &schema(),
            MAIN,
            "v1",
            "t",
        )
        .unwrap();
        assert_eq!(forced["spec"]["type"], "LoadBalancer");
        let m = read_managed(&forced);
        let a_fields = &m.iter().find(|e| e.manager == "a").unwrap().fields;
        assert!(!a_fields.contains(&vec!["f:spec".to_string(), "f:type".to_string()]));
        // a now drops ports from its config: they disappear (nobody else owns them).
        let dropped = apply(
            &forced,
            &json!({"spec": {}}),
            "a",
            false,
            &schema(),
            MAIN,
            "v1",
            "t",
        )
        .unwrap();
        assert!(
            dropped["spec"]
                .get("ports")
                .is_none_or(|p| p.as_array().unwrap().is_empty()),
            "{dropped}"
        );
        assert_eq!(dropped["spec"]["type"], "LoadBalancer");
    }

    #[test]
    fn keyed_items_merge_and_remove() {
        let live = apply(
            &json!({}),
            &json!({"spec": {"ports": [{"port": 80, "protocol": "TCP", "name": "a"}]}}),
            "a",
            false,
            &schema(),
            MAIN,
            "v1",
            "t",
        )
        .unwrap();
        let both = apply(
            &live,
            &json!({"spec": {"ports": [{"port": 53, "protocol": "UDP", "name": "b"}]}}),
            "b",
            false,
            &schema(),
            MAIN,
            "v1",
            "t",
        )
        .unwrap();
        assert_eq!(both["spec"]["ports"].as_array().unwrap().len(), 2);
        let only_b = apply(
            &both,
            &json!({"spec": {}}),
            "a",
            false,
            &schema(),
            MAIN,
            "v1",
            "t",
        )
        .unwrap();
        assert_eq!(
            only_b["spec"]["ports"],
            json!([{"port": 53, "protocol": "UDP", "name": "b"}])
        );
    }

    #[test]
    fn updates_take_ownership() {
        let live = apply(
            &json!({}),
            &json!({"spec": {"type": "ClusterIP"}}),
            "a",
            false,
            &schema(),
            MAIN,
            "v1",
            "t",
        )
        .unwrap();
        let mut new = live.clone();
        new["spec"]["type"] = json!("NodePort");
        track_update(
            Some(&live),
            &mut new,
            "kubectl-edit",
            &schema(),
            MAIN,
            "v1",
            "t",
        );
        let m = read_managed(&new);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].manager, "kubectl-edit");
        // Now a re-applies its value: conflict with kubectl-edit.
        assert!(
            apply(
                &new,
                &json!({"spec": {"type": "ClusterIP"}}),
                "a",
                false,
                &schema(),
                MAIN,
                "v1",
                "t"
            )
            .is_err()
        );
    }

    #[test]
    fn remove_at_paths() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "l": [{"k": 1}, {"k": 2}], "s": ["x", "y"]});
        remove_at(&mut v, &["f:a".into(), "f:b".into()]);
        remove_at(&mut v, &["f:l".into(), "k:{\"k\":1}".into(), ".".into()]);
        remove_at(&mut v, &["f:s".into(), "v:\"y\"".into()]);
        assert_eq!(v, json!({"a": {"c": 2}, "l": [{"k": 2}], "s": ["x"]}));
    }
}
