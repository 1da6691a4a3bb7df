# The seed's L2 announcement pattern as a module: for each entry of var.network_interfaces,
# an L2 announcement policy (announce Services labelled with the interface, from the selected
# nodes, on that interface) and an IP pool (addresses for the same Services). Works unchanged
# with Cilium's L2 announcements and with l2announcer.

resource "kubectl_manifest" "cilium_l2_policies" {
  for_each = var.network_interfaces

  yaml_body = yamlencode({
    apiVersion = var.api_version
    kind       = "CiliumL2AnnouncementPolicy"
    metadata = {
      name = "l2-policy-${each.key}"
      labels = {
        "app.kubernetes.io/managed-by"  = "terraform"
        "app.kubernetes.io/component"   = "cilium-l2-policy"
        "network.example.com/interface" = each.key
        "network.example.com/type"      = each.value.network_type
      }
    }
    spec = {
      serviceSelector = {
        matchLabels = {
          "network.example.com/interface" = each.key
        }
      }
      nodeSelector = {
        matchLabels = each.value.node_selector
      }
      interfaces      = [each.value.interface_name]
      externalIPs     = true
      loadBalancerIPs = true
    }
  })
}

resource "kubectl_manifest" "cilium_ip_pools" {
  for_each = var.network_interfaces

  yaml_body = yamlencode({
    apiVersion = var.api_version
    kind       = "CiliumLoadBalancerIPPool"
    metadata = {
      name = "ip-pool-${each.key}"
      labels = {
        "app.kubernetes.io/managed-by"  = "terraform"
        "app.kubernetes.io/component"   = "cilium-ip-pool"
        "network.example.com/interface" = each.key
        "network.example.com/type"      = each.value.network_type
      }
    }
    spec = {
      blocks = [
        {
          start = each.value.ip_range.start
          stop  = each.value.ip_range.stop
        }
      ]
      serviceSelector = {
        matchLabels = {
          "network.example.com/interface" = each.key
        }
      }
    }
  })
}
