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

# --- instances ----------------------------------------------------------------------------------
resource "aws_instance" "tracker" {
  #checkov:skip=CKV_AWS_88:The tracker serves clients in client_cidrs over the internet; its security group admits only 50051 and SSH from admin_cidr.
  #checkov:skip=CKV2_AWS_41:The instance calls no AWS API, so it gets no IAM role (least privilege).
  ami                         = data.aws_ami.ubuntu.id
  instance_type               = var.instance_type
  subnet_id                   = local.subnet_id
  key_name                    = var.key_name
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
  })

  tags = { Name = "${var.name}-tracker", Role = "tracker" }

  lifecycle {
    ignore_changes = [ami] # a newer Ubuntu AMI must not replace a running tracker
  }
}

resource "aws_instance" "peers" {
  #checkov:skip=CKV_AWS_88:Peers serve downloads to clients in client_cidrs over the internet; the security group admits only the peer ports and SSH from admin_cidr.
  #checkov:skip=CKV2_AWS_41:The instance calls no AWS API, so it gets no IAM role (least privilege).
  ami                         = data.aws_ami.ubuntu.id
  instance_type               = var.instance_type
  subnet_id                   = local.subnet_id
  key_name                    = var.key_name
  vpc_security_group_ids      = [aws_security_group.peers.id]
  associate_public_ip_address = true
  monitoring                  = true
  ebs_optimized               = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    delete_on_termination = true
  }

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
  })

  tags = { Name = "${var.name}-peers", Role = "peers" }

  lifecycle {
    ignore_changes = [ami]
  }
}
