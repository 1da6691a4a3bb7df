//! The three classic patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
//! strategic merge patch (list merging by key for the kinds described in [`crate::schema`]).

use serde_json::Value;

use crate::schema::{ListKind, Schema};

/// Why a patch could not be applied (answered as 422 or 400 by the server).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PatchError {
    #[error("the patch is not valid JSON: {0}")]
    Malformed(String),
    #[error("the patch could not be applied: {0}")]
    Failed(String),
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::Malformed(e.to_string()))?;
    json_patch::patch(target, &ops).map_err(|e| PatchError::Failed(e.to_string()))
}

/// Strategic merge patch: maps merge, `null` deletes, lists merge by key where the schema says
/// so (otherwise they are replaced), and the `$patch`, `$deleteFromPrimitiveList/` and
/// `$setElementOrder/` directives are honoured (the latter is accepted and ignored).
pub fn strategic_merge(
    target: &mut Value,
    patch: &Value,
    schema: &Schema,
) -> Result<(), PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed(
            "a strategic merge patch must be a JSON object".into(),
        ));
    }
    merge_map(target, patch, schema, &mut Vec::new());
    Ok(())
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn merge_map(target: &mut Value, patch: &Value, schema: &Schema, path: &mut Vec<String>) {
    let Some(pmap) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if pmap.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip_directives(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Some(tmap) = target.as_object_mut() else {
        return;
    };
    for (k, pv) in pmap {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(cur)), Some(del)) = (tmap.get_mut(field), pv.as_array()) {
                cur.retain(|x| !del.contains(x));
            }
            continue;
        }
        path.push(k.clone());
        match pv {
            Value::Null => {
                tmap.remove(k);
            }
            Value::Object(o) if o.get("$patch").and_then(Value::as_str) == Some("delete") => {
                tmap.remove(k);
            }
            Value::Object(_) => {
                let entry = tmap.entry(k.clone()).or_insert(Value::Null);
                merge_map(entry, pv, schema, path);
            }
            Value::Array(items) => {
                let names: Vec<&str> = path.iter().map(String::as_str).collect();
                let kind = schema.list_kind(&names);
                let entry = tmap.entry(k.clone()).or_insert(Value::Array(Vec::new()));
                merge_list(entry, items, &kind, schema, path);
            }
            other => {
                tmap.insert(k.clone(), other.clone());
            }
        }
        path.pop();
    }
}

fn merge_list(
    target: &mut Value,
    items: &[Value],
    kind: &ListKind,
    schema: &Schema,
    path: &mut Vec<String>,
) {
    let is_replace = |v: &Value| v.get("$patch").and_then(Value::as_str) == Some("replace");
    if items.iter().any(is_replace) {
        *target = Value::Array(
            items
                .iter()
                .filter(|v| !is_replace(v))
                .map(strip_directives)
                .collect(),
        );
        return;
    }
    if !target.is_array() {
        *target = Value::Array(Vec::new());
    }
    let Some(cur) = target.as_array_mut() else {
        return;
    };
    match kind {
        ListKind::Atomic => *cur = items.iter().map(strip_directives).collect(),
        ListKind::Set => {
            for v in items {
                if !cur.contains(v) {
                    cur.push(v.clone());
                }
            }
        }
        ListKind::Map(keys) => {
            let Some(key) = keys.first() else {
                *cur = items.to_vec();
                return;
            };
            for item in items {
                let kv = item.get(key);
                let pos = kv.and_then(|kv| cur.iter().position(|c| c.get(key) == Some(kv)));
                if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                    cur.retain(|c| kv.is_none() || c.get(key) != kv);
                    continue;
                }
                match pos {
                    Some(i) => merge_map(&mut cur[i], item, schema, path),
                    None => cur.push(strip_directives(item)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc() -> Schema {
        Schema::Builtin("services".into())
    }

    #[test]
    fn merge_patch_deletes_with_null() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut t, &json!({"a": null, "b": {"c": 5}}));
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}}));
    }

    #[test]
    fn json_patch_ops_and_failures() {
        let mut t = json!({"a": [1, 2], "b": "x"});
        json_patch(
            &mut t,
            &json!([{"op": "add", "path": "/a/-", "value": 3},
                                    {"op": "test", "path": "/b", "value": "x"},
                                    {"op": "remove", "path": "/b"}]),
        )
        .unwrap();
        assert_eq!(t, json!({"a": [1, 2, 3]}));
        assert!(matches!(
            json_patch(&mut t, &json!([{"op": "remove", "path": "/zz"}])),
            Err(PatchError::Failed(_))
        ));
        assert!(matches!(
            json_patch(&mut t, &json!({"op": 1})),
            Err(PatchError::Malformed(_))
        ));
    }

    #[test]
    fn strategic_merges_ports_by_key() {
        let mut t = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}],
                                     "externalIPs": ["1.1.1.1"]}});
        strategic_merge(
            &mut t,
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 8080},
                                                         {"port": 443, "$patch": "delete"},
                                                         {"port": 53, "name": "dns"}],
                                                "externalIPs": ["2.2.2.2"]}}),
            &svc(),
        )
        .unwrap();
        assert_eq!(
            t["spec"]["ports"],
            json!([{"port": 80, "name": "http", "targetPort": 8080}, {"port": 53, "name": "dns"}])
        );
        assert_eq!(t["spec"]["externalIPs"], json!(["2.2.2.2"]));
    }

    #[test]
    fn strategic_finalizers_and_conditions() {
        let mut t = json!({"metadata": {"finalizers": ["a"]},
                           "status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        strategic_merge(&mut t, &json!({"metadata": {"finalizers": ["b"]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "True"}]}}), &svc()).unwrap();
        assert_eq!(t["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(
            t["status"]["conditions"][0],
            json!({"type": "Ready", "status": "True"})
        );
        assert_eq!(t["status"]["conditions"].as_array().unwrap().len(), 2);
        strategic_merge(&mut t, &json!({"$deleteFromPrimitiveList/metadata": [], "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}), &svc()).unwrap();
        assert_eq!(t["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn strategic_replace_directives() {
        let mut t = json!({"spec": {"ports": [{"port": 80}], "selector": {"a": "1", "b": "2"}}});
        strategic_merge(
            &mut t,
            &json!({"spec": {"ports": [{"$patch": "replace"}, {"port": 9}],
                                                "selector": {"$patch": "replace", "c": "3"}}}),
            &svc(),
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"spec": {"ports": [{"port": 9}], "selector": {"c": "3"}}})
        );
        assert!(strategic_merge(&mut t, &json!([1]), &svc()).is_err());
    }
}
