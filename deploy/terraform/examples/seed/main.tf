# The seed's values, verbatim. Install l2announcer first (its CRDs, or Cilium's), then
#   terraform init && terraform apply
locals {
  network_interfaces = {
    eno1 = {
      interface_name = "eno1"
      network_type   = "internal"
      ip_range = {
        start = "192.168.3.150"
        stop  = "192.168.3.250"
      }
      # Empty node selector means all nodes
      node_selector = {}
      description   = "Internal network for cluster services"
    }
    eno2 = {
      interface_name = "eno2"
      network_type   = "public-api"
      ip_range = {
        start = "192.168.4.150"
        stop  = "192.168.4.250"
      }
      # Restrict to control plane nodes for security
      node_selector = {
        "node.kubernetes.io/control-plane" = ""
      }
      description = "Public API network for external services"
    }
  }
}

module "l2_announcements" {
  source             = "../.."
  network_interfaces = local.network_interfaces
}
