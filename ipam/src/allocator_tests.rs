//! Unit tests of the allocator, one or more per rule.

use super::*;
use crate::addr::BlockError;
use crate::model::{IpFamilyPolicy, L2_ANNOUNCER_CLASS, Port};
use crate::selector::PoolSelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// A selector from `matchExpressions` given as (key, operator, values).
fn expressions(exprs: &[(&str, &str, &[&str])]) -> PoolSelector {
    PoolSelector::from(&LabelSelector {
        match_labels: None,
        match_expressions: Some(
            exprs
                .iter()
                .map(|(key, op, values)| LabelSelectorRequirement {
                    key: key.to_string(),
                    operator: op.to_string(),
                    values: (!values.is_empty())
                        .then(|| values.iter().map(|v| v.to_string()).collect()),
                })
                .collect(),
        ),
    })
}

pub(crate) fn block(s: &str) -> Block {
    match s.split_once('-') {
        Some((a, b)) => Block::parse(None, Some(a), Some(b)).unwrap(),
        None if s.contains('/') => Block::parse(Some(s), None, None).unwrap(),
        None => Block::parse(None, Some(s), None).unwrap(),
    }
}

pub(crate) fn pool(name: &str, blocks: &[&str]) -> Pool {
    Pool::new(name, blocks.iter().map(|b| block(b)).collect())
}

pub(crate) fn svc(ns: &str, name: &str) -> Service {
    Service::new(ServiceKey::new(ns, name))
}

fn key(ns: &str, name: &str) -> ServiceKey {
    ServiceKey::new(ns, name)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn with_labels(mut s: Service, labels: &[(&str, &str)]) -> Service {
    s.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s
}

fn selecting(mut p: Pool, labels: &[(&str, &str)]) -> Pool {
    p.selector = Some(PoolSelector::from(&LabelSelector {
        match_labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        match_expressions: None,
    }));
    p
}

fn alloc(pools: Vec<Pool>, services: Vec<Service>) -> Allocator {
    let mut a = Allocator::new(Config::default());
    for p in pools {
        a.apply(Event::PoolUpserted(p));
    }
    for s in services {
        a.apply(Event::ServiceUpserted(s));
    }
    a.reconcile();
    a
}

fn ips_of(a: &Allocator, ns: &str, name: &str) -> Vec<String> {
    a.service_ips(&key(ns, name))
        .unwrap_or_default()
        .iter()
        .map(|ip| ip.to_string())
        .collect()
}

fn cond_of(a: &Allocator, ns: &str, name: &str) -> (String, String) {
    let c = a.service_condition(&key(ns, name)).unwrap();
    (c.status.clone(), c.reason.clone())
}

fn message_of(a: &Allocator, ns: &str, name: &str) -> String {
    a.service_condition(&key(ns, name)).unwrap().message.clone()
}

fn satisfied() -> (String, String) {
    ("True".into(), reason::SATISFIED.into())
}

fn unsatisfied(reason: &str) -> (String, String) {
    ("False".into(), reason.into())
}

/// The service as the API server would show it after our writes: the restart state.
fn observed(a: &Allocator, s: &Service) -> Service {
    let mut s = s.clone();
    s.ingress_ips = a.service_ips(&s.key).unwrap_or_default().to_vec();
    s.condition = a.service_condition(&s.key).cloned();
    s
}

fn pool_condition(a: &mut Allocator, pool: &str, type_: &str) -> Condition {
    let outside = a.outside_blocks();
    let here = outside.get(pool).map_or(&[][..], |v| v.as_slice());
    a.pool_conditions(&a.pools[pool], here)
        .into_iter()
        .find(|c| c.type_ == type_)
        .unwrap()
}

// ---- blocks and allocation order -------------------------------------------------------

#[test]
fn generic_allocation_takes_lowest_free_address_in_pool_order() {
    let mut older = pool("b-older", &["10.0.1.0/24"]);
    older.created = 1;
    let mut newer = pool("a-newer", &["10.0.2.0/24"]);
    newer.created = 2;
    let a = alloc(vec![newer, older], vec![svc("ns", "s1"), svc("ns", "s2")]);
    assert_eq!(ips_of(&a, "ns", "s1"), ["10.0.1.0"]);
    assert_eq!(ips_of(&a, "ns", "s2"), ["10.0.1.1"]);
    assert_eq!(cond_of(&a, "ns", "s1"), satisfied());
}

#[test]
fn older_services_are_served_first_in_one_reconcile() {
    let mut young = svc("a", "young");
    young.created = 20;
    let mut old = svc("z", "old");
    old.created = 10;
    let a = alloc(vec![pool("p", &["10.0.0.1-10.0.0.2"])], vec![young, old]);
    assert_eq!(ips_of(&a, "z", "old"), ["10.0.0.1"]);
    assert_eq!(ips_of(&a, "a", "young"), ["10.0.0.2"]);
}

#[test]
fn start_stop_blocks_and_a_lone_start() {
    let a = alloc(
        vec![pool("p", &["10.0.0.7", "10.0.1.10-10.0.1.11"])],
        vec![svc("n", "a"), svc("n", "b"), svc("n", "c"), svc("n", "d")],
    );
    assert_eq!(ips_of(&a, "n", "a"), ["10.0.0.7"]);
    assert_eq!(ips_of(&a, "n", "b"), ["10.0.1.10"]);
    assert_eq!(ips_of(&a, "n", "c"), ["10.0.1.11"]);
    assert_eq!(cond_of(&a, "n", "d"), unsatisfied(reason::OUT_OF_IPS));
    assert_eq!(
        message_of(&a, "n", "d"),
        "All enabled CiliumLoadBalancerIPPools that match this service ran out of allocatable IPs"
    );
}

#[test]
fn allow_first_last_yes_by_default_hands_out_network_and_broadcast() {
    let services: Vec<_> = (0..4).map(|i| svc("n", &format!("s{i}"))).collect();
    let a = alloc(vec![pool("p", &["10.0.0.0/30"])], services);
    let all: Vec<_> = (0..4)
        .flat_map(|i| ips_of(&a, "n", &format!("s{i}")))
        .collect();
    assert_eq!(all, ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"]);
}

#[test]
fn allow_first_last_no_reserves_cidr_ends_only() {
    let mut p = pool(
        "p",
        &[
            "10.0.0.0/30",
            "10.0.1.0/31",
            "10.0.2.5/32",
            "10.0.3.0-10.0.3.3",
        ],
    );
    p.allow_first_last = false;
    let services: Vec<_> = (0..10).map(|i| svc("n", &format!("s{i:02}"))).collect();
    let a = alloc(vec![p], services);
    let all: Vec<_> = (0..10)
        .flat_map(|i| ips_of(&a, "n", &format!("s{i:02}")))
        .collect();
    assert_eq!(
        all,
        [
            "10.0.0.1", "10.0.0.2", // /30 without network and broadcast
            "10.0.1.0", "10.0.1.1", // /31 untouched
            "10.0.2.5", // /32 untouched
            "10.0.3.0", "10.0.3.1", "10.0.3.2", "10.0.3.3", // start/stop untouched
        ]
    );
    assert_eq!(cond_of(&a, "n", "s09"), unsatisfied(reason::OUT_OF_IPS));
    assert_eq!(
        a.pool_counts("p"),
        Some(PoolCounts {
            total: 11,
            available: 0,
            used: 11
        })
    );
}

#[test]
fn ipv6_allow_first_last_no_and_small_prefixes() {
    let mut p = pool("p", &["2001:db8::/126", "2001:db8:1::/127"]);
    p.allow_first_last = false;
    let mut s = svc("n", "s");
    s.ip_families = vec![Family::V6];
    let a = alloc(vec![p], vec![s]);
    assert_eq!(ips_of(&a, "n", "s"), ["2001:db8::1"]);
    assert_eq!(
        a.pool_counts("p"),
        Some(PoolCounts {
            total: 6,
            available: 3,
            used: 3
        })
    );
}

#[test]
fn switching_allow_first_last_to_no_keeps_an_allocated_first_address() {
    let mut a = alloc(vec![pool("p", &["10.0.0.0/29"])], vec![svc("n", "s")]);
    assert_eq!(ips_of(&a, "n", "s"), ["10.0.0.0"]);
    let mut p = pool("p", &["10.0.0.0/29"]);
    p.allow_first_last = false;
    a.apply(Event::PoolUpserted(p.clone()));
    a.apply(Event::ServiceUpserted(svc("n", "t")));
    a.reconcile();
    assert_eq!(ips_of(&a, "n", "s"), ["10.0.0.0"]);
    assert_eq!(ips_of(&a, "n", "t"), ["10.0.0.1"]);
    // A restart keeps it too; a status claiming a reserved address without our condition
    // does not get it.
    let mut stranger = svc("n", "stranger");
    stranger.ingress_ips = vec![ip("10.0.0.7")];
    let b = alloc(
        vec![p.clone()],
        vec![observed(&a, &svc("n", "s")), stranger],
    );
    assert_eq!(ips_of(&b, "n", "s"), ["10.0.0.0"]);
    assert_eq!(ips_of(&b, "n", "stranger"), ["10.0.0.1"]);
    // Freed, the reserved address stays reserved.
    a.apply(Event::ServiceDeleted(key("n", "s")));
    a.apply(Event::ServiceUpserted(svc("n", "u")));
    a.reconcile();
    assert_eq!(ips_of(&a, "n", "u"), ["10.0.0.2"]);
    assert_eq!(
        a.pool_counts("p"),
        Some(PoolCounts {
            total: 8,
            available: 4,
            used: 4
        })
    );
}

#[test]
fn huge_ipv6_pools_are_not_materialised() {
    let mut s = svc("n", "s");
    s.ip_families = vec![Family::V6];
    let a = alloc(vec![pool("p", &["2001:db8::/32", "10.0.0.0/8"])], vec![s]);
    assert_eq!(ips_of(&a, "n", "s"), ["2001:db8::"]);
    let counts = a.pool_counts("p").unwrap();
    assert_eq!(counts.total, (1u128 << 96) + (1 << 24));
    assert_eq!(counts.used, 1);
}

// ---- pool state -------------------------------------------------------------------------

#[test]
fn disabled_pool_allocates_nothing_and_keeps_existing() {
    let mut a = alloc(vec![pool("p", &["10.0.0.0/24"])], vec![svc("n", "old")]);
    let old = observed(&a, &svc("n", "old"));
    let mut p = pool("p", &["10.0.0.0/24"]);
    p.disabled = true;
    a.apply(Event::PoolUpserted(p.clone()));
    a.apply(Event::ServiceUpserted(svc("n", "new")));
    a.reconcile();
    assert_eq!(ips_of(&a, "n", "old"), ["10.0.0.0"]);
    assert_eq!(cond_of(&a, "n", "new"), unsatisfied(reason::NO_POOL));
    assert_eq!(
        message_of(&a, "n", "new"),
        "There are no enabled CiliumLoadBalancerIPPools that match this service"
    );
    // A restart keeps the address from the disabled pool too.
    let b = alloc(vec![p], vec![old]);
    assert_eq!(ips_of(&b, "n", "old"), ["10.0.0.0"]);
}

#[test]
fn no_pool_at_all() {
    let a = alloc(vec![], vec![svc("n", "s")]);
    assert_eq!(cond_of(&a, "n", "s"), unsatisfied(reason::NO_POOL));
    assert!(ips_of(&a, "n", "s").is_empty());
}

#[test]
fn selector_with_pseudo_labels_and_expressions() {
    let mut by_ns = pool("by-ns", &["10.0.1.0/24"]);
    by_ns.selector = Some(expressions(&[(
        "io.kubernetes.service.namespace",
        "In",
        &["team-a"],
    )]));
    let by_name = selecting(
        pool("by-name", &["10.0.2.0/24"]),
        &[("io.kubernetes.service.name", "special")],
    );
    let mut not_prod = pool("not-prod", &["10.0.3.0/24"]);
    not_prod.selector = Some(expressions(&[
        ("env", "NotIn", &["prod"]),
        ("tier", "Exists", &[]),
    ]));
    let a = alloc(
        vec![by_ns, by_name, not_prod],
        vec![
            svc("team-a", "x"),
            svc("other", "special"),
            with_labels(svc("other", "y"), &[("tier", "web"), ("env", "dev")]),
            with_labels(svc("other", "z"), &[("tier", "web"), ("env", "prod")]),
        ],
    );
    assert_eq!(ips_of(&a, "team-a", "x"), ["10.0.1.0"]);
    assert_eq!(ips_of(&a, "other", "special"), ["10.0.2.0"]);
    assert_eq!(ips_of(&a, "other", "y"), ["10.0.3.0"]);
    assert_eq!(cond_of(&a, "other", "z"), unsatisfied(reason::NO_POOL));
}

#[test]
fn service_relabelled_out_of_a_pool_moves_to_the_matching_one() {
    let eno1 = selecting(
        pool("eno1", &["192.168.3.150-192.168.3.250"]),
        &[("net", "eno1")],
    );
    let eno2 = selecting(
        pool("eno2", &["192.168.4.150-192.168.4.250"]),
        &[("net", "eno2")],
    );
    let s = with_labels(svc("n", "s"), &[("net", "eno1")]);
    let mut a = alloc(vec![eno1, eno2], vec![s.clone()]);
    assert_eq!(ips_of(&a, "n", "s"), ["192.168.3.150"]);
    a.apply(Event::ServiceUpserted(with_labels(
        observed(&a, &s),
        &[("net", "eno2")],
    )));
    let d = a.reconcile();
    assert_eq!(ips_of(&a, "n", "s"), ["192.168.4.150"]);
    assert_eq!(d.services.len(), 1);
}

#[test]
fn overlapping_pools_newer_conflicts_and_allocates_nothing() {
    let mut old = selecting(pool("old", &["10.0.0.0/24"]), &[("pool", "old")]);
    old.created = 100;
    let mut new = pool("new", &["10.1.0.0/24", "10.0.0.128/25"]);
    new.created = 200;
    let mut a = alloc(vec![new.clone(), old], vec![svc("n", "s")]);
    assert_eq!(cond_of(&a, "n", "s"), unsatisfied(reason::NO_POOL));
    let c = pool_condition(&mut a, "new", api::POOL_CONDITION_CONFLICT);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "cidr_overlap")
    );
    assert_eq!(
        c.message,
        "Pool conflicts since range '10.0.0.128 - 10.0.0.255' overlaps range '10.0.0.0 - 10.0.0.255' from IP Pool 'old'"
    );
    let c = pool_condition(&mut a, "old", api::POOL_CONDITION_CONFLICT);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
        ("False", "resolved", "")
    );
    assert_eq!(a.stats().conflicting_pools, 1);
    // Resolved by deleting the older pool: the newer one allocates.
    a.apply(Event::PoolDeleted("old".into()));
    a.reconcile();
    assert_eq!(ips_of(&a, "n", "s"), ["10.1.0.0"]);
    assert_eq!(a.pool_conflict("new"), None);
}

#[test]
fn conflicts_chain_only_against_non_conflicting_pools() {
    let mut a1 = pool("a", &["10.0.0.0/24"]);
    a1.created = 1;
    let mut b = pool("b", &["10.0.0.200-10.0.1.10"]);
    b.created = 2;
    let mut c = pool("c", &["10.0.1.0/24"]);
    c.created = 3;
    let a = alloc(vec![c, b, a1], vec![]);
    assert_eq!(a.pool_conflict("a"), None);
    assert!(a.pool_conflict("b").is_some());
    assert_eq!(a.pool_conflict("c"), None);
}

#[test]
fn a_pool_overlapping_itself_conflicts() {
    let a = alloc(
        vec![pool("p", &["10.0.0.0/24", "10.0.0.5"])],
        vec![svc("n", "s")],
    );
    assert_eq!(
        a.pool_conflict("p"),
        Some(
            "Pool conflicts since range '10.0.0.0 - 10.0.0.255' overlaps range '10.0.0.5 - 10.0.0.5' from IP Pool 'p'"
        )
    );
    assert_eq!(cond_of(&a, "n", "s"), unsatisfied(reason::NO_POOL));
}

#[test]
fn pool_count_conditions_follow_cilium() {
    let mut p = pool("p", &["10.0.0.0/28"]);
    p.allow_first_last = false;
    let mut a = alloc(vec![p], vec![svc("n", "a"), svc("n", "b")]);
    let get = |a: &mut Allocator, t: &str| {
        let c = pool_condition(a, "p", t);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("Unknown", "noreason")
        );
        c.message
    };
    assert_eq!(get(&mut a, api::POOL_CONDITION_IPS_TOTAL), "16");
    assert_eq!(get(&mut a, api::POOL_CONDITION_IPS_AVAILABLE), "12");
    assert_eq!(get(&mut a, api::POOL_CONDITION_IPS_USED), "4");
}

#[test]
fn invalid_blocks_are_reported_on_the_pool() {
    let mut p = pool("p", &["10.0.0.0/30"]);
    p.invalid_blocks.push(BlockError::Cidr("10.0.0.0".into()));
    let mut a = alloc(vec![p], vec![]);
    let c = pool_condition(&mut a, "p", POOL_CONDITION_INVALID_BLOCKS);
    assert_eq!(
        (c.status.as_str(), c.message.as_str()),
        ("True", "Blocks ignored: error parsing cidr '10.0.0.0'")
    );
}

// ---- responsibility ---------------------------------------------------------------------

#[test]
fn load_balancer_class_rules() {
    let mut l2 = svc("n", "l2");
    l2.load_balancer_class = Some(L2_ANNOUNCER_CLASS.into());
    let mut bgp = svc("n", "bgp");
    bgp.load_balancer_class = Some("io.cilium/bgp-control-plane".into());
    let mut cluster_ip = svc("n", "cip");
    cluster_ip.load_balancer = false;
    let a = alloc(
        vec![pool("p", &["10.0.0.0/24"])],
        vec![svc("n", "plain"), l2.clone(), bgp, cluster_ip],
    );
    assert_eq!(ips_of(&a, "n", "l2"), ["10.0.0.0"]);
    assert_eq!(ips_of(&a, "n", "plain"), ["10.0.0.1"]);
    assert!(a.service_condition(&key("n", "bgp")).is_none());
    assert!(a.service_condition(&key("n", "cip")).is_none());

    let mut only_classes = Allocator::new(Config {
        classless: false,
        ..Config::default()
    });
    only_classes.apply(Event::PoolUpserted(pool("p", &["10.0.0.0/24"])));
    only_classes.apply(Event::ServiceUpserted(svc("n", "plain")));
    only_classes.apply(Event::ServiceUpserted(l2));
    let d = only_classes.reconcile();
    assert_eq!(d.services.len(), 1);
    assert_eq!(
        only_classes.service_ips(&key("n", "l2")).unwrap(),
        [ip("10.0.0.0")]
    );
}

#[test]
fn leaving_responsibility_clears_status_and_frees_the_address() {
    let s = svc("n", "s");
    let mut a = alloc(vec![pool("p", &["10.0.0.0/24"])], vec![s.clone()]);
    let mut now_cluster_ip = observed(&a, &s);
    now_cluster_ip.load_balancer = false;
    a.apply(Event::ServiceUpserted(now_cluster_ip.clone()));
    a.apply(Event::ServiceUpserted(svc("n", "t")));
    let d = a.reconcile();
    assert!(
        d.services
            .contains(&ServiceUpdate::Clear { key: key("n", "s") })
    );
    assert_eq!(ips_of(&a, "n", "t"), ["10.0.0.0"]);
    // Not ours any more: later events about it are ignored.
    a.apply(Event::ServiceUpserted(now_cluster_ip));
    assert!(a.reconcile().services.is_empty());
}

// ---- requested addresses ---------------------------------------------------------------

#[test]
fn requested_addresses() {
    let eno1 = selecting(pool("eno1", &["10.0.1.0/24"]), &[("net", "eno1")]);
    let mut want = with_labels(svc("n", "want"), &[("net", "eno1")]);
    want.requested_ips = vec![ip("10.0.1.77")];
    let mut nowhere = svc("n", "nowhere");
    nowhere.requested_ips = vec![ip("192.0.2.1")];
    let mut mismatch = svc("n", "mismatch");
    mismatch.requested_ips = vec![ip("10.0.1.78")];
    let mut taken = with_labels(svc("n", "taken"), &[("net", "eno1")]);
    taken.requested_ips = vec![ip("10.0.1.77")];
    taken.created = 5;
    let a = alloc(vec![eno1], vec![want, nowhere, mismatch, taken]);
    assert_eq!(ips_of(&a, "n", "want"), ["10.0.1.77"]);
    assert_eq!(cond_of(&a, "n", "want"), satisfied());
    assert_eq!(cond_of(&a, "n", "nowhere"), unsatisfied(reason::NO_POOL));
    assert_eq!(
        message_of(&a, "n", "nowhere"),
        "No pool exists with a CIDR containing '192.0.2.1'"
    );
    assert_eq!(
        cond_of(&a, "n", "mismatch"),
        unsatisfied(reason::POOL_SELECTOR_MISMATCH)
    );
    assert_eq!(
        message_of(&a, "n", "mismatch"),
        "The pool with the CIDR containing '10.0.1.78', doesn't select this service"
    );
    assert_eq!(
        cond_of(&a, "n", "taken"),
        unsatisfied(reason::ALREADY_ALLOCATED)
    );
    assert_eq!(
        message_of(&a, "n", "taken"),
        "The IP '10.0.1.77' is already allocated to another service"
    );
}

#[test]
fn requested_addresses_beat_generic_ones_in_the_same_reconcile() {
    let mut want = svc("z", "want");
    want.requested_ips = vec![ip("10.0.0.0")];
    want.created = 9;
    let mut generic = svc("a", "generic");
    generic.created = 1;
    let a = alloc(vec![pool("p", &["10.0.0.0/31"])], vec![generic, want]);
    assert_eq!(ips_of(&a, "z", "want"), ["10.0.0.0"]);
    assert_eq!(ips_of(&a, "a", "generic"), ["10.0.0.1"]);
}

#[test]
fn requested_address_in_disabled_or_reserved_space() {
    let mut disabled = pool("d", &["10.0.1.0/24"]);
    disabled.disabled = true;
    let mut reserving = pool("r", &["10.0.2.0/24"]);
    reserving.allow_first_last = false;
    let mut s1 = svc("n", "s1");
    s1.requested_ips = vec![ip("10.0.1.5")];
    let mut s2 = svc("n", "s2");
    s2.requested_ips = vec![ip("10.0.2.255")];
    let a = alloc(vec![disabled, reserving], vec![s1, s2]);
    assert_eq!(cond_of(&a, "n", "s1"), unsatisfied(reason::NO_POOL));
    assert_eq!(
        cond_of(&a, "n", "s2"),
        unsatisfied(reason::ALREADY_ALLOCATED)
    );
}

#[test]
fn several_requested_addresses_and_a_change_of_request() {
    let mut s = svc("n", "s");
    s.requested_ips = vec![ip("10.0.0.9"), ip("2001:db8::9")];
    let mut a = alloc(
        vec![pool("p", &["10.0.0.0/24", "2001:db8::/64"])],
        vec![s.clone()],
    );
    assert_eq!(ips_of(&a, "n", "s"), ["10.0.0.9", "2001:db8::9"]);
    let mut changed = observed(&a, &s);
    changed.requested_ips = vec![ip("10.0.0.10")];
    a.apply(Event::ServiceUpserted(changed.clone()));
    a.reconcile();
    assert_eq!(ips_of(&a, "n", "s"), ["10.0.0.10"]);
    // Dropping the request keeps one address of the requested family.
    let mut generic = observed(&a, &changed);
    generic.requested_ips.clear();
    a.apply(Event::ServiceUpserted(generic));
    a.reconcile();
    assert_eq!(ips_of(&a, "n", "s"), ["10.0.0.10"]);
}

// ---- sharing ----------------------------------------------------------------------------

fn sharing(ns: &str, name: &str, key: &str, port: i32) -> Service {
    let mut s = svc(ns, name);
    s.sharing_key = key.into();
    s.ports = vec![Port {
        port,
        protocol: "TCP".into(),
    }];
    s
}

#[test]
fn services_with_one_sharing_key_share_an_address() {
    let a = alloc(
        vec![pool("p", &["10.0.0.0/24"])],
        vec![
            sharing("n", "http", "k", 80),
            sharing("n", "https", "k", 443),
            sharing("n", "other", "x", 80),
        ],
    );
    assert_eq!(ips_of(&a, "n", "http"), ["10.0.0.0"]);
    assert_eq!(ips_of(&a, "n", "https"), ["10.0.0.0"]);
    assert_eq!(ips_of(&a, "n", "other"), ["10.0.0.1"]);
    assert_eq!(a.pool_counts("p").unwrap().used, 2);
}

#[test]
fn same_port_and_protocol_gets_another_address_of_the_group() {
    let mut udp = sharing("n", "dns-udp", "k", 53);
    udp.ports[0].protocol = "UDP".into();
    let a = alloc(
        vec![pool("p", &["10.0.0.0/24"])],
        vec![
            sharing("n", "a", "k", 80),
            sharing("n", "b", "k", 80),
            sharing("n", "dns-tcp", "k", 53),
            udp,
        ],
    );
    assert_eq!(ips_of(&a, "n", "a"), ["10.0.0.0"]);
    assert_eq!(ips_of(&a, "n", "b"), ["10.0.0.1"]);
    assert_eq!(ips_of(&a, "n", "dns-tcp"), ["10.0.0.0"]);
    assert_eq!(ips_of(&a, "n", "dns-udp"), ["10.0.0.0"]);
}

#[test]
fn requested_shared_address_with_incompatible_service() {
    let mut first = sharing("n", "first", "k", 80);
    first.requested_ips = vec![ip("10.0.0.5")];
    let mut second = sharing("n", "second", "k", 80);
    second.requested_ips = vec![ip("10.0.0.5")];
    second.created = 1;
    let mut third = sharing("n", "third", "k", 81);
    third.requested_ips = vec![ip("10.0.0.5")];
    third.created = 2;
    let a = alloc(
        vec![pool("p", &["10.0.0.0/24"])],
        vec![first, second, third],
    );
    assert_eq!(ips_of(&a, "n", "first"), ["10.0.0.5"]);
    assert_eq!(ips_of(&a, "n", "third"), ["10.0.0.5"]);
    assert_eq!(
        cond_of(&a, "n", "second"),
        unsatisfied(reason::ALREADY_ALLOCATED_INCOMPATIBLE)
    );
    assert_eq!(
        message_of(&a, "n", "second"),
        "The IP '10.0.0.5' is already allocated to an incompatible service. Reason: same port and protocol"
    );
}

#[test]
fn cross_namespace_sharing_needs_both_services_to_allow_it() {
    let mut a1 = sharing("ns1", "a", "k", 80);
    a1.requested_ips = vec![ip("10.0.0.5")];
    a1.sharing_cross_namespace = vec!["ns2".into()];
    let mut b = sharing("ns2", "b", "k", 81);
    b.requested_ips = vec![ip("10.0.0.5")];
    b.created = 1;
    let mut a = alloc(vec![pool("p", &["10.0.0.0/24"])], vec![a1, b.clone()]);
    assert_eq!(
        cond_of(&a, "ns2", "b"),
        unsatisfied(reason::ALREADY_ALLOCATED_INCOMPATIBLE)
    );
    assert!(message_of(&a, "ns2", "b").ends_with("Reason: different and not permitted namespace"));
    b.sharing_cross_namespace = vec!["*".into()];
    a.apply(Event::ServiceUpserted(b));
    a.reconcile();
    assert_eq!(ips_of(&a, "ns2", "b"), ["10.0.0.5"]);
}

#[test]
fn traffic_policy_rules_for_sharing() {
    let mut local_a = sharing("n", "la", "k", 80);
    local_a.external_traffic_local = true;
    local_a.selector = [("app".to_string(), "x".to_string())].into();
    let mut local_b = sharing("n", "lb", "k", 81);
    local_b.external_traffic_local = true;
    local_b.selector = local_a.selector.clone();
    let mut local_c = sharing("n", "lc", "k", 82);
    local_c.external_traffic_local = true;
    local_c.selector = [("app".to_string(), "y".to_string())].into();
    let cluster = sharing("n", "cl", "k", 83);
    let a = alloc(
        vec![pool("p", &["10.0.0.0/24"])],
        vec![local_a, local_b, local_c, cluster],
    );
    assert_eq!(ips_of(&a, "n", "la"), ips_of(&a, "n", "lb"));
    assert_ne!(ips_of(&a, "n", "la"), ips_of(&a, "n", "lc"));
    assert_ne!(ips_of(&a, "n", "la"), ips_of(&a, "n", "cl"));
}

#[test]
fn a_sharer_that_becomes_incompatible_leaves_the_address() {
    let a1 = sharing("n", "a", "k", 80);
    let b = sharing("n", "b", "k", 81);
    let mut a = alloc(
        vec![pool("p", &["10.0.0.0/24"])],
        vec![a1.clone(), b.clone()],
    );
    assert_eq!(ips_of(&a, "n", "b"), ["10.0.0.0"]);
    let mut b2 = observed(&a, &b);
    b2.ports[0].port = 80;
    a.apply(Event::ServiceUpserted(b2.clone()));
    a.reconcile();
    assert_eq!(ips_of(&a, "n", "a"), ["10.0.0.0"]);
    assert_eq!(ips_of(&a, "n", "b"), ["10.0.0.1"]);
    // A new key: the old group's address is not joined any more.
    let mut c = sharing("n", "c", "k2", 90);
    c.created = 3;
    let mut b3 = observed(&a, &b2);
    b3.sharing_key = "k2".into();
    a.apply(Event::ServiceUpserted(b3));
    a.apply(Event::ServiceUpserted(c));
    a.reconcile();
    assert_eq!(ips_of(&a, "n", "b"), ["10.0.0.1"]);
    assert_eq!(ips_of(&a, "n", "c"), ["10.0.0.1"]);
}

#[test]
fn the_sharer_that_changed_leaves_even_when_the_other_one_is_reconciled_too() {
    // `old` is dual-stack without an IPv6 pool, so it is unsatisfied and revisited at every
    // reconcile; `young` changes its port to clash with it. The one that changed leaves.
    let mut old = sharing("n", "old", "k", 80);
    old.ip_family_policy = Some(IpFamilyPolicy::RequireDualStack);
    let mut young = sharing("n", "young", "k", 81);
    young.created = 5;
    let mut a = alloc(
        vec![pool("p", &["10.0.0.0/24"])],
        vec![old.clone(), young.clone()],
    );
    assert_eq!(ips_of(&a, "n", "young"), ["10.0.0.0"]);
    assert_eq!(cond_of(&a, "n", "old"), unsatisfied(reason::NO_POOL));
    let mut clash = observed(&a, &young);
    clash.ports[0].port = 80;
    a.apply(Event::ServiceUpserted(clash.clone()));
    a.reconcile();
    assert_eq!(ips_of(&a, "n", "old"), ["10.0.0.0"]);
    assert_eq!(ips_of(&a, "n", "young"), ["10.0.0.1"]);
    // Both changing at once: the younger one leaves.
    let mut b = alloc(
        vec![pool("p", &["10.0.0.0/24"])],
        vec![old.clone(), young.clone()],
    );
    let mut old2 = observed(&b, &old);
    old2.ports[0].port = 90;
    let mut young2 = observed(&b, &young);
    young2.ports[0].port = 90;
    b.apply(Event::ServiceUpserted(young2));
    b.apply(Event::ServiceUpserted(old2));
    b.reconcile();
    assert_eq!(ips_of(&b, "n", "old"), ["10.0.0.0"]);
    assert_eq!(ips_of(&b, "n", "young"), ["10.0.0.1"]);
}

#[test]
fn services_without_a_key_never_share() {
    let a = alloc(
        vec![pool("p", &["10.0.0.0/31"])],
        vec![svc("n", "a"), svc("n", "b"), svc("n", "c")],
    );
    assert_eq!(cond_of(&a, "n", "c"), unsatisfied(reason::OUT_OF_IPS));
}

// ---- families ---------------------------------------------------------------------------

fn dual(policy: IpFamilyPolicy, families: &[Family]) -> Service {
    let mut s = svc("n", "d");
    s.ip_family_policy = Some(policy);
    s.ip_families = families.to_vec();
    s
}

#[test]
fn dual_stack_gets_one_address_per_family() {
    let a = alloc(
        vec![pool("v4", &["10.0.0.0/24"]), pool("v6", &["2001:db8::/64"])],
        vec![dual(
            IpFamilyPolicy::RequireDualStack,
            &[Family::V4, Family::V6],
        )],
    );
    assert_eq!(ips_of(&a, "n", "d"), ["10.0.0.0", "2001:db8::"]);
    assert_eq!(cond_of(&a, "n", "d"), satisfied());
}

#[test]
fn dual_stack_without_an_ipv6_pool_keeps_ipv4_and_reports() {
    let a = alloc(
        vec![pool("v4", &["10.0.0.0/24"])],
        vec![dual(IpFamilyPolicy::PreferDualStack, &[])],
    );
    assert_eq!(ips_of(&a, "n", "d"), ["10.0.0.0"]);
    assert_eq!(cond_of(&a, "n", "d"), unsatisfied(reason::NO_POOL));
}

#[test]
fn single_stack_ipv6_and_disabled_families() {
    let pools = vec![pool("p", &["10.0.0.0/24", "2001:db8::/64"])];
    let a = alloc(
        pools.clone(),
        vec![dual(IpFamilyPolicy::SingleStack, &[Family::V6])],
    );
    assert_eq!(ips_of(&a, "n", "d"), ["2001:db8::"]);
    let mut b = Allocator::new(Config {
        ipv6_enabled: false,
        ..Config::default()
    });
    for p in pools {
        b.apply(Event::PoolUpserted(p));
    }
    b.apply(Event::ServiceUpserted(dual(
        IpFamilyPolicy::PreferDualStack,
        &[Family::V6, Family::V4],
    )));
    b.reconcile();
    assert_eq!(b.service_ips(&key("n", "d")).unwrap(), [ip("10.0.0.0")]);
}

#[test]
fn a_family_no_longer_requested_is_released() {
    let s = dual(IpFamilyPolicy::RequireDualStack, &[Family::V4, Family::V6]);
    let mut a = alloc(
        vec![pool("p", &["10.0.0.0/24", "2001:db8::/64"])],
        vec![s.clone()],
    );
    let single = dual(IpFamilyPolicy::SingleStack, &[Family::V6]);
    a.apply(Event::ServiceUpserted(Service {
        ingress_ips: observed(&a, &s).ingress_ips,
        ..single
    }));
    a.reconcile();
    assert_eq!(ips_of(&a, "n", "d"), ["2001:db8::"]);
}

// ---- stability --------------------------------------------------------------------------

fn fleet() -> (Vec<Pool>, Vec<Service>) {
    let eno1 = selecting(
        pool("eno1", &["192.168.3.150-192.168.3.250"]),
        &[("net", "eno1")],
    );
    let eno2 = selecting(
        pool("eno2", &["192.168.4.150-192.168.4.250"]),
        &[("net", "eno2")],
    );
    let v6 = pool("v6", &["2001:db8::/120"]);
    let mut services = Vec::new();
    for i in 0..30 {
        let net = if i % 3 == 0 { "eno2" } else { "eno1" };
        let mut s = with_labels(svc("n", &format!("s{i:02}")), &[("net", net)]);
        s.created = i64::from(30 - i);
        if i % 5 == 0 {
            s.ip_family_policy = Some(IpFamilyPolicy::PreferDualStack);
        }
        if i % 7 == 0 {
            s.sharing_key = "shared".into();
            s.ports = vec![Port {
                port: 1000 + i,
                protocol: "TCP".into(),
            }];
        }
        services.push(s);
    }
    (vec![eno1, eno2, v6], services)
}

#[test]
fn a_restart_reproduces_every_assignment_whatever_the_event_order() {
    let (pools, services) = fleet();
    let mut a = alloc(pools.clone(), services.clone());
    // Churn so that the addresses are not simply the first ones.
    for name in ["s04", "s10", "s17"] {
        a.apply(Event::ServiceDeleted(key("n", name)));
    }
    a.reconcile();
    let mut late = with_labels(svc("n", "late"), &[("net", "eno1")]);
    late.created = 100;
    a.apply(Event::ServiceUpserted(late.clone()));
    a.reconcile();
    let before = a.assignments();
    let mut restart_state: Vec<Service> = services
        .iter()
        .chain([&late])
        .filter(|s| before.contains_key(&s.key))
        .map(|s| observed(&a, s))
        .collect();
    restart_state.reverse();
    let mut pools_rev = pools;
    pools_rev.reverse();
    let mut b = Allocator::new(Config::default());
    for s in restart_state.clone() {
        b.apply(Event::ServiceUpserted(s));
    }
    for p in pools_rev {
        b.apply(Event::PoolUpserted(p));
    }
    let d = b.reconcile();
    assert_eq!(b.assignments(), before);
    assert!(
        d.services.is_empty(),
        "a restart writes nothing: {:?}",
        d.services
    );
}

#[test]
fn widening_or_editing_a_pool_and_other_services_changes_move_nothing() {
    let (pools, services) = fleet();
    let mut a = alloc(pools, services);
    let before = a.assignments();
    // Widen eno1, add a block in front of it, reorder blocks.
    let eno1 = selecting(
        pool("eno1", &["192.168.9.0/24", "192.168.3.100-192.168.3.255"]),
        &[("net", "eno1")],
    );
    a.apply(Event::PoolUpserted(eno1));
    a.apply(Event::ServiceDeleted(key("n", "s01")));
    a.apply(Event::ServiceUpserted(with_labels(
        svc("n", "new"),
        &[("net", "eno1")],
    )));
    a.reconcile();
    for (k, ips) in before {
        if k.name != "s01" {
            assert_eq!(a.service_ips(&k).unwrap(), ips.as_slice(), "{k}");
        }
    }
    assert_eq!(ips_of(&a, "n", "new"), ["192.168.9.0"]);
}

#[test]
fn shrinking_a_pool_under_used_addresses_keeps_and_reports_them() {
    let s = svc("n", "s");
    let t = svc("n", "t");
    let mut a = alloc(
        vec![pool("p", &["10.0.0.0/30"])],
        vec![s.clone(), t.clone()],
    );
    assert_eq!(ips_of(&a, "n", "t"), ["10.0.0.1"]);
    a.apply(Event::PoolUpserted(pool("p", &["10.0.0.0/32"])));
    a.apply(Event::ServiceUpserted(observed(&a, &t)));
    a.reconcile();
    assert_eq!(ips_of(&a, "n", "t"), ["10.0.0.1"]);
    assert_eq!(cond_of(&a, "n", "t"), satisfied());
    assert!(message_of(&a, "n", "t").contains("10.0.0.1"));
    let c = pool_condition(&mut a, "p", POOL_CONDITION_OUTSIDE_BLOCKS);
    assert_eq!(c.status, "True");
    assert!(c.message.contains("10.0.0.1 (n/t)"), "{}", c.message);
    // After a restart it is still kept.
    let b = alloc(
        vec![pool("p", &["10.0.0.0/32"])],
        vec![observed(&a, &t), observed(&a, &s)],
    );
    assert_eq!(ips_of(&b, "n", "t"), ["10.0.0.1"]);
    // Widened again, the address is back inside the pool and still in use.
    a.apply(Event::PoolUpserted(pool("p", &["10.0.0.0/30"])));
    a.apply(Event::ServiceUpserted(svc("n", "u")));
    a.reconcile();
    assert_eq!(ips_of(&a, "n", "u"), ["10.0.0.2"]);
    assert_eq!(
        pool_condition(&mut a, "p", POOL_CONDITION_OUTSIDE_BLOCKS).status,
        "False"
    );
}

#[test]
fn deleting_a_pool_releases_unless_another_pool_covers_the_address() {
    let mut old = pool("old", &["10.0.0.0/24"]);
    old.created = 1;
    let mut a = alloc(vec![old], vec![svc("n", "s"), svc("n", "t")]);
    // A renamed copy of part of the pool (created later) takes over the address it covers.
    let mut renamed = pool("renamed", &["10.0.0.1-10.0.0.10"]);
    renamed.created = 2;
    a.apply(Event::PoolDeleted("old".into()));
    a.apply(Event::PoolUpserted(renamed));
    a.reconcile();
    assert_eq!(ips_of(&a, "n", "t"), ["10.0.0.1"]);
    assert_eq!(ips_of(&a, "n", "s"), ["10.0.0.2"]);
    a.apply(Event::PoolDeleted("renamed".into()));
    a.reconcile();
    assert!(ips_of(&a, "n", "s").is_empty());
    assert_eq!(cond_of(&a, "n", "s"), unsatisfied(reason::NO_POOL));
}

#[test]
fn a_status_address_taken_by_another_service_is_not_adopted() {
    let mut a = alloc(vec![pool("p", &["10.0.0.0/24"])], vec![svc("n", "holder")]);
    let mut intruder = svc("n", "intruder");
    intruder.ingress_ips = vec![ip("10.0.0.0")];
    a.apply(Event::ServiceUpserted(intruder));
    let d = a.reconcile();
    assert_eq!(ips_of(&a, "n", "intruder"), ["10.0.0.1"]);
    assert_eq!(
        d.services,
        [ServiceUpdate::Set {
            key: key("n", "intruder"),
            ingress_ips: vec![ip("10.0.0.1")],
            condition: service_condition("True", reason::SATISFIED, String::new()),
        }]
    );
}

#[test]
fn a_status_address_held_by_an_incompatible_sharer_is_not_adopted() {
    let mut a = alloc(
        vec![pool("p", &["10.0.0.0/24"])],
        vec![sharing("n", "holder", "k1", 80)],
    );
    let mut other_key = sharing("n", "other-key", "k2", 81);
    other_key.ingress_ips = vec![ip("10.0.0.0")];
    let mut same_port = sharing("n", "same-port", "k1", 80);
    same_port.ingress_ips = vec![ip("10.0.0.0")];
    let mut fine = sharing("n", "fine", "k1", 82);
    fine.ingress_ips = vec![ip("10.0.0.0")];
    for s in [other_key, same_port, fine] {
        a.apply(Event::ServiceUpserted(s));
    }
    a.reconcile();
    assert_eq!(ips_of(&a, "n", "fine"), ["10.0.0.0"]);
    assert_ne!(ips_of(&a, "n", "other-key"), ["10.0.0.0"]);
    assert_ne!(ips_of(&a, "n", "same-port"), ["10.0.0.0"]);
}

#[test]
fn a_foreign_status_address_outside_every_pool_is_replaced() {
    let mut s = svc("n", "s");
    s.ingress_ips = vec![ip("192.0.2.1")];
    let a = alloc(vec![pool("p", &["10.0.0.0/24"])], vec![s]);
    assert_eq!(ips_of(&a, "n", "s"), ["10.0.0.0"]);
}

#[test]
fn freed_capacity_satisfies_waiting_services() {
    let mut waiting = svc("n", "waiting");
    waiting.created = 2;
    let mut a = alloc(
        vec![pool("p", &["10.0.0.1"])],
        vec![svc("n", "first"), waiting],
    );
    assert_eq!(cond_of(&a, "n", "waiting"), unsatisfied(reason::OUT_OF_IPS));
    assert_eq!(a.stats().services_unsatisfied, 1);
    a.apply(Event::ServiceDeleted(key("n", "first")));
    a.reconcile();
    assert_eq!(ips_of(&a, "n", "waiting"), ["10.0.0.1"]);
    assert_eq!(a.stats().services_unsatisfied, 0);
}

#[test]
fn an_address_released_by_a_change_goes_to_a_waiting_service_in_the_same_reconcile() {
    let p = selecting(pool("p", &["10.0.0.1"]), &[("net", "a")]);
    let holder = with_labels(svc("n", "holder"), &[("net", "a")]);
    let mut waiting = with_labels(svc("n", "waiting"), &[("net", "a")]);
    waiting.created = 5;
    let mut a = alloc(vec![p], vec![holder.clone(), waiting]);
    assert_eq!(cond_of(&a, "n", "waiting"), unsatisfied(reason::OUT_OF_IPS));
    // An unrelated event first: the waiting service is not retried, nothing changed for it.
    a.apply(Event::ServiceUpserted(svc("other", "x")));
    a.reconcile();
    let moved = with_labels(observed(&a, &holder), &[("net", "b")]);
    a.apply(Event::ServiceUpserted(moved));
    let d = a.reconcile();
    assert_eq!(ips_of(&a, "n", "waiting"), ["10.0.0.1"]);
    assert_eq!(d.services.len(), 2);
}

#[test]
fn a_waiting_request_sees_its_address_taken() {
    let mut p = pool("p", &["10.0.0.0/29"]);
    p.allow_first_last = false;
    let mut want = svc("n", "want");
    want.requested_ips = vec![ip("10.0.0.7")];
    let mut a = alloc(vec![p], vec![want]);
    assert!(message_of(&a, "n", "want").contains("reserved"));
    // A service LB-IPAM had satisfied with that address before the pool reserved it (a
    // restart state) takes it back: the waiting request now names the holder.
    let mut earlier = svc("n", "earlier");
    earlier.ingress_ips = vec![ip("10.0.0.7")];
    earlier.condition = Some(service_condition("True", reason::SATISFIED, String::new()));
    a.apply(Event::ServiceUpserted(earlier));
    a.reconcile();
    assert_eq!(ips_of(&a, "n", "earlier"), ["10.0.0.7"]);
    assert_eq!(
        message_of(&a, "n", "want"),
        "The IP '10.0.0.7' is already allocated to another service"
    );
}

// ---- decisions --------------------------------------------------------------------------

#[test]
fn decisions_are_only_returned_for_changes() {
    let s = svc("n", "s");
    let mut a = Allocator::new(Config::default());
    a.apply(Event::PoolUpserted(pool("p", &["10.0.0.0/24"])));
    a.apply(Event::ServiceUpserted(s.clone()));
    let d = a.reconcile();
    assert_eq!(d.services.len(), 1);
    assert_eq!(d.pools.len(), 1);
    assert_eq!(d.pools[0].conditions.len(), 6);
    assert_eq!(a.reconcile(), Decisions::default());
    // Our own writes coming back change nothing.
    a.apply(Event::ServiceUpserted(observed(&a, &s)));
    let mut p = pool("p", &["10.0.0.0/24"]);
    p.conditions = d.pools[0].conditions.clone();
    a.apply(Event::PoolUpserted(p));
    assert_eq!(a.reconcile(), Decisions::default());
    // A stale echo (our write not seen yet) repeats nothing already decided.
    a.apply(Event::ServiceUpserted(s));
    assert_eq!(
        a.reconcile().services.len(),
        1,
        "a service event resets what was last written"
    );
}

#[test]
fn failed_writes_are_returned_again() {
    let s = svc("n", "s");
    let mut a = alloc(vec![pool("p", &["10.0.0.0/24"])], vec![]);
    a.apply(Event::ServiceUpserted(s.clone()));
    let first = a.reconcile();
    assert_eq!(first.services.len(), 1);
    assert_eq!(a.reconcile(), Decisions::default());
    a.retry_service(&s.key);
    a.retry_pool("p");
    assert_eq!(a.reconcile(), first);
    let mut gone = observed(&a, &s);
    gone.load_balancer = false;
    a.apply(Event::ServiceUpserted(gone));
    let clear = a.reconcile();
    assert_eq!(
        clear.services,
        [ServiceUpdate::Clear { key: s.key.clone() }]
    );
    a.retry_clear(&s.key);
    assert_eq!(a.reconcile().services, clear.services);
    assert!(a.reconcile().services.is_empty());
}

#[test]
fn seed_manifests_get_addresses_from_the_right_ranges() {
    use crate::convert::{pool_from_crd, service_from_k8s};
    use k8s_openapi::api::core::v1::Service as K8sService;
    use l2announcer_api::ip_pool::v2alpha1;

    const POOLS: &str = include_str!("../../tests/fixtures/seed/pools.yaml");
    // The seed's Services, verbatim.
    const SERVICES: &str = include_str!("../../tests/fixtures/seed/services.yaml");
    let mut a = Allocator::new(Config::default());
    for doc in POOLS.split("\n---\n") {
        let p: v2alpha1::CiliumLoadBalancerIPPool = serde_yaml::from_str(doc).unwrap();
        a.apply(Event::PoolUpserted(pool_from_crd(&p.into())));
    }
    for doc in SERVICES.split("\n---\n") {
        let mut s: K8sService = serde_yaml::from_str(doc).unwrap();
        s.metadata.namespace = Some("default".into());
        a.apply(Event::ServiceUpserted(service_from_k8s(&s)));
    }
    a.reconcile();
    let in_range = |name: &str, net: &str| {
        let ips = ips_of(&a, "default", name);
        assert_eq!(ips.len(), 1, "{name}");
        let last: u8 = ips[0].strip_prefix(net).unwrap().parse().unwrap();
        assert!((150..=250).contains(&last), "{name}: {ips:?}");
    };
    in_range("my-service", "192.168.3.");
    in_range("api-internal", "192.168.3.");
    in_range("api-external", "192.168.4.");
}
