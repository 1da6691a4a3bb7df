terraform {
  required_version = ">= 1.3"
  required_providers {
    # The provider the seed uses for its manifests (kubectl_manifest).
    kubectl = {
      source  = "alekc/kubectl"
      version = ">= 2.0"
    }
  }
}
