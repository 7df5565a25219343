variable "name" {
  description = "Prefix of every resource name, e.g. \"tms-production\"."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "Use 3-31 lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes them."
  type        = map(string)
  default     = {}
}

variable "vpc_id" {
  description = "VPC holding the cluster, the database and Redis."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "A VPC id looks like vpc-0123abcd."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets (at least two, in different availability zones) for PostgreSQL, Redis and the load balancer."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "Multi-AZ PostgreSQL and Redis need subnets in at least two availability zones."
  }
}

variable "public_subnet_ids" {
  description = "Public subnets (at least two) for the partner load balancer that carriers reach."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2
    error_message = "An application load balancer needs subnets in at least two availability zones."
  }
}

variable "app_security_group_id" {
  description = "Security group of the cluster's nodes or pods running the console: the only source allowed to reach PostgreSQL and Redis."
  type        = string

  validation {
    condition     = can(regex("^sg-[0-9a-f]+$", var.app_security_group_id))
    error_message = "A security group id looks like sg-0123abcd."
  }
}

variable "postgres_version" {
  description = "PostgreSQL major.minor engine version for RDS (the console supports 14 and later)."
  type        = string
  default     = "16.4"

  validation {
    condition     = can(regex("^(1[4-9]|[2-9][0-9])\\.[0-9]+$", var.postgres_version))
    error_message = "Use a PostgreSQL 14 or later version such as 16.4."
  }
}

variable "postgres_instance_class" {
  description = "RDS instance class of the PostgreSQL primary (and its Multi-AZ standby)."
  type        = string
  default     = "db.r6g.large"

  validation {
    condition     = startswith(var.postgres_instance_class, "db.")
    error_message = "An RDS instance class starts with \"db.\"."
  }
}

variable "postgres_storage_gb" {
  description = "Allocated storage in GiB; storage autoscaling may grow it up to four times this."
  type        = number
  default     = 100

  validation {
    condition     = var.postgres_storage_gb >= 20 && var.postgres_storage_gb <= 16384
    error_message = "RDS gp3 storage is between 20 and 16384 GiB."
  }
}

variable "postgres_backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery window)."
  type        = number
  default     = 14

  validation {
    condition     = var.postgres_backup_retention_days >= 7 && var.postgres_backup_retention_days <= 35
    error_message = "Keep between 7 and 35 days of backups."
  }
}

variable "postgres_database" {
  description = "Name of the console's database (DATABASE_URL path)."
  type        = string
  default     = "tms"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.postgres_database))
    error_message = "Use lower-case letters, digits and underscores, starting with a letter."
  }
}

variable "redis_node_type" {
  description = "ElastiCache node type of the Redis primary and its replica."
  type        = string
  default     = "cache.r7g.large"

  validation {
    condition     = startswith(var.redis_node_type, "cache.")
    error_message = "An ElastiCache node type starts with \"cache.\"."
  }
}

variable "redis_engine_version" {
  description = "Redis engine version (the console needs 6.2 or later for AUTH with TLS and ACLs)."
  type        = string
  default     = "7.1"

  validation {
    condition     = can(regex("^(6\\.2|[7-9]\\.[0-9]+)$", var.redis_engine_version))
    error_message = "Use Redis 6.2 or later, e.g. 7.1."
  }
}

variable "partner_domain" {
  description = "Host name carriers call with their client certificates (the partner API and webhooks), e.g. partners.example.com."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9-]+\\.)+[a-z]{2,}$", var.partner_domain))
    error_message = "Give a fully qualified lower-case host name."
  }
}

variable "partner_certificate_arn" {
  description = "ACM certificate (server side) for partner_domain."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:", var.partner_certificate_arn))
    error_message = "Give the ARN of an ACM certificate."
  }
}

variable "carrier_ca_bundle_pem" {
  description = "PEM bundle of the CA certificates that issue carriers' client certificates: the mTLS trust store."
  type        = string

  validation {
    condition     = can(regex("-----BEGIN CERTIFICATE-----", var.carrier_ca_bundle_pem))
    error_message = "Give at least one PEM-encoded CA certificate."
  }
}

variable "partner_allowed_cidrs" {
  description = "Networks allowed to reach the partner load balancer on 443 (carriers' egress ranges; 0.0.0.0/0 relies on mTLS alone)."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for cidr in var.partner_allowed_cidrs : can(cidrhost(cidr, 0))])
    error_message = "Every entry must be a CIDR block."
  }
}

variable "partner_target_port" {
  description = "Port of the partner-ingest pods (gunicorn) the load balancer forwards to."
  type        = number
  default     = 8000

  validation {
    condition     = var.partner_target_port > 0 && var.partner_target_port < 65536
    error_message = "A TCP port is between 1 and 65535."
  }
}

variable "access_log_bucket" {
  description = "Existing S3 bucket receiving the load balancer's and the trust-store bucket's access logs."
  type        = string

  validation {
    condition     = length(var.access_log_bucket) >= 3
    error_message = "Give the name of an S3 bucket."
  }
}

variable "deletion_protection" {
  description = "Protect the database and the load balancer from deletion (turn off only to tear down a test environment)."
  type        = bool
  default     = true
}
