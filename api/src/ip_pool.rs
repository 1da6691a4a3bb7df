//! `CiliumLoadBalancerIPPool`: the pool of addresses LB-IPAM assigns to LoadBalancer Services.
//!
//! Same shape as Cilium's `pkg/k8s/apis/cilium.io/v2/lbipam_types.go`, so pools written for
//! Cilium work unchanged. It is served as `cilium.io/v2` (storage) and as the deprecated
//! `cilium.io/v2alpha1`; both versions have the same schema, so the API server converts
//! between them without a webhook. [`crd`] returns the combined definition.
//!
//! The `serviceSelector` and `status.conditions` schemas are written out by hand, field by
//! field as in Cilium's generated CRD, because the Rust types come from `k8s-openapi`
//! (which carries no schema) and because Cilium's validation (operator enum, label value
//! pattern, condition patterns) is part of what users see when they apply a bad pool.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResourceExt;
use kube::core::crd::MergeError;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};

/// API group of Cilium's CRDs.
pub const GROUP: &str = "cilium.io";
/// Storage version of `CiliumLoadBalancerIPPool`.
pub const STORAGE_VERSION: &str = "v2";

/// Service condition type LB-IPAM writes (`True` when every requested address is assigned).
pub const SERVICE_CONDITION_REQUEST_SATISFIED: &str = "cilium.io/IPAMRequestSatisfied";
/// Pool condition: number of addresses in the pool (message, status `Unknown`).
pub const POOL_CONDITION_IPS_TOTAL: &str = "cilium.io/IPsTotal";
/// Pool condition: number of addresses still free (message, status `Unknown`).
pub const POOL_CONDITION_IPS_AVAILABLE: &str = "cilium.io/IPsAvailable";
/// Pool condition: number of addresses in use, reserved ones included (message, status `Unknown`).
pub const POOL_CONDITION_IPS_USED: &str = "cilium.io/IPsUsed";
/// Pool condition: `True` when the pool overlaps an older pool (or itself) and allocates nothing.
pub const POOL_CONDITION_CONFLICT: &str = "cilium.io/PoolConflict";

/// Annotation listing requested addresses, comma-separated.
pub const ANNOTATION_IPS: &str = "lbipam.cilium.io/ips";
/// Older alias of [`ANNOTATION_IPS`].
pub const ANNOTATION_IPS_ALIAS: &str = "io.cilium/lb-ipam-ips";
/// Annotation naming the sharing group of a Service.
pub const ANNOTATION_SHARING_KEY: &str = "lbipam.cilium.io/sharing-key";
/// Older alias of [`ANNOTATION_SHARING_KEY`].
pub const ANNOTATION_SHARING_KEY_ALIAS: &str = "io.cilium/lb-ipam-sharing-key";
/// Annotation listing namespaces (or `*`) a Service may share its address with.
pub const ANNOTATION_SHARING_CROSS_NAMESPACE: &str = "lbipam.cilium.io/sharing-cross-namespace";
/// Older alias of [`ANNOTATION_SHARING_CROSS_NAMESPACE`].
pub const ANNOTATION_SHARING_CROSS_NAMESPACE_ALIAS: &str =
    "io.cilium/lb-ipam-sharing-cross-namespace";

/// Pseudo-label carrying a Service's namespace, matched by `serviceSelector`.
pub const LABEL_SERVICE_NAMESPACE: &str = "io.kubernetes.service.namespace";
/// Pseudo-label carrying a Service's name, matched by `serviceSelector`.
pub const LABEL_SERVICE_NAME: &str = "io.kubernetes.service.name";

/// Whether the first and last address of each `cidr` block may be handed out.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AllowFirstLastIps {
    /// Every address of the block is allocatable (the default when unset).
    Yes,
    /// The network and broadcast addresses of CIDR blocks are reserved (not for /31, /32,
    /// /127, /128, and never for start/stop blocks).
    No,
}

/// One block of a pool: either `cidr`, or `start` with an optional `stop` (inclusive; a lone
/// `start` is a single address).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(description = "CiliumLoadBalancerIPPoolIPBlock describes a single IP block.")]
pub struct CiliumLoadBalancerIPPoolIPBlock {
    /// A CIDR such as `10.0.10.0/24` or `2001:db8::/64`; used instead of start/stop when set
    /// and not empty.
    // Cilium's own Go clients write `cidr: ""` for start/stop blocks: readers must treat
    // `Some("")` as absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "cidr_schema")]
    pub cidr: Option<String>,
    /// First address of an inclusive range (alone, a single address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "string_schema")]
    pub start: Option<String>,
    /// Last address of the range started by `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "string_schema")]
    pub stop: Option<String>,
}

/// Status of a pool: conditions only, as in Cilium.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(description = "Status is the status of the IP Pool.\n\n\
It might be possible for users to define overlapping IP Pools, we can't validate or enforce non-overlapping pools\n\
during object creation. The Cilium operator will do this validation and update the status to reflect the ability\n\
to allocate IPs from this pool.")]
pub struct CiliumLoadBalancerIPPoolStatus {
    /// Current pool state, a list map keyed by `type`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(schema_with = "crate::schema::conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// Defines the spec struct and its `CustomResource` root for one API version. Both versions
/// must keep exactly the same shape, so they are written once.
macro_rules! pool_version {
    ($version:literal $(, $deprecated:ident)?) => {
        use super::*;

        /// Spec of a `CiliumLoadBalancerIPPool`.
        #[derive(kube::CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
        #[kube(
            group = "cilium.io",
            version = $version,
            kind = "CiliumLoadBalancerIPPool",
            plural = "ciliumloadbalancerippools",
            singular = "ciliumloadbalancerippool",
            shortname = "ippools",
            shortname = "ippool",
            shortname = "lbippool",
            shortname = "lbippools",
            category = "cilium",
            status = "CiliumLoadBalancerIPPoolStatus",
            derive = "PartialEq",
            doc = "CiliumLoadBalancerIPPool is a Kubernetes third-party resource which\nis used to defined pools of IPs which the operator can use to to allocate\nand advertise IPs for Services of type LoadBalancer.",
            printcolumn(name = "Disabled", type_ = "boolean", json_path = ".spec.disabled"),
            printcolumn(
                name = "Conflicting",
                type_ = "string",
                json_path = ".status.conditions[?(@.type==\"cilium.io/PoolConflict\")].status"
            ),
            printcolumn(
                name = "IPs Available",
                type_ = "string",
                json_path = ".status.conditions[?(@.type==\"cilium.io/IPsAvailable\")].message"
            ),
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
            $(, $deprecated)?
        )]
        #[schemars(description = "Spec is a human readable description for a BGP load balancer\nip pool.")]
        pub struct CiliumLoadBalancerIPPoolSpec {
            /// Selects the Services eligible for addresses of this pool (all when unset). Besides
            /// their labels, Services carry `io.kubernetes.service.namespace` and
            /// `io.kubernetes.service.name` for this selector.
            #[serde(rename = "serviceSelector", default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "service_selector_schema")]
            pub service_selector: Option<LabelSelector>,
            /// `Yes` (or unset): the first and last address of each CIDR block are allocatable.
            /// `No`: they are reserved, except in /31, /32, /127 and /128 blocks; start/stop
            /// blocks are never affected.
            #[serde(rename = "allowFirstLastIPs", default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "allow_first_last_ips_schema")]
            pub allow_first_last_ips: Option<AllowFirstLastIps>,
            /// The blocks of addresses making up this pool: each a `cidr`, or a `start` with an
            /// optional inclusive `stop`.
            #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
            #[schemars(schema_with = "blocks_schema")]
            pub blocks: Vec<CiliumLoadBalancerIPPoolIPBlock>,
            /// When true, no new addresses are allocated from this pool; Services keep the ones
            /// they have.
            #[serde(default, deserialize_with = "null_as_default")]
            #[schemars(schema_with = "disabled_schema")]
            pub disabled: bool,
        }
    };
}

/// `cilium.io/v2`, the storage version. Use this version everywhere in code.
pub mod v2 {
    pool_version!("v2");
}

/// `cilium.io/v2alpha1`, served for old manifests (such as the seed's), deprecated.
pub mod v2alpha1 {
    pool_version!("v2alpha1", deprecated);

    impl From<CiliumLoadBalancerIPPoolSpec> for super::v2::CiliumLoadBalancerIPPoolSpec {
        fn from(s: CiliumLoadBalancerIPPoolSpec) -> Self {
            Self {
                service_selector: s.service_selector,
                allow_first_last_ips: s.allow_first_last_ips,
                blocks: s.blocks,
                disabled: s.disabled,
            }
        }
    }

    impl From<CiliumLoadBalancerIPPool> for super::v2::CiliumLoadBalancerIPPool {
        fn from(p: CiliumLoadBalancerIPPool) -> Self {
            let mut out = super::v2::CiliumLoadBalancerIPPool::new("", p.spec.into());
            out.metadata = p.metadata;
            out.status = p.status;
            out
        }
    }
}

pub use v2::{CiliumLoadBalancerIPPool, CiliumLoadBalancerIPPoolSpec};

/// The combined CRD: `v2` (served, storage) and `v2alpha1` (served, deprecated).
pub fn crd() -> Result<CustomResourceDefinition, MergeError> {
    kube::core::crd::merge_crds(
        vec![
            v2::CiliumLoadBalancerIPPool::crd(),
            v2alpha1::CiliumLoadBalancerIPPool::crd(),
        ],
        STORAGE_VERSION,
    )
}

/// Accepts JSON `null` where Cilium's Go types would (they decode null as the zero value).
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn string_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string" })
}

fn cidr_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "cidr" })
}

fn disabled_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "boolean",
        "default": false,
        "description": "Disabled, if set to true means that no new IPs will be allocated from this pool.\nExisting allocations will not be removed from services."
    })
}

fn allow_first_last_ips_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "enum": ["Yes", "No"],
        "description": "AllowFirstLastIPs, if set to `Yes` or undefined means that the first and last IPs of each CIDR will be allocatable.\nIf `No`, these IPs will be reserved. This field is ignored for /{31,32} and /{127,128} CIDRs since\nreserving the first and last IPs would make the CIDRs unusable."
    })
}

fn blocks_schema(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<CiliumLoadBalancerIPPoolIPBlock>();
    json_schema!({
        "type": "array",
        "description": "Blocks is a list of CIDRs comprising this IP Pool",
        "items": item
    })
}

fn service_selector_schema(_: &mut SchemaGenerator) -> Schema {
    crate::schema::label_selector_schema(
        "ServiceSelector selects a set of services which are eligible to receive IPs from this",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
    use serde_json::{Value, json};

    fn schema_of(crd: &CustomResourceDefinition, version: &str) -> JSONSchemaProps {
        let v = crd
            .spec
            .versions
            .iter()
            .find(|v| v.name == version)
            .unwrap();
        v.schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .clone()
            .unwrap()
    }

    fn schema_json(crd: &CustomResourceDefinition, version: &str) -> Value {
        serde_json::to_value(schema_of(crd, version)).unwrap()
    }

    fn validate_against_crd(doc: &Value) -> Vec<String> {
        let crd = crd().unwrap();
        let version = doc["apiVersion"]
            .as_str()
            .unwrap()
            .trim_start_matches("cilium.io/");
        crate::schema::validate::errors(doc, &schema_json(&crd, version))
    }

    /// Pools as Cilium's documentation (LB IPAM page) and users write them, in both versions.
    const CILIUM_STYLE_POOLS: &str = r#"
apiVersion: "cilium.io/v2alpha1"
kind: CiliumLoadBalancerIPPool
metadata:
  name: "blue-pool"
spec:
  blocks:
  - cidr: "10.0.10.0/24"
  - cidr: "2004::0/64"
  - start: "20.0.20.100"
    stop: "20.0.20.200"
  - start: "1.2.3.4"
  serviceSelector:
    matchExpressions:
      - {key: color, operator: In, values: [blue, cyan]}
---
apiVersion: "cilium.io/v2"
kind: CiliumLoadBalancerIPPool
metadata:
  name: "red-pool"
spec:
  blocks:
  - cidr: "20.0.10.0/24"
  serviceSelector:
    matchLabels:
      color: red
---
apiVersion: "cilium.io/v2"
kind: CiliumLoadBalancerIPPool
metadata:
  name: "prod-ippool"
spec:
  allowFirstLastIPs: "No"
  disabled: true
  blocks:
  - start: "172.24.1.61"
    stop: "172.24.1.62"
  serviceSelector:
    matchExpressions:
      - {key: io.kubernetes.service.namespace, operator: NotIn, values: [kube-system]}
      - {key: tier, operator: Exists}
      - {key: legacy, operator: DoesNotExist}
---
apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata:
  name: written-by-go-client
spec:
  allowFirstLastIPs: "Yes"
  blocks:
  - cidr: ""
    start: 10.9.0.10
    stop: 10.9.0.20
  disabled: false
  serviceSelector: null
status:
  conditions:
  - type: cilium.io/IPsTotal
    status: Unknown
    reason: noreason
    message: "11"
    lastTransitionTime: "2026-01-01T00:00:00Z"
    observedGeneration: 1
  - type: cilium.io/PoolConflict
    status: "False"
    reason: resolved
    message: ""
    lastTransitionTime: "2026-01-01T00:00:00Z"
---
apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata:
  name: empty-spec
spec: {}
"#;

    /// The seed's two pools (`shared/seeds/cilium-l2-loadbalancer-pattern.md`), as its
    /// Terraform `yamlencode` renders them for eno1 and eno2.
    const SEED_POOLS: &str = include_str!("../../tests/fixtures/seed/pools.yaml");

    fn docs(yaml: &str) -> Vec<Value> {
        yaml.split("\n---\n")
            .map(|d| serde_yaml::from_str::<Value>(d).unwrap())
            .collect()
    }

    /// Parses a manifest of either version into the v2 type, as the operator sees it.
    fn parse_pool(doc: &Value) -> v2::CiliumLoadBalancerIPPool {
        match doc["apiVersion"].as_str().unwrap() {
            "cilium.io/v2" => serde_json::from_value(doc.clone()).unwrap(),
            "cilium.io/v2alpha1" => {
                serde_json::from_value::<v2alpha1::CiliumLoadBalancerIPPool>(doc.clone())
                    .unwrap()
                    .into()
            }
            other => panic!("unexpected apiVersion {other}"),
        }
    }

    #[test]
    fn cilium_style_pools_deserialize_and_validate() {
        let pools: Vec<_> = docs(CILIUM_STYLE_POOLS)
            .iter()
            .map(|d| (d.clone(), parse_pool(d)))
            .collect();
        assert_eq!(pools.len(), 5);
        for (doc, _) in &pools {
            assert_eq!(validate_against_crd(doc), Vec::<String>::new(), "{doc}");
        }
        let blue = &pools[0].1;
        assert_eq!(blue.metadata.name.as_deref(), Some("blue-pool"));
        assert_eq!(blue.spec.blocks.len(), 4);
        assert_eq!(blue.spec.blocks[3].start.as_deref(), Some("1.2.3.4"));
        assert_eq!(blue.spec.blocks[3].stop, None);
        let exprs = blue
            .spec
            .service_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .as_ref()
            .unwrap();
        assert_eq!(exprs[0].operator, "In");
        assert_eq!(
            exprs[0].values.as_deref(),
            Some(&["blue".to_string(), "cyan".to_string()][..])
        );
        let prod = &pools[2].1;
        assert_eq!(prod.spec.allow_first_last_ips, Some(AllowFirstLastIps::No));
        assert!(prod.spec.disabled);
        let go = &pools[3].1;
        assert_eq!(go.spec.blocks[0].cidr.as_deref(), Some(""));
        assert_eq!(go.spec.service_selector, None);
        assert_eq!(go.status.as_ref().unwrap().conditions[0].message, "11");
        let empty = &pools[4].1;
        assert!(empty.spec.blocks.is_empty() && !empty.spec.disabled);
    }

    #[test]
    fn seed_pools_deserialize_and_validate() {
        for doc in docs(SEED_POOLS) {
            assert_eq!(validate_against_crd(&doc), Vec::<String>::new());
            let pool = parse_pool(&doc);
            assert_eq!(pool.spec.blocks.len(), 1);
            let labels = pool.spec.service_selector.unwrap().match_labels.unwrap();
            assert!(labels.contains_key("network.example.com/interface"));
        }
    }

    #[test]
    fn validator_rejects_what_ciliums_crd_rejects() {
        let bad = json!({
            "apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool",
            "metadata": {"name": "bad"},
            "spec": {
                "allowFirstLastIPs": "yes",
                "blocks": [{"cidr": "10.0.0.0"}, {"start": 5}],
                "serviceSelector": {"matchExpressions": [{"key": "a", "operator": "Equals"}],
                                    "matchLabels": {"a": "not a valid value"}},
                "cidrs": []
            }
        });
        let errors = validate_against_crd(&bad);
        for expected in [
            "allowFirstLastIPs",
            "blocks[0].cidr",
            "blocks[1].start",
            "operator",
            "matchLabels.a",
            "cidrs",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{expected} not rejected: {errors:?}"
            );
        }
        assert!(
            validate_against_crd(&json!({"apiVersion": "cilium.io/v2", "metadata": {}}))
                .iter()
                .any(|e| e.contains("spec"))
        );
    }

    #[test]
    fn crd_has_both_versions_with_v2_stored() {
        let crd = crd().unwrap();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("ciliumloadbalancerippools.cilium.io")
        );
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.scope, "Cluster");
        let names = &crd.spec.names;
        assert_eq!(names.kind, "CiliumLoadBalancerIPPool");
        assert_eq!(names.plural, "ciliumloadbalancerippools");
        assert_eq!(names.singular.as_deref(), Some("ciliumloadbalancerippool"));
        assert_eq!(
            names.short_names.as_deref().unwrap(),
            ["ippools", "ippool", "lbippool", "lbippools"]
        );
        assert_eq!(names.categories.as_deref().unwrap(), ["cilium"]);
        let versions: Vec<_> = crd
            .spec
            .versions
            .iter()
            .map(|v| {
                (
                    v.name.as_str(),
                    v.served,
                    v.storage,
                    v.deprecated.unwrap_or(false),
                )
            })
            .collect();
        assert_eq!(
            versions,
            [("v2", true, true, false), ("v2alpha1", true, false, true)]
        );
        for v in &crd.spec.versions {
            assert!(v.subresources.as_ref().unwrap().status.is_some());
            let cols: Vec<_> = v
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| (c.name.as_str(), c.type_.as_str(), c.json_path.as_str()))
                .collect();
            assert_eq!(
                cols,
                [
                    ("Disabled", "boolean", ".spec.disabled"),
                    (
                        "Conflicting",
                        "string",
                        ".status.conditions[?(@.type==\"cilium.io/PoolConflict\")].status"
                    ),
                    (
                        "IPs Available",
                        "string",
                        ".status.conditions[?(@.type==\"cilium.io/IPsAvailable\")].message"
                    ),
                    ("Age", "date", ".metadata.creationTimestamp"),
                ]
            );
        }
        assert_eq!(
            schema_json(&crd, "v2"),
            schema_json(&crd, "v2alpha1"),
            "versions must have one shape"
        );
    }

    /// Each property of Cilium's generated CRD (`ciliumloadbalancerippools.yaml`), with the
    /// keywords that decide what is accepted. Ours must have the same ones.
    #[test]
    fn crd_schema_has_what_ciliums_has() {
        let crd = crd().unwrap();
        let s = schema_json(&crd, "v2");
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
        assert!(at("/required").as_array().unwrap().contains(&json!("spec")));
        let spec = "/properties/spec";
        assert_eq!(at(&format!("{spec}/type")), "object");
        assert_eq!(
            keys(&format!("{spec}/properties")),
            ["allowFirstLastIPs", "blocks", "disabled", "serviceSelector"]
        );
        assert!(
            s.pointer(&format!("{spec}/required")).is_none(),
            "every spec field is optional in Cilium"
        );
        assert_eq!(
            at(&format!("{spec}/properties/allowFirstLastIPs/enum")),
            json!(["Yes", "No"])
        );
        assert_eq!(
            at(&format!("{spec}/properties/allowFirstLastIPs/type")),
            "string"
        );
        assert_eq!(at(&format!("{spec}/properties/disabled/type")), "boolean");
        assert_eq!(at(&format!("{spec}/properties/disabled/default")), false);
        let block = format!("{spec}/properties/blocks/items");
        assert_eq!(at(&format!("{spec}/properties/blocks/type")), "array");
        assert_eq!(at(&format!("{block}/type")), "object");
        assert_eq!(
            keys(&format!("{block}/properties")),
            ["cidr", "start", "stop"]
        );
        assert!(s.pointer(&format!("{block}/required")).is_none());
        assert_eq!(at(&format!("{block}/properties/cidr/format")), "cidr");
        for f in ["cidr", "start", "stop"] {
            assert_eq!(at(&format!("{block}/properties/{f}/type")), "string");
        }
        let sel = format!("{spec}/properties/serviceSelector");
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
        let conds = "/properties/status/properties/conditions";
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
        assert_eq!(at(&format!("{conds}/items/properties/type/maxLength")), 316);
        assert_eq!(
            at(&format!("{conds}/items/properties/message/maxLength")),
            32768
        );
        assert_eq!(
            at(&format!(
                "{conds}/items/properties/lastTransitionTime/format"
            )),
            "date-time"
        );
    }

    #[test]
    fn v2alpha1_converts_to_v2_unchanged() {
        let doc = &docs(SEED_POOLS)[0];
        let alpha: v2alpha1::CiliumLoadBalancerIPPool =
            serde_json::from_value(doc.clone()).unwrap();
        let v2: v2::CiliumLoadBalancerIPPool = alpha.clone().into();
        assert_eq!(v2.metadata, alpha.metadata);
        let mut as_json = serde_json::to_value(&v2).unwrap();
        assert_eq!(as_json["apiVersion"], "cilium.io/v2");
        as_json["apiVersion"] = doc["apiVersion"].clone();
        assert_eq!(
            serde_json::from_value::<v2alpha1::CiliumLoadBalancerIPPool>(as_json).unwrap(),
            alpha
        );
    }

    #[test]
    fn serialization_round_trips_and_omits_unset_fields() {
        let pool = parse_pool(&docs(CILIUM_STYLE_POOLS)[2]);
        let json = serde_json::to_value(&pool).unwrap();
        assert_eq!(
            serde_json::from_value::<v2::CiliumLoadBalancerIPPool>(json.clone()).unwrap(),
            pool
        );
        assert_eq!(
            json["spec"]["blocks"][0],
            json!({"start": "172.24.1.61", "stop": "172.24.1.62"})
        );
        let empty = serde_json::to_value(CiliumLoadBalancerIPPoolSpec::default()).unwrap();
        assert_eq!(empty, json!({"disabled": false}));
    }
}
