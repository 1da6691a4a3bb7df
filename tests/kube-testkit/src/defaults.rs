//! Defaulting the API server does for built-in kinds on create, limited to Services (the kind
//! the project's controllers read most): type, ports, traffic policies, IP families,
//! cluster IPs and node ports.

use serde_json::{Value, json};

/// Allocators for cluster IPs (10.96.0.0/12 and fd00:10:96::/112) and node ports.
#[derive(Debug, Clone)]
pub struct Allocators {
    next_ip: u32,
    next_node_port: u16,
}

impl Default for Allocators {
    fn default() -> Self {
        // 10.96.0.1 is the `kubernetes` Service of a real cluster.
        Allocators {
            next_ip: 10,
            next_node_port: 30000,
        }
    }
}

impl Allocators {
    fn ip(&mut self, family: &str) -> String {
        let n = self.next_ip;
        self.next_ip += 1;
        if family == "IPv6" {
            format!("fd00:10:96::{n:x}")
        } else {
            format!("10.{}.{}.{}", 96 + (n >> 16), (n >> 8) & 0xff, n & 0xff)
        }
    }

    fn node_port(&mut self) -> u16 {
        let p = self.next_node_port;
        self.next_node_port = if p >= 32767 { 30000 } else { p + 1 };
        p
    }
}

fn set_default(obj: &mut serde_json::Map<String, Value>, key: &str, v: Value) {
    obj.entry(key.to_string()).or_insert(v);
}

/// Defaults a Service being created (a dual-stack cluster: IPv4 first).
pub fn default_service(svc: &mut Value, alloc: &mut Allocators) {
    let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    let ty = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if ty == "ExternalName" {
        return;
    }
    if ty == "LoadBalancer" || ty == "NodePort" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    let node_ports = ty == "NodePort"
        || (ty == "LoadBalancer" && spec["allocateLoadBalancerNodePorts"] == json!(true));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                set_default(p, "targetPort", port);
            }
            if node_ports && !p.contains_key("nodePort") {
                p.insert("nodePort".into(), json!(alloc.node_port()));
            }
        }
    }
    let policy = spec
        .get("ipFamilyPolicy")
        .and_then(Value::as_str)
        .unwrap_or("SingleStack")
        .to_string();
    spec.insert("ipFamilyPolicy".into(), json!(policy));
    let has_families = spec
        .get("ipFamilies")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !has_families {
        let families = if policy == "SingleStack" {
            json!(["IPv4"])
        } else {
            json!(["IPv4", "IPv6"])
        };
        spec.insert("ipFamilies".into(), families);
    }
    if spec.get("clusterIP").and_then(Value::as_str) == Some("None") {
        spec.insert("clusterIPs".into(), json!(["None"]));
        return;
    }
    if spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        let families: Vec<String> = spec["ipFamilies"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let ips: Vec<String> = families.iter().map(|f| alloc.ip(f)).collect();
        spec.insert("clusterIP".into(), json!(ips.first()));
        spec.insert("clusterIPs".into(), json!(ips));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_balancer_services_get_defaults() {
        let mut a = Allocators::default();
        let mut svc = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
        default_service(&mut svc, &mut a);
        let s = &svc["spec"];
        assert_eq!(
            s["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30000})
        );
        assert_eq!(s["ipFamilies"], json!(["IPv4"]));
        assert_eq!(s["ipFamilyPolicy"], "SingleStack");
        assert_eq!(s["clusterIP"], "10.96.0.10");
        assert_eq!(s["externalTrafficPolicy"], "Cluster");
        let mut dual = json!({"spec": {"ipFamilyPolicy": "RequireDualStack", "ports": [{"port": 53, "protocol": "UDP"}]}});
        default_service(&mut dual, &mut a);
        assert_eq!(
            dual["spec"]["clusterIPs"],
            json!(["10.96.0.11", "fd00:10:96::c"])
        );
        assert_eq!(dual["spec"]["type"], "ClusterIP");
        assert!(dual["spec"]["ports"][0].get("nodePort").is_none());
        let mut headless = json!({"spec": {"clusterIP": "None"}});
        default_service(&mut headless, &mut a);
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    }
}
