//! Server-side printing: `meta.k8s.io/v1` `Table` answers for clients that ask for them
//! (`kubectl get`). Columns are Name and Age, or a CRD's `additionalPrinterColumns`.

use serde_json::{Value, json};

use crate::registry::ResourceInfo;

/// Whether the `Accept` header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.contains("as=Table")
}

/// Seconds since the Unix epoch of an RFC 3339 UTC timestamp (`2026-01-02T03:04:05Z`,
/// fractional seconds allowed).
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let min: i64 = t.next()?.parse().ok()?;
    let sec: f64 = t.next()?.parse().ok()?;
    // Howard Hinnant's days-from-civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + min * 60 + sec as i64).ok()
}

/// kubectl's short human duration (`45s`, `3m12s`, `125m`, `3h5m`, `3d4h`, `400d`, `2y10d`).
pub fn human_duration(secs: u64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86_400);
    let pair = |big: u64, bu: &str, small: u64, su: &str| {
        if small == 0 {
            format!("{big}{bu}")
        } else {
            format!("{big}{bu}{small}{su}")
        }
    };
    match secs {
        s if s < 120 => format!("{s}s"),
        _ if m < 10 => pair(m, "m", secs % 60, "s"),
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 => pair(h, "h", m % 60, "m"),
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 => pair(d, "d", h % 24, "h"),
        _ if d < 730 => format!("{d}d"),
        _ => pair(d / 365, "y", d % 365, "d"),
    }
}

/// The value at a simple JSONPath (`.spec.size`, `.status.conditions[0].type`); anything
/// fancier (filters) yields nothing.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
    {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, Some(rest.trim_end_matches(']').parse::<usize>().ok()?)),
            None => (part, None),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

fn cell(v: Option<&Value>, ty: &str, now: u64) -> Value {
    match (v, ty) {
        (None | Some(Value::Null), _) => json!("<none>"),
        (Some(Value::String(s)), "date") => {
            json!(
                parse_rfc3339(s)
                    .map(|t| human_duration(now.saturating_sub(t)))
                    .unwrap_or_else(|| s.clone())
            )
        }
        (Some(Value::String(s)), _) => json!(s),
        (Some(v @ (Value::Number(_) | Value::Bool(_))), _) => v.clone(),
        (Some(other), _) => json!(other.to_string()),
    }
}

/// A Table of `objects` (already rendered for the request's version).
pub fn table(ri: &ResourceInfo, objects: &[Value], list_metadata: Value, now: u64) -> Value {
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}),
    ];
    let mut paths: Vec<(String, String)> = Vec::new();
    if ri.printer_columns.is_empty() {
        columns.push(json!({"name": "Age", "type": "date", "format": "", "description": "Age", "priority": 0}));
        paths.push((".metadata.creationTimestamp".into(), "date".into()));
    } else {
        for c in &ri.printer_columns {
            columns.push(json!({"name": c["name"], "type": c["type"], "format": c.get("format").cloned().unwrap_or(json!("")),
                                "description": c.get("description").cloned().unwrap_or(json!("")),
                                "priority": c.get("priority").cloned().unwrap_or(json!(0))}));
            paths.push((
                c["jsonPath"].as_str().unwrap_or_default().to_string(),
                c["type"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            cells.extend(paths.iter().map(|(p, ty)| cell(json_path(o, p), ty, now)));
            json!({"cells": cells, "object": {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": o["metadata"]}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_metadata,
           "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn timestamps_and_durations() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_rfc3339("2026-12-31T23:59:59.5Z"), Some(1_798_761_599));
        assert_eq!(
            parse_rfc3339(&crate::util::rfc3339_secs(1_234_567_890)),
            Some(1_234_567_890)
        );
        assert!(parse_rfc3339("yesterday").is_none());
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(240), "4m");
        assert_eq!(human_duration(125 * 60), "125m");
        assert_eq!(human_duration(3600 * 3 + 300), "3h5m");
        assert_eq!(human_duration(3600 * 3), "3h");
        assert_eq!(human_duration(86_400 * 3 + 3600 * 4), "3d4h");
        assert_eq!(human_duration(86_400 * 400), "400d");
    }

    #[test]
    fn tables_with_default_and_printer_columns() {
        let r = Registry::builtin();
        let cm = r.lookup("", "v1", "configmaps").unwrap();
        let o = json!({"metadata": {"name": "a", "creationTimestamp": "1970-01-01T00:00:00Z"}});
        let t = table(cm, &[o], json!({"resourceVersion": "7"}), 65);
        assert_eq!(t["rows"][0]["cells"], json!(["a", "65s"]));
        assert_eq!(t["columnDefinitions"][1]["name"], "Age");
        let mut custom = cm.clone();
        custom.printer_columns = vec![
            json!({"name": "Size", "type": "integer", "jsonPath": ".spec.size"}),
            json!({"name": "Ready", "type": "string", "jsonPath": ".status.conditions[0].status"}),
        ];
        let o = json!({"metadata": {"name": "b"}, "spec": {"size": 3}});
        let t = table(&custom, &[o], json!({}), 0);
        assert_eq!(t["rows"][0]["cells"], json!(["b", 3, "<none>"]));
    }
}
