//! What the server knows about the shape of objects: which lists merge by key
//! (strategic merge patch and server-side apply), and CRD structural schemas
//! (validation, pruning, defaulting).

use serde_json::Value;

/// How a list field merges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    /// Replaced as a whole.
    Atomic,
    /// A set of scalars, merged by value (`metadata.finalizers`).
    Set,
    /// A list of objects keyed by these fields; the first is the strategic-merge `patchMergeKey`.
    Map(Vec<String>),
}

/// The shape information of one resource.
#[derive(Debug, Clone)]
pub enum Schema {
    /// A built-in kind, identified by its plural resource name.
    Builtin(String),
    /// A custom resource with its CRD version's `openAPIV3Schema` (if any).
    Custom(Option<Value>),
}

fn keys(k: &[&str]) -> ListKind {
    ListKind::Map(k.iter().map(|s| s.to_string()).collect())
}

fn pod_spec_list_kind(rest: &str) -> Option<ListKind> {
    Some(match rest {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets" => keys(&["name"]),
        "containers.ports" | "initContainers.ports" => keys(&["containerPort", "protocol"]),
        "containers.env" | "initContainers.env" => keys(&["name"]),
        "containers.volumeMounts" | "initContainers.volumeMounts" => keys(&["mountPath"]),
        "hostAliases" => keys(&["ip"]),
        _ => return None,
    })
}

fn builtin_list_kind(plural: &str, path: &[&str]) -> ListKind {
    let joined = path.join(".");
    let found = match (plural, joined.as_str()) {
        ("services", "spec.ports") => Some(keys(&["port", "protocol"])),
        ("nodes", "status.addresses") => Some(keys(&["type"])),
        ("serviceaccounts", "secrets" | "imagePullSecrets") => Some(keys(&["name"])),
        ("daemonsets" | "deployments", p) => p
            .strip_prefix("spec.template.spec.")
            .and_then(pod_spec_list_kind),
        ("pods", p) => p.strip_prefix("spec.").and_then(pod_spec_list_kind),
        _ => None,
    };
    match found {
        Some(k) => k,
        None if path.last() == Some(&"conditions") => keys(&["type"]),
        None => ListKind::Atomic,
    }
}

/// The schema node of a CRD schema at a path of field names (list items are transparent).
fn crd_node<'a>(root: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut node = root;
    for seg in path {
        if node.get("type").and_then(Value::as_str) == Some("array") {
            node = node.get("items")?;
        }
        node = match node.get("properties").and_then(|p| p.get(*seg)) {
            Some(n) => n,
            None => node.get("additionalProperties").filter(|a| a.is_object())?,
        };
    }
    Some(node)
}

impl Schema {
    /// The merge behaviour of the list at `path` (field names only).
    pub fn list_kind(&self, path: &[&str]) -> ListKind {
        match path {
            ["metadata", "finalizers"] => return ListKind::Set,
            ["metadata", "ownerReferences"] => return keys(&["uid"]),
            ["metadata", ..] => return ListKind::Atomic,
            _ => {}
        }
        match self {
            Schema::Builtin(plural) => builtin_list_kind(plural, path),
            Schema::Custom(None) => ListKind::Atomic,
            Schema::Custom(Some(root)) => {
                let Some(node) = crd_node(root, path) else {
                    return ListKind::Atomic;
                };
                match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("map") => ListKind::Map(
                        node.get("x-kubernetes-list-map-keys")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(|k| k.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    ),
                    Some("set") => ListKind::Set,
                    _ => ListKind::Atomic,
                }
            }
        }
    }
}

/// Validates a custom object against a structural schema, prunes unknown fields and applies
/// defaults, as the API server does for CRDs. Returns `(field, message)` causes.
pub fn validate_custom(schema: &Value, obj: &mut Value) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let Some(map) = obj.as_object_mut() else {
        return vec![(String::new(), "must be an object".into())];
    };
    let props = schema.get("properties");
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match props.and_then(|p| p.get(&k)) {
            Some(sub) if is_pruned_null(sub, map.get(&k)) => {
                map.remove(&k);
            }
            Some(sub) => {
                if let Some(v) = map.get_mut(&k) {
                    walk(sub, v, &k, &mut errs);
                }
            }
            None if preserve => {}
            None => {
                map.remove(&k);
            }
        }
    }
    apply_defaults_and_required(
        schema,
        map,
        "",
        &mut errs,
        &["apiVersion", "kind", "metadata"],
    );
    errs
}

fn apply_defaults_and_required(
    schema: &Value,
    map: &mut serde_json::Map<String, Value>,
    path: &str,
    errs: &mut Vec<(String, String)>,
    skip: &[&str],
) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, sub) in props {
            if skip.contains(&k.as_str()) || map.contains_key(k) {
                continue;
            }
            if let Some(d) = sub.get("default") {
                map.insert(k.clone(), d.clone());
            }
        }
    }
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !skip.contains(&r) && !map.contains_key(r) {
                errs.push((join(path, r), "Required value".into()));
            }
        }
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

/// A `null` field whose schema is not `nullable` is dropped (then defaulted), as the API
/// server does: clients often serialize unset optional fields as `null`.
fn is_pruned_null(schema: &Value, v: Option<&Value>) -> bool {
    v.is_some_and(Value::is_null) && schema.get("nullable").and_then(Value::as_bool) != Some(true)
}

fn walk(schema: &Value, v: &mut Value, path: &str, errs: &mut Vec<(String, String)>) {
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if int_or_string {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            errs.push((
                path.into(),
                format!("Invalid value: {v}: must be an integer or a string"),
            ));
        }
        return;
    }
    if v.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            errs.push((path.into(), "Invalid value: null: must not be null".into()));
        }
        return;
    }
    if let Some(ty) = schema.get("type").and_then(Value::as_str)
        && !type_ok(ty, v)
    {
        errs.push((
            path.into(),
            format!("Invalid value: {v}: {path} in body must be of type {ty}"),
        ));
        return;
    }
    if let Some(en) = schema.get("enum").and_then(Value::as_array)
        && !en.contains(v)
    {
        let allowed: Vec<String> = en.iter().map(Value::to_string).collect();
        errs.push((
            path.into(),
            format!(
                "Unsupported value: {v}: supported values: {}",
                allowed.join(", ")
            ),
        ));
    }
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    if let Some(x) = v.as_f64()
        && (num("minimum").is_some_and(|m| x < m) || num("maximum").is_some_and(|m| x > m))
    {
        errs.push((path.into(), format!("Invalid value: {v}: out of range")));
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as f64;
        if num("minLength").is_some_and(|m| len < m) || num("maxLength").is_some_and(|m| len > m) {
            errs.push((
                path.into(),
                format!("Invalid value: {v}: length out of range"),
            ));
        }
    }
    match v {
        Value::Object(map) => {
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            let props = schema.get("properties");
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let sub = props.and_then(|p| p.get(&k)).or(additional);
                match sub {
                    Some(sub) if is_pruned_null(sub, map.get(&k)) => {
                        map.remove(&k);
                    }
                    Some(sub) => {
                        if let Some(child) = map.get_mut(&k) {
                            walk(sub, child, &join(path, &k), errs);
                        }
                    }
                    None if preserve
                        || schema.get("additionalProperties") == Some(&Value::Bool(true)) => {}
                    None => {
                        map.remove(&k);
                    }
                }
            }
            apply_defaults_and_required(schema, map, path, errs, &[]);
        }
        Value::Array(items) => {
            if num("maxItems").is_some_and(|m| items.len() as f64 > m) {
                errs.push((path.into(), "Too many items".into()));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), errs);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_list_kinds() {
        let svc = Schema::Builtin("services".into());
        assert_eq!(
            svc.list_kind(&["spec", "ports"]),
            keys(&["port", "protocol"])
        );
        assert_eq!(svc.list_kind(&["status", "conditions"]), keys(&["type"]));
        assert_eq!(svc.list_kind(&["metadata", "finalizers"]), ListKind::Set);
        assert_eq!(svc.list_kind(&["spec", "externalIPs"]), ListKind::Atomic);
        let ds = Schema::Builtin("daemonsets".into());
        assert_eq!(
            ds.list_kind(&["spec", "template", "spec", "containers"]),
            keys(&["name"])
        );
        assert_eq!(
            ds.list_kind(&["spec", "template", "spec", "containers", "env"]),
            keys(&["name"])
        );
    }

    fn crd_schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["cidr"], "properties": {
                "cidr": {"type": "string"},
                "count": {"type": "integer", "default": 1, "minimum": 0},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "blocks": {"type": "array", "x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["cidr"],
                           "items": {"type": "object", "properties": {"cidr": {"type": "string"}}}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            }},
            "status": {"type": "object", "properties": {"conditions": {"type": "array",
                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                "items": {"type": "object"}}}},
        }})
    }

    #[test]
    fn crd_list_kinds_come_from_the_schema() {
        let s = Schema::Custom(Some(crd_schema()));
        assert_eq!(s.list_kind(&["spec", "blocks"]), keys(&["cidr"]));
        assert_eq!(s.list_kind(&["status", "conditions"]), keys(&["type"]));
        assert_eq!(s.list_kind(&["spec", "other"]), ListKind::Atomic);
    }

    #[test]
    fn custom_validation_prunes_defaults_and_rejects() {
        let mut ok = json!({"apiVersion": "x/v1", "kind": "P", "metadata": {"name": "a"},
            "spec": {"cidr": "10.0.0.0/24", "junk": 1, "free": {"any": 1}}, "extra": true});
        assert!(validate_custom(&crd_schema(), &mut ok).is_empty());
        assert_eq!(ok["spec"]["count"], 1);
        assert!(ok["spec"].get("junk").is_none());
        assert!(ok.get("extra").is_none());
        assert_eq!(ok["spec"]["free"]["any"], 1);

        let mut nulls = json!({"spec": {"cidr": "x", "count": null, "mode": null}});
        assert!(validate_custom(&crd_schema(), &mut nulls).is_empty());
        assert_eq!(
            nulls["spec"],
            json!({"cidr": "x", "count": 1}),
            "nulls are pruned, then defaulted"
        );

        let mut bad = json!({"spec": {"count": "x", "mode": "c"}});
        let errs = validate_custom(&crd_schema(), &mut bad);
        let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        assert!(fields.contains(&"spec.count"), "{errs:?}");
        assert!(fields.contains(&"spec.mode"), "{errs:?}");
        assert!(fields.contains(&"spec.cidr"), "{errs:?}");
    }
}
