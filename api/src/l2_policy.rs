//! `CiliumL2AnnouncementPolicy` (`cilium.io/v2alpha1`, cluster-scoped): which nodes announce
//! which Service IPs on which interfaces.
//!
//! Same shape as Cilium's `pkg/k8s/apis/cilium.io/v2alpha1/l2announcement_types.go`, so
//! policies written for Cilium work unchanged. Cilium serves only `v2alpha1` for this kind.
//!
//! Cilium's CRD marks every field optional, `spec` included, and its Go clients write `null`
//! for unset selectors and interface lists. Both are accepted here: a missing or `null` spec
//! reads as the default spec (which selects nothing, as both IP types default to false).
//! The selector and condition schemas are written out by hand, field by field as in Cilium's
//! generated CRD, because the Rust types come from `k8s-openapi`, which carries no schema.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResourceExt;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The only `spec.loadBalancerClass` (besides none) whose Services are L2-announced.
pub const L2_ANNOUNCER_LOAD_BALANCER_CLASS: &str = "io.cilium/l2-announcer";

/// Policy condition: `spec.nodeSelector` cannot be turned into a selector.
pub const CONDITION_BAD_NODE_SELECTOR: &str = "io.cilium/bad-node-selector";
/// Policy condition: `spec.serviceSelector` cannot be turned into a selector.
pub const CONDITION_BAD_SERVICE_SELECTOR: &str = "io.cilium/bad-service-selector";
/// Policy condition: an entry of `spec.interfaces` is not a valid regular expression.
pub const CONDITION_BAD_INTERFACE_REGEX: &str = "io.cilium/bad-interface-regex";
/// The `reason` Cilium writes on all three policy conditions.
pub const CONDITION_REASON_ERROR: &str = "error";

/// Spec of a `CiliumL2AnnouncementPolicy`.
///
/// `#[serde(remote = "Self")]` makes serde derive inherent `serialize`/`deserialize` functions
/// instead of the trait impls; the trait impls below wrap them so that a missing or `null`
/// `spec` deserializes as the default spec, as Go does.
#[derive(
    kube::CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema,
)]
#[serde(remote = "Self")]
#[kube(
    group = "cilium.io",
    version = "v2alpha1",
    kind = "CiliumL2AnnouncementPolicy",
    plural = "ciliuml2announcementpolicies",
    singular = "ciliuml2announcementpolicy",
    shortname = "l2announcement",
    category = "cilium",
    status = "CiliumL2AnnouncementPolicyStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "CiliumL2AnnouncementPolicy is a Kubernetes third-party resource which\nis used to defined which nodes should announce what services on the\nL2 network.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[schemars(description = "Spec is a human readable description of a L2 announcement\npolicy")]
pub struct CiliumL2AnnouncementPolicySpec {
    /// Selects the nodes that announce the IPs of the selected services; unset selects
    /// every node.
    #[serde(
        rename = "nodeSelector",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "node_selector_schema")]
    pub node_selector: Option<LabelSelector>,
    /// Selects the services to announce, by their labels plus the pseudo-labels
    /// `io.kubernetes.service.namespace` and `io.kubernetes.service.name`; unset selects all.
    /// A service's loadBalancerClass must be unset or `io.cilium/l2-announcer`.
    #[serde(
        rename = "serviceSelector",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "service_selector_schema")]
    pub service_selector: Option<LabelSelector>,
    /// If true, the loadbalancer IPs of the services (`status.loadBalancer.ingress[].ip`) are
    /// announced.
    #[serde(
        rename = "loadBalancerIPs",
        default,
        deserialize_with = "null_as_default"
    )]
    #[schemars(schema_with = "load_balancer_ips_schema", transform = no_default)]
    pub load_balancer_ips: bool,
    /// If true, the external IPs of the services (`spec.externalIPs`) are announced.
    #[serde(rename = "externalIPs", default, deserialize_with = "null_as_default")]
    #[schemars(schema_with = "external_ips_schema", transform = no_default)]
    pub external_ips: bool,
    /// Regular expressions (unanchored, OR-ed) naming the network interfaces to announce the
    /// services on; unset or empty means every usable interface.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(schema_with = "interfaces_schema", transform = no_default)]
    pub interfaces: Vec<String>,
}

impl Serialize for CiliumL2AnnouncementPolicySpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        CiliumL2AnnouncementPolicySpec::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for CiliumL2AnnouncementPolicySpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// The spec as present in the object, read with the derived (remote) implementation.
        #[derive(Deserialize)]
        struct Present(
            #[serde(with = "CiliumL2AnnouncementPolicySpec")] CiliumL2AnnouncementPolicySpec,
        );
        // serde hands a missing field to `Option` as `None`, so this covers absent and null.
        Ok(Option::<Present>::deserialize(deserializer)?
            .map(|p| p.0)
            .unwrap_or_default())
    }
}

/// Status of a policy: the `io.cilium/bad-*` conditions only, as in Cilium.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(description = "Status is the status of the policy.")]
pub struct CiliumL2AnnouncementPolicyStatus {
    /// A list map keyed by `type`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(schema_with = "crate::schema::conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// The CRD, with Cilium's names and a schema that accepts what Cilium's accepts (in
/// particular, `spec` is optional).
pub fn crd() -> CustomResourceDefinition {
    let mut crd = CiliumL2AnnouncementPolicy::crd();
    for version in &mut crd.spec.versions {
        let root = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut());
        if let Some(root) = root {
            if let Some(required) = root.required.as_mut() {
                required.retain(|r| r != "spec");
            }
            if root.required.as_ref().is_some_and(Vec::is_empty) {
                root.required = None;
            }
        }
    }
    crd
}

/// Cilium's CRD has no defaults: an omitted field stays omitted in the stored object.
fn no_default(schema: &mut Schema) {
    schema.remove("default");
}

/// Accepts JSON `null` where Cilium's Go types would (they decode null as the zero value).
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn load_balancer_ips_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "boolean",
        "description": "If true, the loadbalancer IPs of the services are announced\n\nIf nil this policy applies to all services."
    })
}

fn external_ips_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "boolean",
        "description": "If true, the external IPs of the services are announced"
    })
}

fn interfaces_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "description": "A list of regular expressions that express which network interface(s) should be used\nto announce the services over. If nil, all network interfaces are used.",
        "items": { "type": "string" }
    })
}

fn node_selector_schema(_: &mut SchemaGenerator) -> Schema {
    crate::schema::label_selector_schema(
        "NodeSelector selects a group of nodes which will announce the IPs for\nthe services selected by the service selector.\n\nIf nil this policy applies to all nodes.",
    )
}

fn service_selector_schema(_: &mut SchemaGenerator) -> Schema {
    crate::schema::label_selector_schema(
        "ServiceSelector selects a set of services which will be announced over L2 networks.\nThe loadBalancerClass for a service must be nil or specify a supported class, e.g.\n\"io.cilium/l2-announcer\". Refer to the following document for additional details\nregarding load balancer classes:\n\n  https://kubernetes.io/docs/concepts/services-networking/service/#load-balancer-class\n\nIf nil this policy applies to all services.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn schema() -> Value {
        let crd = crd();
        assert_eq!(crd.spec.versions.len(), 1);
        let props = crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .clone()
            .unwrap();
        serde_json::to_value(props).unwrap()
    }

    fn errors_of(doc: &Value) -> Vec<String> {
        crate::schema::validate::errors(doc, &schema())
    }

    fn docs(yaml: &str) -> Vec<Value> {
        yaml.split("\n---\n")
            .map(|d| serde_yaml::from_str::<Value>(d).unwrap())
            .collect()
    }

    /// The seed's two policies (`shared/seeds/cilium-l2-loadbalancer-pattern.md`), as its
    /// Terraform `yamlencode` renders them for eno1 (all nodes) and eno2 (control plane).
    pub(crate) const SEED_POLICIES: &str = include_str!("../../tests/fixtures/seed/policies.yaml");

    /// Policies as Cilium's documentation, its CI (conformance workflows) and its Go clients
    /// write them.
    const CILIUM_STYLE_POLICIES: &str = r#"
apiVersion: "cilium.io/v2alpha1"
kind: CiliumL2AnnouncementPolicy
metadata:
  name: policy1
spec:
  serviceSelector:
    matchLabels:
      color: blue
  nodeSelector:
    matchExpressions:
      - key: node-role.kubernetes.io/control-plane
        operator: DoesNotExist
  interfaces:
  - ^eth[0-9]+
  externalIPs: true
  loadBalancerIPs: true
---
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata:
  name: l2announcement-policy
spec:
  loadBalancerIPs: true
  interfaces:
  - eth0
  nodeSelector:
    matchExpressions:
    - key: node-role.kubernetes.io/control-plane
      operator: DoesNotExist
---
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata:
  name: expressions
spec:
  serviceSelector:
    matchExpressions:
    - {key: io.kubernetes.service.namespace, operator: In, values: [prod, staging]}
    - {key: tier, operator: NotIn, values: [internal]}
    - {key: exposed, operator: Exists}
  externalIPs: false
---
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata:
  name: written-by-go-client
spec:
  nodeSelector: null
  serviceSelector: null
  loadBalancerIPs: true
  externalIPs: false
  interfaces: null
status:
  conditions:
  - type: io.cilium/bad-interface-regex
    status: "True"
    reason: error
    message: "error parsing regexp: missing closing ]: `[a`"
    lastTransitionTime: "2026-01-01T00:00:00Z"
    observedGeneration: 3
  - type: io.cilium/bad-node-selector
    status: "False"
    reason: error
    message: ""
    lastTransitionTime: "2026-01-01T00:00:00Z"
---
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata:
  name: empty-spec
spec: {}
---
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata:
  name: no-spec
"#;

    fn parse(doc: &Value) -> CiliumL2AnnouncementPolicy {
        serde_json::from_value(doc.clone()).unwrap()
    }

    #[test]
    fn seed_policies_deserialize_and_validate() {
        let policies: Vec<_> = docs(SEED_POLICIES)
            .iter()
            .map(|d| (errors_of(d), parse(d)))
            .collect();
        assert_eq!(policies.len(), 2);
        for (errors, _) in &policies {
            assert_eq!(errors, &Vec::<String>::new());
        }
        let eno1 = &policies[0].1;
        assert_eq!(eno1.metadata.name.as_deref(), Some("l2-policy-eno1"));
        assert_eq!(
            eno1.metadata.labels.as_ref().unwrap()["network.example.com/type"],
            "internal"
        );
        assert_eq!(
            eno1.spec
                .service_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["network.example.com/interface"],
            "eno1"
        );
        let node_selector = eno1.spec.node_selector.as_ref().unwrap();
        assert!(node_selector.match_labels.as_ref().unwrap().is_empty());
        assert!(node_selector.match_expressions.is_none());
        assert_eq!(eno1.spec.interfaces, ["eno1"]);
        assert!(eno1.spec.external_ips && eno1.spec.load_balancer_ips);
        assert_eq!(eno1.status, None);

        let eno2 = &policies[1].1;
        assert_eq!(eno2.metadata.name.as_deref(), Some("l2-policy-eno2"));
        assert_eq!(
            eno2.spec
                .node_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["node.kubernetes.io/control-plane"],
            ""
        );
        assert_eq!(eno2.spec.interfaces, ["eno2"]);
    }

    #[test]
    fn cilium_style_policies_deserialize_and_validate() {
        let docs = docs(CILIUM_STYLE_POLICIES);
        let policies: Vec<_> = docs.iter().map(parse).collect();
        for doc in &docs {
            assert_eq!(errors_of(doc), Vec::<String>::new(), "{doc}");
        }
        let exprs = policies[0]
            .spec
            .node_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .as_ref()
            .unwrap();
        assert_eq!(exprs[0].operator, "DoesNotExist");
        assert_eq!(policies[0].spec.interfaces, ["^eth[0-9]+"]);
        assert_eq!(policies[1].spec.service_selector, None);
        assert!(policies[1].spec.load_balancer_ips && !policies[1].spec.external_ips);
        assert_eq!(
            policies[2]
                .spec
                .service_selector
                .as_ref()
                .unwrap()
                .match_expressions
                .as_ref()
                .unwrap()
                .len(),
            3
        );
        assert!(!policies[2].spec.load_balancer_ips && !policies[2].spec.external_ips);

        let go = &policies[3];
        assert_eq!(go.spec.node_selector, None);
        assert!(go.spec.interfaces.is_empty());
        let conditions = &go.status.as_ref().unwrap().conditions;
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0].type_, CONDITION_BAD_INTERFACE_REGEX);
        assert_eq!(conditions[0].observed_generation, Some(3));
        assert_eq!(conditions[1].reason, CONDITION_REASON_ERROR);

        // A spec that is empty, or missing altogether (Cilium's CRD allows both), is the
        // default spec: it selects nothing, as neither IP type is enabled.
        assert_eq!(policies[4].spec, CiliumL2AnnouncementPolicySpec::default());
        assert_eq!(policies[5].spec, CiliumL2AnnouncementPolicySpec::default());
        assert_eq!(policies[5].metadata.name.as_deref(), Some("no-spec"));
    }

    #[test]
    fn spec_null_and_field_nulls_read_as_defaults() {
        let p: CiliumL2AnnouncementPolicy = serde_json::from_value(json!({
            "apiVersion": "cilium.io/v2alpha1", "kind": "CiliumL2AnnouncementPolicy",
            "metadata": {"name": "n"}, "spec": null, "status": null
        }))
        .unwrap();
        assert_eq!(p.spec, CiliumL2AnnouncementPolicySpec::default());
        let s: CiliumL2AnnouncementPolicySpec = serde_json::from_value(json!({
            "loadBalancerIPs": null, "externalIPs": null, "interfaces": null
        }))
        .unwrap();
        assert_eq!(s, CiliumL2AnnouncementPolicySpec::default());
        // Wrong types are still errors.
        assert!(
            serde_json::from_value::<CiliumL2AnnouncementPolicySpec>(json!({"externalIPs": "yes"}))
                .is_err()
        );
        assert!(serde_json::from_value::<CiliumL2AnnouncementPolicySpec>(json!([1])).is_err());
    }

    #[test]
    fn validator_rejects_what_ciliums_crd_rejects() {
        let bad = json!({
            "apiVersion": "cilium.io/v2alpha1", "kind": "CiliumL2AnnouncementPolicy",
            "metadata": {"name": "bad"},
            "spec": {
                "loadBalancerIPs": "true",
                "interfaces": "eth0",
                "nodeSelector": {"matchExpressions": [{"key": "a", "operator": "Equals"}, {"operator": "In"}]},
                "serviceSelector": {"matchLabels": {"a": "not a valid value"}},
                "devices": ["eth0"]
            },
            "status": {"conditions": [{"type": "x", "status": "Maybe", "reason": "", "message": ""}]}
        });
        let errors = errors_of(&bad);
        for expected in [
            "spec.loadBalancerIPs",
            "spec.interfaces",
            "matchExpressions[0].operator",
            "matchExpressions[1]: missing required \"key\"",
            "matchLabels.a",
            "spec.devices",
            "conditions[0].status",
            "conditions[0].reason",
            "missing required \"lastTransitionTime\"",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{expected} not rejected: {errors:?}"
            );
        }
    }

    #[test]
    fn crd_names_scope_and_columns_are_ciliums() {
        let crd = crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("ciliuml2announcementpolicies.cilium.io")
        );
        assert_eq!(crd.spec.group, "cilium.io");
        assert_eq!(crd.spec.scope, "Cluster");
        let names = &crd.spec.names;
        assert_eq!(names.kind, "CiliumL2AnnouncementPolicy");
        assert_eq!(names.plural, "ciliuml2announcementpolicies");
        assert_eq!(
            names.singular.as_deref(),
            Some("ciliuml2announcementpolicy")
        );
        assert_eq!(names.short_names.as_deref().unwrap(), ["l2announcement"]);
        assert_eq!(names.categories.as_deref().unwrap(), ["cilium"]);
        let v = &crd.spec.versions[0];
        assert_eq!(
            (v.name.as_str(), v.served, v.storage),
            ("v2alpha1", true, true)
        );
        assert_eq!(v.deprecated, None);
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        let cols: Vec<_> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.type_.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(cols, [("Age", "date", ".metadata.creationTimestamp")]);
    }

    /// Each property of Cilium's generated CRD (`ciliuml2announcementpolicies.yaml`), with the
    /// keywords that decide what is accepted. Ours must have the same ones, and no more.
    #[test]
    fn crd_schema_has_what_ciliums_has() {
        let s = schema();
        let at = |ptr: &str| {
            s.pointer(ptr)
                .unwrap_or_else(|| panic!("missing {ptr}"))
                .clone()
        };
        let keys = |ptr: &str| {
            let mut k: Vec<String> = at(ptr).as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(at("/type"), "object");
        assert!(
            s.get("required").is_none(),
            "spec is optional in Cilium: {s}"
        );
        assert_eq!(keys("/properties"), ["spec", "status"]);
        let spec = "/properties/spec";
        assert_eq!(at(&format!("{spec}/type")), "object");
        assert!(s.pointer(&format!("{spec}/required")).is_none());
        assert_eq!(
            keys(&format!("{spec}/properties")),
            [
                "externalIPs",
                "interfaces",
                "loadBalancerIPs",
                "nodeSelector",
                "serviceSelector"
            ]
        );
        for b in ["externalIPs", "loadBalancerIPs"] {
            assert_eq!(
                at(&format!("{spec}/properties/{b}")).get("type").unwrap(),
                "boolean"
            );
            assert!(
                s.pointer(&format!("{spec}/properties/{b}/default"))
                    .is_none()
            );
        }
        assert_eq!(at(&format!("{spec}/properties/interfaces/type")), "array");
        assert_eq!(
            at(&format!("{spec}/properties/interfaces/items")),
            json!({"type": "string"})
        );
        for sel in ["nodeSelector", "serviceSelector"] {
            let sel = format!("{spec}/properties/{sel}");
            assert_eq!(at(&format!("{sel}/type")), "object");
            assert_eq!(at(&format!("{sel}/x-kubernetes-map-type")), "atomic");
            assert_eq!(
                keys(&format!("{sel}/properties")),
                ["matchExpressions", "matchLabels"]
            );
            let expr = format!("{sel}/properties/matchExpressions");
            assert_eq!(at(&format!("{expr}/x-kubernetes-list-type")), "atomic");
            assert_eq!(
                at(&format!("{expr}/items/required")),
                json!(["key", "operator"])
            );
            assert_eq!(
                keys(&format!("{expr}/items/properties")),
                ["key", "operator", "values"]
            );
            assert_eq!(
                at(&format!("{expr}/items/properties/operator/enum")),
                json!(["In", "NotIn", "Exists", "DoesNotExist"])
            );
            assert_eq!(
                at(&format!(
                    "{expr}/items/properties/values/x-kubernetes-list-type"
                )),
                "atomic"
            );
            let ml = format!("{sel}/properties/matchLabels/additionalProperties");
            assert_eq!(at(&format!("{ml}/maxLength")), 63);
            assert_eq!(
                at(&format!("{ml}/pattern")),
                "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
            );
        }
        let conds = "/properties/status/properties/conditions";
        assert_eq!(keys("/properties/status/properties"), ["conditions"]);
        assert_eq!(at(&format!("{conds}/x-kubernetes-list-type")), "map");
        assert_eq!(
            at(&format!("{conds}/x-kubernetes-list-map-keys")),
            json!(["type"])
        );
        assert_eq!(
            at(&format!("{conds}/items/required")),
            json!(["lastTransitionTime", "message", "reason", "status", "type"])
        );
        assert_eq!(
            at(&format!("{conds}/items/properties/status/enum")),
            json!(["True", "False", "Unknown"])
        );
        assert_eq!(
            at(&format!("{conds}/items/properties/reason/maxLength")),
            1024
        );
        assert_eq!(at(&format!("{conds}/items/properties/reason/minLength")), 1);
        assert_eq!(at(&format!("{conds}/items/properties/type/maxLength")), 316);
        assert_eq!(
            at(&format!("{conds}/items/properties/message/maxLength")),
            32768
        );
        assert_eq!(
            at(&format!(
                "{conds}/items/properties/observedGeneration/minimum"
            )),
            json!(0.0)
        );
        assert_eq!(
            at(&format!(
                "{conds}/items/properties/lastTransitionTime/format"
            )),
            "date-time"
        );
    }

    #[test]
    fn serialization_round_trips_and_omits_unset_fields() {
        for doc in docs(SEED_POLICIES)
            .iter()
            .chain(docs(CILIUM_STYLE_POLICIES).iter())
        {
            let policy = parse(doc);
            let json = serde_json::to_value(&policy).unwrap();
            assert_eq!(json["apiVersion"], "cilium.io/v2alpha1");
            assert_eq!(json["kind"], "CiliumL2AnnouncementPolicy");
            assert_eq!(parse(&json), policy);
        }
        let empty = serde_json::to_value(CiliumL2AnnouncementPolicySpec::default()).unwrap();
        assert_eq!(
            empty,
            json!({"loadBalancerIPs": false, "externalIPs": false})
        );
    }
}
