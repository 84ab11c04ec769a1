locals {
  ssh_key = var.key_name == null ? "" : "-i ~/.ssh/${var.key_name}.pem "
}

output "tracker_public_ip" {
  description = "Elastic IP of the tracker instance."
  value       = aws_eip.tracker.public_ip
}

output "tracker_private_ip" {
  description = "Private IP of the tracker (what the peers dial)."
  value       = aws_instance.tracker.private_ip
}

output "peers_public_ip" {
  description = "Elastic IP of the peers instance."
  value       = aws_eip.peers.public_ip
}

output "peers_private_ip" {
  description = "Private IP of the peers instance."
  value       = aws_instance.peers.private_ip
}

output "tracker_endpoint" {
  description = "Tracker URL for clients in client_cidrs (P2P_TRACKER__ENDPOINT / --tracker)."
  value       = "${local.scheme}://${aws_eip.tracker.public_ip}:${local.tracker_port}"
}

output "peer_addresses" {
  description = "host:port of every peer, for `p2p-peer put FILE --peer ADDR`."
  value       = [for p in local.peer_ports : "${aws_eip.peers.public_ip}:${p}"]
}

output "ssh_commands" {
  description = "SSH to each instance (from admin_cidr; needs key_name)."
  value = {
    tracker = "ssh ${local.ssh_key}ubuntu@${aws_eip.tracker.public_ip}"
    peers   = "ssh ${local.ssh_key}ubuntu@${aws_eip.peers.public_ip}"
  }
}

output "cli_commands" {
  description = "Ready-to-paste client commands (p2p-peer from a release or `cargo install`, or the image). With TLS, export P2P_TLS__CA=ca.pem first; with a token, P2P_AUTH__TOKEN."
  value = {
    health = "p2p-peer health --addr ${aws_eip.tracker.public_ip}:${local.tracker_port}"
    list   = "p2p-peer --tracker ${local.scheme}://${aws_eip.tracker.public_ip}:${local.tracker_port} ls"
    search = "p2p-peer --tracker ${local.scheme}://${aws_eip.tracker.public_ip}:${local.tracker_port} search NAME"
    get    = "p2p-peer --tracker ${local.scheme}://${aws_eip.tracker.public_ip}:${local.tracker_port} get NAME -o ./NAME"
    put    = "p2p-peer put ./FILE --peer ${aws_eip.peers.public_ip}:${local.peer_port_first}"
    docker = "docker run --rm ${var.image} /usr/local/bin/p2p-peer --tracker ${local.scheme}://${aws_eip.tracker.public_ip}:${local.tracker_port} ls"
    logs   = "ssh ${local.ssh_key}ubuntu@${aws_eip.peers.public_ip} sudo docker logs -f p2p-peer-1"
  }
}

output "share_volume_id" {
  description = "EBS volume holding the peers' shared files (/srv/p2pshare); it outlives the peers instance and is protected from destroy."
  value       = aws_ebs_volume.shares.id
}
