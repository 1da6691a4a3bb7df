//! The resource types the server serves (built-in kinds and CRD-defined ones) and the
//! discovery documents describing them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::schema::Schema;

/// One served group/version/resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Has a `/status` subresource.
    pub status: bool,
    /// Defined by a CRD (custom resource).
    pub custom: bool,
    /// The CRD version's `openAPIV3Schema`.
    pub schema: Option<Value>,
    /// The CRD version's `additionalPrinterColumns`.
    pub printer_columns: Vec<Value>,
}

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Objects are stored per group and resource, shared by all versions.
    pub fn store_key(&self) -> (String, String) {
        (self.group.clone(), self.plural.clone())
    }

    pub fn schema(&self) -> Schema {
        if self.custom {
            Schema::Custom(self.schema.clone())
        } else {
            Schema::Builtin(self.plural.clone())
        }
    }

    /// Whether `metadata.generation` is maintained (kinds with a spec/status split).
    pub fn tracks_generation(&self) -> bool {
        self.custom || self.status
    }
}

/// `(group, plural, singular, kind, namespaced, short names, status subresource)`
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    bool,
);

const BUILTINS: &[Builtin] = &[
    (
        "",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
        true,
    ),
    ("", "services", "service", "Service", true, &["svc"], true),
    ("", "nodes", "node", "Node", false, &["no"], true),
    ("", "events", "event", "Event", true, &["ev"], false),
    ("", "secrets", "secret", "Secret", true, &[], false),
    (
        "",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
        false,
    ),
    (
        "",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        false,
    ),
    ("", "pods", "pod", "Pod", true, &["po"], true),
    (
        "",
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        &["ep"],
        false,
    ),
    (
        "discovery.k8s.io",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        &[],
        false,
    ),
    (
        "coordination.k8s.io",
        "leases",
        "lease",
        "Lease",
        true,
        &[],
        false,
    ),
    (
        "events.k8s.io",
        "events",
        "event",
        "Event",
        true,
        &[],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "roles",
        "role",
        "Role",
        true,
        &[],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        &[],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        &[],
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        &[],
        false,
    ),
    (
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        true,
    ),
    (
        "apps",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        &["ds"],
        true,
    ),
    (
        "apps",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
        true,
    ),
];

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// All served resources.
#[derive(Debug, Clone)]
pub struct Registry {
    resources: BTreeMap<(String, String, String), ResourceInfo>,
    /// Versions of each group, preferred first, in the order groups appeared.
    groups: Vec<(String, Vec<String>)>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    pub fn builtin() -> Self {
        let mut r = Registry {
            resources: BTreeMap::new(),
            groups: Vec::new(),
        };
        for (group, plural, singular, kind, namespaced, short, status) in BUILTINS {
            r.insert(ResourceInfo {
                group: group.to_string(),
                version: "v1".into(),
                plural: plural.to_string(),
                singular: singular.to_string(),
                kind: kind.to_string(),
                namespaced: *namespaced,
                short_names: short.iter().map(|s| s.to_string()).collect(),
                categories: Vec::new(),
                status: *status,
                custom: false,
                schema: None,
                printer_columns: Vec::new(),
            });
        }
        r
    }

    fn insert(&mut self, info: ResourceInfo) {
        match self.groups.iter_mut().find(|(g, _)| *g == info.group) {
            Some((_, versions)) => {
                if !versions.contains(&info.version) {
                    versions.push(info.version.clone());
                }
            }
            None => self
                .groups
                .push((info.group.clone(), vec![info.version.clone()])),
        }
        self.resources.insert(
            (
                info.group.clone(),
                info.version.clone(),
                info.plural.clone(),
            ),
            info,
        );
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
    }

    /// Every served version of a stored resource.
    pub fn versions_of(&self, group: &str, plural: &str) -> Vec<&ResourceInfo> {
        self.resources
            .values()
            .filter(|r| r.group == group && r.plural == plural)
            .collect()
    }

    pub fn has_group_version(&self, group: &str, version: &str) -> bool {
        self.groups
            .iter()
            .any(|(g, vs)| g == group && vs.iter().any(|v| v == version))
    }

    /// Serves the resource a CRD defines (replacing what an earlier version of it defined).
    pub fn register_crd(&mut self, crd: &Value) {
        self.unregister_crd(crd);
        let spec = &crd["spec"];
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let group = s(&spec["group"]);
        let mut versions: Vec<&Value> = spec["versions"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        // The storage version is preferred.
        versions.sort_by_key(|v| v["storage"].as_bool() != Some(true));
        for v in versions {
            if v["served"].as_bool() == Some(false) {
                continue;
            }
            self.insert(ResourceInfo {
                group: group.clone(),
                version: s(&v["name"]),
                plural: s(&spec["names"]["plural"]),
                singular: spec["names"]["singular"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| s(&spec["names"]["kind"]).to_lowercase()),
                kind: s(&spec["names"]["kind"]),
                namespaced: spec["scope"].as_str() != Some("Cluster"),
                short_names: strings(&spec["names"]["shortNames"]),
                categories: strings(&spec["names"]["categories"]),
                status: v["subresources"].get("status").is_some(),
                custom: true,
                schema: v["schema"].get("openAPIV3Schema").cloned(),
                printer_columns: v["additionalPrinterColumns"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            });
        }
    }

    pub fn unregister_crd(&mut self, crd: &Value) {
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
        self.resources
            .retain(|(g, _, p), _| !(g == group && p == plural));
        let resources = &self.resources;
        for (g, versions) in self.groups.iter_mut().filter(|(g, _)| g == group) {
            versions.retain(|v| resources.keys().any(|(rg, rv, _)| rg == g && rv == v));
        }
        self.groups.retain(|(_, vs)| !vs.is_empty());
    }

    /// `GET /api`
    pub fn api_versions(&self) -> Value {
        json!({"kind": "APIVersions", "versions": ["v1"],
               "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
    }

    fn group_json(group: &str, versions: &[String]) -> Value {
        let vs: Vec<Value> = versions
            .iter()
            .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
            .collect();
        json!({"name": group, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
    }

    /// `GET /apis`
    pub fn api_group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups
            .iter()
            .filter(|(g, _)| !g.is_empty())
            .map(|(g, vs)| Self::group_json(g, vs))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `GET /apis/<group>`
    pub fn api_group(&self, group: &str) -> Option<Value> {
        let (g, vs) = self
            .groups
            .iter()
            .find(|(g, _)| g == group && !g.is_empty())?;
        let mut v = Self::group_json(g, vs);
        v["kind"] = json!("APIGroup");
        v["apiVersion"] = json!("v1");
        Some(v)
    }

    /// `GET /api/v1` or `GET /apis/<group>/<version>`
    pub fn api_resource_list(&self, group: &str, version: &str) -> Option<Value> {
        if !self.has_group_version(group, version) {
            return None;
        }
        let mut list = Vec::new();
        for r in self
            .resources
            .values()
            .filter(|r| r.group == group && r.version == version)
        {
            let mut res = json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                                 "kind": r.kind, "verbs": VERBS});
            if !r.short_names.is_empty() {
                res["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                res["categories"] = json!(r.categories);
            }
            list.push(res);
            if r.status {
                list.push(json!({"name": format!("{}/status", r.plural), "singularName": "",
                                 "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
            }
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
        )
    }
}

impl Registry {
    /// `GET /openapi/v3`: the index of per-group-version documents.
    pub fn openapi_v3_root(&self) -> Value {
        let mut paths = serde_json::Map::new();
        for (group, versions) in &self.groups {
            for v in versions {
                let gv = if group.is_empty() {
                    format!("api/{v}")
                } else {
                    format!("apis/{group}/{v}")
                };
                paths.insert(gv.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={}", self.openapi_hash())}));
            }
        }
        json!({"paths": paths})
    }

    fn openapi_hash(&self) -> String {
        format!(
            "{:016X}",
            self.resources.len() as u64 * 0x9E37_79B9 + self.groups.len() as u64
        )
    }

    /// `GET /openapi/v3/apis/<group>/<version>`: one PATCH operation per resource, enough for
    /// clients to see that the server validates fields (`fieldValidation`). No schemas.
    pub fn openapi_v3_doc(&self, group: &str, version: &str) -> Option<Value> {
        if !self.has_group_version(group, version) {
            return None;
        }
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let params: Vec<Value> = ["fieldValidation", "fieldManager", "dryRun", "force"]
            .iter()
            .map(|n| json!({"name": n, "in": "query", "schema": {"type": if *n == "force" { "boolean" } else { "string" }}}))
            .collect();
        let mut paths = serde_json::Map::new();
        for r in self
            .resources
            .values()
            .filter(|r| r.group == group && r.version == version)
        {
            let path = if r.namespaced {
                format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
            } else {
                format!("{prefix}/{}/{{name}}", r.plural)
            };
            paths.insert(path, json!({"patch": {
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
            }}));
        }
        Some(
            json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": paths,
                    "components": {"schemas": {}}}),
        )
    }
}

/// What is wrong with a CRD, as `(field, message)` causes.
pub fn crd_problems(crd: &Value) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let mut need = |ok: bool, f: &str, m: &str| {
        if !ok {
            errs.push((f.to_string(), m.to_string()));
        }
    };
    need(
        !group.is_empty() && group.contains('.'),
        "spec.group",
        "Invalid value: should be a domain with at least one dot",
    );
    need(
        !plural.is_empty() && crate::util::is_dns_label(plural),
        "spec.names.plural",
        "Invalid value: must be a lowercase DNS label",
    );
    need(
        spec["names"]["kind"]
            .as_str()
            .is_some_and(|k| !k.is_empty()),
        "spec.names.kind",
        "Required value",
    );
    need(
        matches!(spec["scope"].as_str(), Some("Namespaced" | "Cluster")),
        "spec.scope",
        "Unsupported value: must be Namespaced or Cluster",
    );
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    need(
        !versions.is_empty(),
        "spec.versions",
        "Invalid value: must have exactly one version marked as storage version",
    );
    need(
        versions
            .iter()
            .filter(|v| v["storage"].as_bool() == Some(true))
            .count()
            == 1,
        "spec.versions",
        "Invalid value: must have exactly one version marked as storage version",
    );
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    need(
        name == format!("{plural}.{group}"),
        "metadata.name",
        "Invalid value: must be spec.names.plural+\".\"+spec.group",
    );
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({"metadata": {"name": "pools.example.io"}, "spec": {"group": "example.io", "scope": "Cluster",
            "names": {"plural": "pools", "kind": "Pool", "shortNames": ["pl"]},
            "versions": [{"name": "v1alpha1", "served": true, "storage": false},
                         {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}}]}})
    }

    #[test]
    fn builtin_discovery() {
        let r = Registry::builtin();
        let core = r.api_resource_list("", "v1").unwrap();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"services")
                && names.contains(&"services/status")
                && names.contains(&"configmaps")
        );
        let groups = r.api_group_list();
        assert!(
            groups["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["name"] == "coordination.k8s.io")
        );
        assert!(r.lookup("apps", "v1", "daemonsets").unwrap().namespaced);
        assert!(r.api_resource_list("apps", "v2").is_none());
        let root = r.openapi_v3_root();
        assert!(
            root["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/apps/v1?hash=")
        );
        let doc = r.openapi_v3_doc("", "v1").unwrap();
        let op = &doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "ConfigMap");
        assert_eq!(op["parameters"][0]["name"], "fieldValidation");
    }

    #[test]
    fn crds_come_and_go() {
        let mut r = Registry::builtin();
        assert!(crd_problems(&crd()).is_empty());
        r.register_crd(&crd());
        let v1 = r.lookup("example.io", "v1", "pools").unwrap();
        assert!(v1.custom && v1.status && !v1.namespaced);
        assert!(!r.lookup("example.io", "v1alpha1", "pools").unwrap().status);
        assert_eq!(
            r.api_group("example.io").unwrap()["preferredVersion"]["version"],
            "v1"
        );
        r.unregister_crd(&crd());
        assert!(r.lookup("example.io", "v1", "pools").is_none());
        assert!(r.api_group("example.io").is_none());
    }

    #[test]
    fn bad_crds_are_reported() {
        let mut c = crd();
        c["metadata"]["name"] = json!("wrong");
        c["spec"]["scope"] = json!("Galaxy");
        let fields: Vec<String> = crd_problems(&c).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["spec.scope", "metadata.name"]);
    }
}
