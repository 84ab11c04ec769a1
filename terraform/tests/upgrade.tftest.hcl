# What an upgrade does, planned offline: `terraform test` with a mocked AWS provider (no API call,
# no credentials). scripts/check-deploy.sh runs it. A first run "installs" (mock apply); each later
# run plans one change against that state and asserts that the share volume keeps its id: a
# replaced volume would have an unknown id. (check-deploy runs this on a copy without
# prevent_destroy, so that the test can tear its mock state down; check_tf_upgrade.py asserts the
# real file keeps it.)

mock_provider "aws" {
  mock_resource "aws_eip" {
    defaults = { public_ip = "203.0.113.10" }
  }
  mock_resource "aws_instance" {
    defaults = { private_ip = "10.0.1.10" }
  }
  override_data {
    target = data.aws_subnets.default
    values = { ids = ["subnet-0a"] }
  }
  override_data {
    target = data.aws_subnet.selected
    values = { id = "subnet-0a", vpc_id = "vpc-0a", availability_zone = "eu-west-1a" }
  }
  override_data {
    target = data.aws_ami.ubuntu
    values = { id = "ami-0a" }
  }
  override_data {
    target = data.aws_partition.current
    values = { partition = "aws" }
  }
}

variables {
  admin_cidr = "198.51.100.7/32"
  image      = "registry.example.com/p2pshare:1.0.0"
}

run "install" {
  command = apply

  assert {
    condition     = aws_volume_attachment.shares.volume_id == aws_ebs_volume.shares.id && aws_volume_attachment.shares.instance_id == aws_instance.peers.id
    error_message = "the share volume is not attached to the peers instance"
  }
  assert {
    condition     = aws_ebs_volume.shares.encrypted && aws_ebs_volume.shares.availability_zone == "eu-west-1a"
    error_message = "the share volume must be encrypted and in the subnet's zone"
  }
  assert {
    condition     = strcontains(aws_instance.peers.user_data, aws_ebs_volume.shares.id) && strcontains(aws_instance.peers.user_data, "mount_shares")
    error_message = "the peers' cloud-init does not mount the share volume"
  }
  assert {
    condition     = length(aws_iam_role.pull) == 0 && length(aws_iam_instance_profile.pull) == 0
    error_message = "without ecr_pull the instances get no role"
  }
}

run "image_upgrade" {
  command = plan
  variables {
    image = "registry.example.com/p2pshare:1.1.0"
  }
  assert {
    condition     = aws_ebs_volume.shares.id == run.install.share_volume_id
    error_message = "an image upgrade must keep the share volume"
  }
  assert {
    condition     = strcontains(aws_instance.peers.user_data, "registry.example.com/p2pshare:1.1.0")
    error_message = "the peers' user data must name the new image"
  }
}

run "token_rotation" {
  command = plan
  variables {
    auth_token = "0123456789abcdef0123456789abcdef"
  }
  assert {
    condition     = aws_ebs_volume.shares.id == run.install.share_volume_id
    error_message = "a token rotation must keep the share volume"
  }
}

run "settings_change" {
  command = plan
  variables {
    log_level           = "debug"
    peers_per_host      = 5
    peer_min_free_space = "10%"
    instance_type       = "t3.medium"
    root_volume_size    = 30
  }
  assert {
    condition     = aws_ebs_volume.shares.id == run.install.share_volume_id
    error_message = "changing the log level, the peers or the instance must keep the share volume"
  }
}

run "share_volume_grows_in_place" {
  command = plan
  variables {
    share_volume_size = 100
  }
  assert {
    condition     = aws_ebs_volume.shares.id == run.install.share_volume_id && aws_ebs_volume.shares.size == 100
    error_message = "growing the share volume must modify it in place"
  }
}

run "ecr_pull_needs_an_ecr_image" {
  command = plan
  variables {
    ecr_pull = true
  }
  expect_failures = [aws_iam_role.pull]
}

run "ecr_pull" {
  command = plan
  variables {
    ecr_pull = true
    image    = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/p2pshare:1.1.0"
  }
  assert {
    condition     = aws_ebs_volume.shares.id == run.install.share_volume_id
    error_message = "turning ecr_pull on must keep the share volume"
  }
  assert {
    condition     = length(aws_iam_instance_profile.pull) == 1 && aws_instance.peers.iam_instance_profile == aws_iam_instance_profile.pull[0].name && aws_instance.tracker.iam_instance_profile == aws_iam_instance_profile.pull[0].name
    error_message = "with ecr_pull both instances get the pull role"
  }
  assert {
    condition     = jsondecode(aws_iam_role_policy.pull[0].policy).Statement[1].Resource == "arn:aws:ecr:eu-west-1:123456789012:repository/team/p2pshare" && jsondecode(aws_iam_role_policy.pull[0].policy).Statement[1].Action == ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    error_message = "the role may read exactly the image's repository"
  }
  assert {
    condition     = local.ecr.repository == "team/p2pshare" && local.ecr.account == "123456789012" && local.ecr.region == "eu-west-1"
    error_message = "the ECR repository is not parsed from the image"
  }
  assert {
    condition     = strcontains(aws_instance.peers.user_data, "ecr-login") && strcontains(aws_instance.tracker.user_data, "123456789012.dkr.ecr.eu-west-1.amazonaws.com")
    error_message = "the hosts must log Docker in through the ECR credential helper"
  }
}
