variable "region" {
  description = "AWS region to deploy into, e.g. eu-west-1."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like eu-west-1 or us-gov-west-1."
  }
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "p2pshare"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "instance_type" {
  description = "EC2 instance type of both instances (x86_64: the image is built for amd64)."
  type        = string
  default     = "t3.small"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*[0-9][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type)) && !can(regex("^[a-z0-9-]*g[a-z-]*\\.", var.instance_type))
    error_message = "instance_type must be an x86_64 type such as t3.small (no Graviton 'g' types)."
  }
}

variable "key_name" {
  description = "Existing EC2 key pair for SSH as 'ubuntu'; null launches without a key (use SSM or none)."
  type        = string
  default     = null

  validation {
    condition     = var.key_name == null || length(coalesce(var.key_name, "x")) <= 255
    error_message = "key_name must be at most 255 characters."
  }
}

variable "admin_cidr" {
  description = "The only CIDR allowed to SSH (port 22) to both instances, e.g. 198.51.100.7/32."
  type        = string

  validation {
    condition     = can(cidrhost(var.admin_cidr, 0)) && !contains(["0.0.0.0/0", "::/0"], var.admin_cidr)
    error_message = "admin_cidr must be a valid CIDR and not the whole internet."
  }
}

variable "client_cidrs" {
  description = "CIDRs of the users' machines, allowed to the tracker (50051) and the peers (5000-5002)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.client_cidrs : can(cidrhost(c, 0))])
    error_message = "Every client_cidrs entry must be a valid CIDR."
  }
}

variable "ecr_pull" {
  description = "The image is in a private Amazon ECR repository: give both instances a role that may pull exactly that repository (read-only) and log Docker in with the ECR credential helper. Needs image = \"ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG\" (checked at plan). Other private registries: not supported (the hosts pull anonymously)."
  type        = bool
  default     = false
}

variable "image" {
  # No default: no registry publishes the image. Build and push it (scripts/image.sh build --full;
  # scripts/image.sh push REGISTRY/p2pshare:TAG) to a registry the instances can pull from.
  description = "p2pshare container image (both binaries) as pushed by scripts/image.sh push, pinned by tag or digest."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/:-]*(@sha256:[a-f0-9]{64}|:[A-Za-z0-9._-]+)$", var.image)) && !endswith(var.image, ":latest")
    error_message = "image must carry an explicit tag (not latest) or an @sha256 digest."
  }
}

variable "peers_per_host" {
  description = "Peers on the peers instance: ports 5000 .. 5000+N-1 (the original layout: 3, 5000-5002)."
  type        = number
  default     = 3

  validation {
    condition     = var.peers_per_host >= 1 && var.peers_per_host <= 10 && floor(var.peers_per_host) == var.peers_per_host
    error_message = "peers_per_host must be a whole number from 1 to 10."
  }
}

variable "advertise_public_ip" {
  description = "Peers advertise the peers instance's Elastic IP (reachable by client_cidrs) rather than its private IP (VPC-only clients)."
  type        = bool
  default     = true
}

variable "subnet_id" {
  description = "Subnet (with a route to an internet gateway) for both instances; null picks a subnet of the default VPC."
  type        = string
  default     = null
}

variable "root_volume_size" {
  description = "Root volume size in GiB (encrypted gp3) of each instance: the OS and Docker's images. Deleted with its instance; the peers' shared files are on the share volume (share_volume_size)."
  type        = number
  default     = 20

  validation {
    condition     = var.root_volume_size >= 8 && var.root_volume_size <= 16384
    error_message = "root_volume_size must be between 8 and 16384 GiB."
  }
}

variable "share_volume_size" {
  description = "Size in GiB of the peers' share volume (encrypted gp3, mounted at /srv/p2pshare): every peer's shared files and partial downloads. It outlives the peers instance (image upgrades, token rotation) and is protected from destroy. Growing it is done in place (then resize2fs on the host); shrinking is refused."
  type        = number
  default     = 20

  validation {
    condition     = var.share_volume_size >= 1 && var.share_volume_size <= 16384 && floor(var.share_volume_size) == var.share_volume_size
    error_message = "share_volume_size must be a whole number of GiB from 1 to 16384."
  }
}

variable "peer_min_free_space" {
  description = "Free space each peer's downloads leave on the share volume (P2P_TRANSFER__MIN_FREE_SPACE): bytes with a unit (\"1GiB\") or a whole percentage (\"10%\"). The peers of one instance share that volume."
  type        = string
  default     = "1GiB"

  validation {
    condition     = can(regex("^([0-9]+ ?(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)?|([0-9]|[1-9][0-9]|100)%)$", var.peer_min_free_space))
    error_message = "peer_min_free_space must be a byte count with an optional unit (e.g. \"1GiB\") or a whole percentage from 0% to 100%."
  }
}

variable "peer_max_concurrent_downloads" {
  description = "Downloads each peer runs at once; more are refused with HTTP 507 (P2P_TRANSFER__MAX_CONCURRENT_DOWNLOADS)."
  type        = number
  default     = 8

  validation {
    condition     = var.peer_max_concurrent_downloads >= 1 && var.peer_max_concurrent_downloads <= 1024 && floor(var.peer_max_concurrent_downloads) == var.peer_max_concurrent_downloads
    error_message = "peer_max_concurrent_downloads must be a whole number from 1 to 1024."
  }
}

variable "peer_partial_ttl" {
  description = "Partial downloads untouched this long are removed by their peer (P2P_TRANSFER__PARTIAL_TTL), e.g. \"24h\" or \"90m\"."
  type        = string
  default     = "24h"

  validation {
    condition     = can(regex("^[0-9]+(s|m|h|d)$", var.peer_partial_ttl))
    error_message = "peer_partial_ttl must be a whole number followed by s, m, h or d, e.g. \"24h\"."
  }
}

variable "log_level" {
  description = "Log filter of both services (P2P_TELEMETRY__LOG_LEVEL)."
  type        = string
  default     = "info"
}

variable "auth_token" {
  description = "Join token every RPC and transfer must carry ([auth] token_file); empty: auth off. Stored in the Terraform state and the instances' user data: protect both."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.auth_token == "" || can(regex("^[!-~]{16,}$", var.auth_token))
    error_message = "auth_token must be empty or at least 16 printable ASCII characters without spaces."
  }
}

variable "tls_ca_pem" {
  description = "PEM CA bundle all processes trust. Set together with tls_cert_pem and tls_key_pem to turn TLS on for the tracker's gRPC and the peers' HTTP (clients then use https:// and this CA)."
  type        = string
  default     = ""

  validation {
    condition     = var.tls_ca_pem == "" || strcontains(var.tls_ca_pem, "-----BEGIN CERTIFICATE-----")
    error_message = "tls_ca_pem must be empty or PEM certificates."
  }
}

variable "tls_cert_pem" {
  description = "PEM certificate chain used by the tracker and the peers. Its SANs must cover 127.0.0.1 (container health checks), tracker_private_ip, the tracker's public address clients use, and the address peers advertise (peers_advertise_host, or the private IP)."
  type        = string
  default     = ""

  validation {
    condition     = (var.tls_cert_pem == "") == (var.tls_ca_pem == "")
    error_message = "tls_ca_pem, tls_cert_pem and tls_key_pem are set together (TLS on) or not at all."
  }
  validation {
    condition     = var.tls_cert_pem == "" || var.tracker_private_ip != ""
    error_message = "With TLS, set tracker_private_ip: peers dial the tracker at that address, so the certificate must name it."
  }
}

variable "tls_key_pem" {
  description = "PEM private key of tls_cert_pem. Stored in the Terraform state and the instances' user data: protect both."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = (var.tls_key_pem == "") == (var.tls_cert_pem == "")
    error_message = "tls_cert_pem and tls_key_pem are set together."
  }
}

variable "tracker_private_ip" {
  description = "Fixed private IPv4 of the tracker instance inside the subnet (empty: AWS picks). Needed with TLS, so the certificate can name it before apply."
  type        = string
  default     = ""

  validation {
    condition     = var.tracker_private_ip == "" || can(cidrhost("${var.tracker_private_ip}/32", 0))
    error_message = "tracker_private_ip must be empty or an IPv4 address."
  }
}

variable "peers_advertise_host" {
  description = "Host name or IP the peers advertise to others (empty: the peers' Elastic IP with advertise_public_ip, else their private IP). With TLS, a DNS name that the certificate covers."
  type        = string
  default     = ""

  validation {
    condition     = var.peers_advertise_host == "" || can(regex("^[A-Za-z0-9.-]{1,253}$", var.peers_advertise_host))
    error_message = "peers_advertise_host must be empty, a DNS name or an IPv4 address."
  }
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}
