# The partner edge: carriers call partner_domain with their client certificates. The load balancer
# verifies each certificate against the carriers' CAs (trust store in S3) and forwards the verified
# leaf certificate, URL-encoded, in X-Amzn-Mtls-Clientcert-Leaf to the partner-ingest pods.

resource "aws_s3_bucket" "truststore" {
  #checkov:skip=CKV_AWS_144:The trust store is a few CA certificates re-uploaded from Terraform; a replica adds nothing.
  #checkov:skip=CKV2_AWS_62:Nothing consumes events of this bucket; the load balancer reads the object on trust-store updates.
  bucket = "${var.name}-mtls-truststore-${data.aws_caller_identity.current.account_id}"
  tags   = local.tags
}

resource "aws_s3_bucket_public_access_block" "truststore" {
  bucket                  = aws_s3_bucket.truststore.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "truststore" {
  bucket = aws_s3_bucket.truststore.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "truststore" {
  bucket = aws_s3_bucket.truststore.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.data.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "truststore" {
  bucket = aws_s3_bucket.truststore.id

  rule {
    id     = "old-bundles"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = 90
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_logging" "truststore" {
  bucket        = aws_s3_bucket.truststore.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3/${var.name}-mtls-truststore/"
}

resource "aws_s3_object" "carrier_ca_bundle" {
  bucket     = aws_s3_bucket.truststore.id
  key        = "carrier-ca-bundle.pem"
  content    = var.carrier_ca_bundle_pem
  kms_key_id = aws_kms_key.data.arn
  tags       = local.tags
}

resource "aws_lb_trust_store" "carriers" {
  name                             = "${var.name}-carriers"
  ca_certificates_bundle_s3_bucket = aws_s3_bucket.truststore.id
  ca_certificates_bundle_s3_key    = aws_s3_object.carrier_ca_bundle.key
  # A new bundle (a carrier's new CA) must be a new object version for the load balancer to read it.
  ca_certificates_bundle_s3_object_version = aws_s3_object.carrier_ca_bundle.version_id
  tags                                     = local.tags
}

resource "aws_security_group" "partner_lb" {
  name        = "${var.name}-partner-lb"
  description = "Partner load balancer: HTTPS with client certificates in, partner-ingest out"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "partner_https" {
  for_each          = toset(var.partner_allowed_cidrs)
  security_group_id = aws_security_group.partner_lb.id
  description       = "HTTPS (mTLS) from carriers"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "partner_to_app" {
  security_group_id            = aws_security_group.partner_lb.id
  description                  = "To the partner-ingest pods"
  referenced_security_group_id = var.app_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = var.partner_target_port
  to_port                      = var.partner_target_port
}

resource "aws_lb" "partner" {
  #checkov:skip=CKV2_AWS_28:Carriers authenticate with client certificates and OAuth; a WAF web ACL is attached outside this module where one exists.
  name                       = "${var.name}-partner"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = var.public_subnet_ids
  security_groups            = [aws_security_group.partner_lb.id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  idle_timeout               = 60

  access_logs {
    bucket  = var.access_log_bucket
    prefix  = "alb/${var.name}-partner"
    enabled = true
  }

  tags = local.tags
}

resource "aws_lb_target_group" "partner_ingest" {
  name        = "${var.name}-partner-ingest"
  target_type = "ip"
  vpc_id      = var.vpc_id
  protocol    = "HTTP"
  port        = var.partner_target_port

  health_check {
    path                = "/readyz"
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = local.tags
}

resource "aws_lb_listener" "partner_https" {
  load_balancer_arn = aws_lb.partner.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.partner_certificate_arn

  mutual_authentication {
    mode                             = "verify"
    trust_store_arn                  = aws_lb_trust_store.carriers.arn
    ignore_client_certificate_expiry = false
  }

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.partner_ingest.arn
  }

  tags = local.tags
}
