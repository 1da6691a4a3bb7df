output "policy_names" {
  description = "CiliumL2AnnouncementPolicy names by interface key."
  value       = { for k, m in kubectl_manifest.cilium_l2_policies : k => m.name }
}

output "pool_names" {
  description = "CiliumLoadBalancerIPPool names by interface key."
  value       = { for k, m in kubectl_manifest.cilium_ip_pools : k => m.name }
}
