# The seed's network_interfaces map (shared/seeds/cilium-l2-loadbalancer-pattern.md): one
# CiliumL2AnnouncementPolicy and one CiliumLoadBalancerIPPool per interface.
variable "network_interfaces" {
  description = "Network interfaces and their LoadBalancer address ranges, keyed by interface (e.g. eno1)."
  type = map(object({
    interface_name = string
    network_type   = string
    ip_range = object({
      start = string
      stop  = string
    })
    # Empty means all nodes.
    node_selector = map(string)
    description   = string
  }))
}

variable "api_version" {
  description = "apiVersion of the objects: cilium.io/v2alpha1 as in the seed (l2announcer serves v2 for pools too)."
  type        = string
  default     = "cilium.io/v2alpha1"
}
