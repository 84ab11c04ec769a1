# p2pshare on two EC2 instances, the original layout: the tracker (gRPC 50051) on one, N peers
# (HTTP 5000..5000+N-1, default 5000-5002) on the other, all as containers of one image.
#
# Inbound traffic is exactly: 50051 to the tracker from the peers and client_cidrs; the peer
# ports to the peers from the peers and client_cidrs; 22 to both from admin_cidr.

locals {
  # TLS material written to /etc/p2pshare/tls on both instances (empty map: TLS off).
  tls_files = var.tls_cert_pem == "" ? {} : {
    "ca.pem"   = var.tls_ca_pem
    "cert.pem" = var.tls_cert_pem
    "key.pem"  = var.tls_key_pem
  }
  scheme     = var.tls_cert_pem == "" ? "http" : "https"
  peer_ports = [for i in range(var.peers_per_host) : local.peer_port_first + i]
  # The tracker's port (config/tracker.toml [server] listen) and the first peer port
  # (config/peer.toml [peer] listen); scripts/check_ports_agree.py asserts they agree.
  tracker_port    = 50051
  peer_port_first = 5000
  peer_port_last  = local.peer_port_first + var.peers_per_host - 1

  subnet_id = var.subnet_id != null ? var.subnet_id : sort(data.aws_subnets.default[0].ids)[0]

  # An image in Amazon ECR ("ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG" or "@sha256:..."),
  # split into its parts; null for any other registry. With ecr_pull the instances get a role
  # that may read exactly that repository.
  ecr = try(regex("^(?P<registry>(?P<account>[0-9]{12})\\.dkr\\.ecr\\.(?P<region>[a-z0-9-]+)\\.amazonaws\\.com(?:\\.cn)?)/(?P<repository>[a-z0-9._/-]+?)(?P<ref>:[A-Za-z0-9._-]+|@sha256:[a-f0-9]{64})$", var.image), null)
  # The registry the hosts log in to through the ECR credential helper ("": plain docker pull).
  ecr_registry     = var.ecr_pull && local.ecr != null ? local.ecr.registry : ""
  instance_profile = var.ecr_pull ? aws_iam_instance_profile.pull[0].name : null
}

# --- where: the given subnet, or one of the default VPC -------------------------------------
# Looked up only without var.subnet_id, so accounts without a default VPC work too.
data "aws_vpc" "default" {
  count   = var.subnet_id == null ? 1 : 0
  default = true
}

data "aws_subnets" "default" {
  count = var.subnet_id == null ? 1 : 0
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default[0].id]
  }
  filter {
    name   = "default-for-az"
    values = ["true"]
  }
}

data "aws_subnet" "selected" {
  id = local.subnet_id
}

# --- what: the latest Ubuntu 24.04 LTS (amd64) from Canonical ---------------------------------
data "aws_ami" "ubuntu" {
  most_recent = true
  owners      = ["099720109477"] # Canonical

  filter {
    name   = "name"
    values = ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"]
  }
  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
}

# --- addresses: Elastic IPs, known before boot (the peers advertise theirs) ---------------------
resource "aws_eip" "tracker" {
  domain = "vpc"
  tags   = { Name = "${var.name}-tracker" }
}

resource "aws_eip" "peers" {
  domain = "vpc"
  tags   = { Name = "${var.name}-peers" }
}

resource "aws_eip_association" "tracker" {
  instance_id   = aws_instance.tracker.id
  allocation_id = aws_eip.tracker.id
}

resource "aws_eip_association" "peers" {
  instance_id   = aws_instance.peers.id
  allocation_id = aws_eip.peers.id
}

# --- security groups: rules are separate resources so the two groups can reference each other --
resource "aws_security_group" "tracker" {
  name        = "${var.name}-tracker"
  description = "p2pshare tracker: gRPC 50051 from peers and clients, SSH from admin"
  vpc_id      = data.aws_subnet.selected.vpc_id
  tags        = { Name = "${var.name}-tracker" }
}

resource "aws_security_group" "peers" {
  name        = "${var.name}-peers"
  description = "p2pshare peers: HTTP 5000-500N from peers and clients, SSH from admin"
  vpc_id      = data.aws_subnet.selected.vpc_id
  tags        = { Name = "${var.name}-peers" }
}

resource "aws_vpc_security_group_ingress_rule" "tracker_from_peers" {
  security_group_id            = aws_security_group.tracker.id
  description                  = "tracker gRPC from the peers"
  ip_protocol                  = "tcp"
  from_port                    = local.tracker_port
  to_port                      = local.tracker_port
  referenced_security_group_id = aws_security_group.peers.id
}

resource "aws_vpc_security_group_ingress_rule" "tracker_from_clients" {
  for_each          = toset(var.client_cidrs)
  security_group_id = aws_security_group.tracker.id
  description       = "tracker gRPC from clients"
  ip_protocol       = "tcp"
  from_port         = local.tracker_port
  to_port           = local.tracker_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "peers_from_peers" {
  security_group_id            = aws_security_group.peers.id
  description                  = "peer HTTP between peers (private addresses)"
  ip_protocol                  = "tcp"
  from_port                    = local.peer_port_first
  to_port                      = local.peer_port_last
  referenced_security_group_id = aws_security_group.peers.id
}

# Peers that advertise the public address fetch from each other through it: allow that address.
resource "aws_vpc_security_group_ingress_rule" "peers_from_own_eip" {
  count             = var.advertise_public_ip ? 1 : 0
  security_group_id = aws_security_group.peers.id
  description       = "peer HTTP between peers (advertised Elastic IP)"
  ip_protocol       = "tcp"
  from_port         = local.peer_port_first
  to_port           = local.peer_port_last
  cidr_ipv4         = "${aws_eip.peers.public_ip}/32"
}

resource "aws_vpc_security_group_ingress_rule" "peers_from_clients" {
  for_each          = toset(var.client_cidrs)
  security_group_id = aws_security_group.peers.id
  description       = "peer HTTP from clients"
  ip_protocol       = "tcp"
  from_port         = local.peer_port_first
  to_port           = local.peer_port_last
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each          = { tracker = aws_security_group.tracker.id, peers = aws_security_group.peers.id }
  security_group_id = each.value
  description       = "SSH from the admin CIDR only"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = var.admin_cidr
}

# Outbound: package and image downloads (HTTPS and the Ubuntu mirrors over HTTP), DNS, NTP and the
# peers' calls to the tracker and to each other.
resource "aws_vpc_security_group_egress_rule" "all" {
  #checkov:skip=CKV_AWS_382:Egress must reach Docker registries, Ubuntu mirrors and peers on client-chosen addresses; inbound is what is restricted.
  for_each          = { tracker = aws_security_group.tracker.id, peers = aws_security_group.peers.id }
  security_group_id = each.value
  description       = "all outbound"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

# --- private registry: an instance role that may pull the image from Amazon ECR (ecr_pull) ------
data "aws_partition" "current" {}

resource "aws_iam_role" "pull" {
  count       = var.ecr_pull ? 1 : 0
  name        = "${var.name}-pull"
  description = "p2pshare instances: pull ${var.image} from Amazon ECR"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "ec2.amazonaws.com" } }]
  })

  lifecycle {
    precondition {
      condition     = local.ecr != null
      error_message = "ecr_pull = true needs an image in Amazon ECR: ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG (or @sha256:DIGEST)."
    }
  }
}

# Read-only and only the image's repository; GetAuthorizationToken has no resource to scope to.
resource "aws_iam_role_policy" "pull" {
  count = var.ecr_pull && local.ecr != null ? 1 : 0
  name  = "ecr-pull"
  role  = aws_iam_role.pull[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      { Sid = "EcrLogin", Effect = "Allow", Action = "ecr:GetAuthorizationToken", Resource = "*" },
      {
        Sid      = "PullTheImage"
        Effect   = "Allow"
        Action   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
        Resource = "arn:${data.aws_partition.current.partition}:ecr:${local.ecr.region}:${local.ecr.account}:repository/${local.ecr.repository}"
      },
    ]
  })
}

resource "aws_iam_instance_profile" "pull" {
  count = var.ecr_pull ? 1 : 0
  name  = "${var.name}-pull"
  role  = aws_iam_role.pull[0].name
}

# --- the peers' shared files: a volume of their own that outlives the peers instance -------------
# An instance is replaced when its user data changes (image, auth_token, log_level, TLS, the peer
# settings): that replaces aws_instance.peers and this attachment, never the volume, whose
# arguments depend only on the subnet's zone and share_volume_size (scripts/check_tf_upgrade.py
# asserts it). The new instance mounts it at /srv/p2pshare (formatted only when blank) and the
# peers start on the files they had. prevent_destroy: `terraform destroy` and any change that
# would replace it (another availability zone) stop with an error instead of deleting the share
# (README, "Deploy on AWS", says how to remove it on purpose).
resource "aws_ebs_volume" "shares" {
  #checkov:skip=CKV_AWS_189:Encrypted with the account's EBS key, like the root volumes; a customer-managed KMS key is an account policy this module does not impose.
  #checkov:skip=CKV2_AWS_9:Backups (AWS Backup, snapshots) are the operator's policy; the volume is kept across upgrades and protected from destroy.
  availability_zone = data.aws_subnet.selected.availability_zone
  size              = var.share_volume_size
  type              = "gp3"
  encrypted         = true
  final_snapshot    = true # if it is ever deleted on purpose, a snapshot is kept

  tags = { Name = "${var.name}-shares", Role = "shares" }

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_volume_attachment" "shares" {
  # /dev/sdf: /dev/xvdf on Xen types; on Nitro types (t3) an NVMe disk whose serial is the volume
  # id, which the peers' cloud-init looks for.
  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.shares.id
  instance_id = aws_instance.peers.id
  # A replaced instance is stopped first, so the file system is unmounted cleanly.
  stop_instance_before_detaching = true
}

# --- instances ----------------------------------------------------------------------------------
resource "aws_instance" "tracker" {
  #checkov:skip=CKV_AWS_88:The tracker serves clients in client_cidrs over the internet; its security group admits only 50051 and SSH from admin_cidr.
  #checkov:skip=CKV2_AWS_41:A role (ECR read of the image) is attached only with ecr_pull; otherwise the instance calls no AWS API and gets none (least privilege).
  ami                         = data.aws_ami.ubuntu.id
  instance_type               = var.instance_type
  subnet_id                   = local.subnet_id
  key_name                    = var.key_name
  iam_instance_profile        = local.instance_profile
  vpc_security_group_ids      = [aws_security_group.tracker.id]
  associate_public_ip_address = true
  monitoring                  = true
  ebs_optimized               = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1          # containers cannot reach the metadata service
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    delete_on_termination = true
  }

  user_data_replace_on_change = true
  private_ip                  = var.tracker_private_ip != "" ? var.tracker_private_ip : null
  user_data = templatefile("${path.module}/templates/tracker.cloud-init.yaml.tftpl", {
    image        = var.image
    tracker_port = local.tracker_port
    log_level    = var.log_level
    auth_token   = var.auth_token
    tls          = local.tls_files
    ecr_registry = local.ecr_registry
  })

  tags = { Name = "${var.name}-tracker", Role = "tracker" }

  lifecycle {
    ignore_changes = [ami] # a newer Ubuntu AMI must not replace a running tracker
  }
}

resource "aws_instance" "peers" {
  #checkov:skip=CKV_AWS_88:Peers serve downloads to clients in client_cidrs over the internet; the security group admits only the peer ports and SSH from admin_cidr.
  #checkov:skip=CKV2_AWS_41:A role (ECR read of the image) is attached only with ecr_pull; otherwise the instance calls no AWS API and gets none (least privilege).
  ami                         = data.aws_ami.ubuntu.id
  instance_type               = var.instance_type
  subnet_id                   = local.subnet_id
  key_name                    = var.key_name
  iam_instance_profile        = local.instance_profile
  vpc_security_group_ids      = [aws_security_group.peers.id]
  associate_public_ip_address = true
  monitoring                  = true
  ebs_optimized               = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  # The OS and Docker's images only: the shared files live on aws_ebs_volume.shares.
  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    delete_on_termination = true
  }

  # A new image, token, log level or peer setting boots a new instance (cloud-init runs once per
  # instance); the share volume moves over to it.
  user_data_replace_on_change = true
  user_data = templatefile("${path.module}/templates/peers.cloud-init.yaml.tftpl", {
    image            = var.image
    peer_ports       = local.peer_ports
    tracker_endpoint = "${local.scheme}://${aws_instance.tracker.private_ip}:${local.tracker_port}"
    # Empty: each peer derives its address from the instance's private IP (IMDSv2 at boot).
    advertise_host = (var.peers_advertise_host != "" ? var.peers_advertise_host :
    var.advertise_public_ip ? aws_eip.peers.public_ip : "")
    log_level                = var.log_level
    auth_token               = var.auth_token
    tls                      = local.tls_files
    min_free_space           = var.peer_min_free_space
    max_concurrent_downloads = var.peer_max_concurrent_downloads
    partial_ttl              = var.peer_partial_ttl
    share_volume_id          = aws_ebs_volume.shares.id
    ecr_registry             = local.ecr_registry
  })

  tags = { Name = "${var.name}-peers", Role = "peers" }

  lifecycle {
    ignore_changes = [ami]
  }
}
