//! JSON schemas written out as Cilium's generated CRDs have them, shared by the CRDs here.

use schemars::{Schema, SchemaGenerator, json_schema};

/// Cilium's (slim) `LabelSelector` schema, as in its generated CRD.
pub(crate) fn label_selector_schema(description: &str) -> Schema {
    json_schema!({
        "type": "object",
        "description": description,
        "properties": {
            "matchExpressions": {
                "type": "array",
                "description": "matchExpressions is a list of label selector requirements. The requirements are ANDed.",
                "items": {
                    "type": "object",
                    "description": "A label selector requirement is a selector that contains values, a key, and an operator that\nrelates the key and values.",
                    "properties": {
                        "key": {
                            "type": "string",
                            "description": "key is the label key that the selector applies to."
                        },
                        "operator": {
                            "type": "string",
                            "description": "operator represents a key's relationship to a set of values.\nValid operators are In, NotIn, Exists and DoesNotExist.",
                            "enum": ["In", "NotIn", "Exists", "DoesNotExist"]
                        },
                        "values": {
                            "type": "array",
                            "description": "values is an array of string values. If the operator is In or NotIn,\nthe values array must be non-empty. If the operator is Exists or DoesNotExist,\nthe values array must be empty. This array is replaced during a strategic\nmerge patch.",
                            "items": { "type": "string" },
                            "x-kubernetes-list-type": "atomic"
                        }
                    },
                    "required": ["key", "operator"]
                },
                "x-kubernetes-list-type": "atomic"
            },
            "matchLabels": {
                "type": "object",
                "description": "matchLabels is a map of {key,value} pairs. A single {key,value} in the matchLabels\nmap is equivalent to an element of matchExpressions, whose key field is \"key\", the\noperator is \"In\", and the values array contains only \"value\". The requirements are ANDed.",
                "additionalProperties": {
                    "type": "string",
                    "description": "MatchLabelsValue represents the value from the MatchLabels {key,value} pair.",
                    "maxLength": 63,
                    "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
                }
            }
        },
        "x-kubernetes-map-type": "atomic"
    })
}

/// `metav1.Condition` list, as in Cilium's generated CRD.
pub(crate) fn conditions_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "description": "Current service state",
        "items": {
            "type": "object",
            "description": "Condition contains details for one aspect of the current state of this API Resource.",
            "properties": {
                "lastTransitionTime": {
                    "type": "string",
                    "format": "date-time",
                    "description": "lastTransitionTime is the last time the condition transitioned from one status to another."
                },
                "message": {
                    "type": "string",
                    "maxLength": 32768,
                    "description": "message is a human readable message indicating details about the transition."
                },
                "observedGeneration": {
                    "type": "integer",
                    "format": "int64",
                    "minimum": 0,
                    "description": "observedGeneration represents the .metadata.generation that the condition was set based upon."
                },
                "reason": {
                    "type": "string",
                    "maxLength": 1024,
                    "minLength": 1,
                    "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
                    "description": "reason contains a programmatic identifier indicating the reason for the condition's last transition."
                },
                "status": {
                    "type": "string",
                    "enum": ["True", "False", "Unknown"],
                    "description": "status of the condition, one of True, False, Unknown."
                },
                "type": {
                    "type": "string",
                    "maxLength": 316,
                    "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
                    "description": "type of condition in CamelCase or in foo.example.com/CamelCase."
                }
            },
            "required": ["lastTransitionTime", "message", "reason", "status", "type"]
        },
        "x-kubernetes-list-map-keys": ["type"],
        "x-kubernetes-list-type": "map"
    })
}

/// A small structural validator for the tests of both CRDs: what the API server checks for
/// these schemas (types, enums, required, patterns, lengths, `format: cidr`) and the fields it
/// would prune as unknown.
#[cfg(test)]
pub(crate) mod validate {
    use serde_json::Value;

    /// Every violation of `schema` (an `openAPIV3Schema` as JSON) in `doc`.
    pub(crate) fn errors(doc: &Value, schema: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        validate(doc, schema, "", &mut errors);
        errors
    }

    fn validate(value: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
        if value.is_null() {
            // The API server drops nulls of non-nullable fields; Go decodes them as zero.
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            errors.push(format!("{path}: {value} not in enum"));
        }
        let ok = match schema["type"].as_str() {
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("boolean") => value.is_boolean(),
            Some("integer") => value.is_i64(),
            _ => true,
        };
        if !ok {
            errors.push(format!("{path}: {value} has the wrong type"));
            return;
        }
        if let Some(map) = value.as_object() {
            for req in schema["required"].as_array().into_iter().flatten() {
                if !req.as_str().is_some_and(|r| map.contains_key(r)) {
                    errors.push(format!("{path}: missing required {req}"));
                }
            }
            for (k, v) in map {
                let p = format!("{path}.{k}");
                if let Some(sub) = schema["properties"].get(k) {
                    validate(v, sub, &p, errors);
                } else if let Some(sub) =
                    schema.get("additionalProperties").filter(|s| s.is_object())
                {
                    validate(v, sub, &p, errors);
                } else if !(path.is_empty()
                    && ["apiVersion", "kind", "metadata"].contains(&k.as_str()))
                {
                    // ObjectMeta and type meta are the API server's own business.
                    errors.push(format!("{p}: unknown field (would be pruned)"));
                }
            }
        }
        if let Some(items) = value.as_array() {
            for (i, v) in items.iter().enumerate() {
                validate(v, &schema["items"], &format!("{path}[{i}]"), errors);
            }
        }
        if let Some(s) = value.as_str() {
            let len = s.chars().count() as u64;
            if let Some(max) = schema["maxLength"].as_u64()
                && len > max
            {
                errors.push(format!("{path}: longer than {max}"));
            }
            if let Some(min) = schema["minLength"].as_u64()
                && len < min
            {
                errors.push(format!("{path}: shorter than {min}"));
            }
            if let Some(p) = schema["pattern"].as_str()
                && !regex::Regex::new(p).is_ok_and(|re| re.is_match(s))
            {
                errors.push(format!("{path}: {s:?} does not match {p}"));
            }
            // Cilium's Go clients send `cidr: ""` for start/stop blocks, so the API server
            // evidently lets the empty string through its format check.
            if schema["format"] == "cidr" && !s.is_empty() && !is_cidr(s) {
                errors.push(format!("{path}: {s:?} is not a CIDR"));
            }
        }
    }

    fn is_cidr(s: &str) -> bool {
        let Some((addr, len)) = s.split_once('/') else {
            return false;
        };
        let Ok(addr) = addr.parse::<std::net::IpAddr>() else {
            return false;
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        len.parse::<u8>().is_ok_and(|l| l <= max)
    }
}
