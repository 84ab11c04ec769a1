terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # Major version 6 only; `terraform init` records the exact build in .terraform.lock.hcl
      # (commit that file).
      version = "~> 6.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ Project = "p2pshare", ManagedBy = "terraform" }, var.tags)
  }
}
