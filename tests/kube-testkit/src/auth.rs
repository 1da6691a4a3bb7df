//! Authentication by static bearer tokens (kube-apiserver's `--token-auth-file` format) and
//! RBAC authorization over the Roles, ClusterRoles and bindings stored in the server.

use std::collections::HashMap;

use serde_json::Value;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// A malformed token file line.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("token file line {line}: {message}")]
pub struct TokenFileError {
    pub line: usize,
    pub message: String,
}

/// Splits one CSV line, honouring double quotes (`"a,b"` is one field, `""` is a quote).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    fields.push(cur);
    Ok(fields)
}

/// Parses a token file: `token,user,uid[,"group1,group2"]` per line; `#` comments and blank
/// lines are skipped.
pub fn parse_token_file(text: &str) -> Result<HashMap<String, User>, TokenFileError> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: &str| TokenFileError {
            line: i + 1,
            message: message.into(),
        };
        let f = csv_fields(line).map_err(|m| err(&m))?;
        if f.len() < 3 || f[0].is_empty() || f[1].is_empty() {
            return Err(err("expected token,user,uid[,\"groups\"]"));
        }
        let groups = f
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        out.insert(
            f[0].clone(),
            User {
                name: f[1].clone(),
                uid: f[2].clone(),
                groups,
            },
        );
    }
    Ok(out)
}

/// What a request asks to do, as RBAC sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// The RBAC objects in force.
#[derive(Debug, Clone, Default)]
pub struct RbacObjects {
    pub roles: Vec<Value>,
    pub role_bindings: Vec<Value>,
    pub cluster_roles: Vec<Value>,
    pub cluster_role_bindings: Vec<Value>,
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn subject_matches(subject: &Value, user: &User, binding_ns: &str) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str() {
        Some("User") => name == user.name,
        Some("Group") => user.groups.iter().any(|g| g == name),
        Some("ServiceAccount") => {
            let ns = subject["namespace"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = strings(&rule["verbs"]);
    let groups = strings(&rule["apiGroups"]);
    let resources = strings(&rule["resources"]);
    let names = strings(&rule["resourceNames"]);
    let verb_ok = verbs.iter().any(|v| *v == "*" || *v == a.verb);
    let group_ok = groups.iter().any(|g| *g == "*" || *g == a.group);
    let res_ok = resources.iter().any(|r| {
        if a.subresource.is_empty() {
            *r == "*" || *r == a.resource
        } else {
            *r == "*"
                || *r == format!("{}/{}", a.resource, a.subresource)
                || *r == format!("*/{}", a.subresource)
                || *r == format!("{}/*", a.resource)
        }
    });
    let name_ok = names.is_empty() || a.name.as_deref().is_some_and(|n| names.contains(&n));
    verb_ok && group_ok && res_ok && name_ok
}

fn role_rules<'a>(roles: &'a [Value], name: &str, ns: Option<&str>) -> Vec<&'a Value> {
    roles
        .iter()
        .filter(|r| {
            r["metadata"]["name"].as_str() == Some(name)
                && r["metadata"]["namespace"].as_str() == ns
        })
        .flat_map(|r| {
            r["rules"]
                .as_array()
                .map(|a| a.iter().collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect()
}

/// Decides a request as the RBAC authorizer does: `system:masters` may do anything; otherwise
/// some ClusterRoleBinding, or a RoleBinding in the request's namespace, must grant it.
pub fn rbac_allows(objs: &RbacObjects, user: &User, a: &Attributes) -> bool {
    if user.groups.iter().any(|g| g == "system:masters") {
        return true;
    }
    let bound = |b: &Value| {
        let ns = b["metadata"]["namespace"].as_str().unwrap_or_default();
        b["subjects"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| subject_matches(s, user, ns)))
    };
    for b in objs.cluster_role_bindings.iter().filter(|b| bound(b)) {
        if b["roleRef"]["kind"].as_str() != Some("ClusterRole") {
            continue;
        }
        let name = b["roleRef"]["name"].as_str().unwrap_or_default();
        if role_rules(&objs.cluster_roles, name, None)
            .iter()
            .any(|r| rule_allows(r, a))
        {
            return true;
        }
    }
    let Some(ns) = a.namespace.as_deref() else {
        return false;
    };
    for b in objs
        .role_bindings
        .iter()
        .filter(|b| b["metadata"]["namespace"].as_str() == Some(ns) && bound(b))
    {
        let name = b["roleRef"]["name"].as_str().unwrap_or_default();
        let rules = match b["roleRef"]["kind"].as_str() {
            Some("ClusterRole") => role_rules(&objs.cluster_roles, name, None),
            Some("Role") => role_rules(&objs.roles, name, Some(ns)),
            _ => Vec::new(),
        };
        if rules.iter().any(|r| rule_allows(r, a)) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_token_files() {
        let t = parse_token_file("# c\n\nabc,alice,1,\"dev,ops\"\nxyz,bob,2\n").unwrap();
        assert_eq!(
            t["abc"],
            User {
                name: "alice".into(),
                uid: "1".into(),
                groups: vec!["dev".into(), "ops".into()]
            }
        );
        assert!(t["xyz"].groups.is_empty());
        assert_eq!(parse_token_file("a,b").unwrap_err().line, 1);
        assert!(parse_token_file("a,b,c,\"x").is_err());
    }

    fn attrs(
        verb: &str,
        resource: &str,
        sub: &str,
        ns: Option<&str>,
        name: Option<&str>,
    ) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: "coordination.k8s.io".into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.map(String::from),
            name: name.map(String::from),
        }
    }

    #[test]
    fn rbac_decisions() {
        let objs = RbacObjects {
            roles: vec![json!({"metadata": {"name": "leases", "namespace": "a"},
                "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update"], "resourceNames": ["one"]}]})],
            role_bindings: vec![
                json!({"metadata": {"name": "b", "namespace": "a"}, "roleRef": {"kind": "Role", "name": "leases"},
                "subjects": [{"kind": "ServiceAccount", "name": "agent"}]}),
            ],
            cluster_roles: vec![json!({"metadata": {"name": "watcher"},
                "rules": [{"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]},
                          {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["list", "watch"]}]})],
            cluster_role_bindings: vec![
                json!({"metadata": {"name": "c"}, "roleRef": {"kind": "ClusterRole", "name": "watcher"},
                "subjects": [{"kind": "Group", "name": "agents"}]}),
            ],
        };
        let sa = User {
            name: "system:serviceaccount:a:agent".into(),
            uid: String::new(),
            groups: vec!["agents".into()],
        };
        assert!(rbac_allows(
            &objs,
            &sa,
            &attrs("get", "leases", "", Some("a"), Some("one"))
        ));
        assert!(!rbac_allows(
            &objs,
            &sa,
            &attrs("get", "leases", "", Some("a"), Some("two"))
        ));
        assert!(!rbac_allows(
            &objs,
            &sa,
            &attrs("get", "leases", "", Some("b"), Some("one"))
        ));
        assert!(!rbac_allows(
            &objs,
            &sa,
            &attrs("delete", "leases", "", Some("a"), Some("one"))
        ));
        assert!(rbac_allows(
            &objs,
            &sa,
            &attrs("watch", "leases", "", None, None)
        ));
        assert!(rbac_allows(
            &objs,
            &sa,
            &attrs("patch", "leases", "status", Some("z"), Some("q"))
        ));
        let other = User {
            name: "eve".into(),
            uid: String::new(),
            groups: vec![],
        };
        assert!(!rbac_allows(
            &objs,
            &other,
            &attrs("list", "leases", "", None, None)
        ));
        let admin = User {
            name: "root".into(),
            uid: String::new(),
            groups: vec!["system:masters".into()],
        };
        assert!(rbac_allows(
            &objs,
            &admin,
            &attrs("delete", "leases", "", None, None)
        ));
    }
}
