output "postgres_endpoint" {
  description = "host:port of the PostgreSQL primary (DATABASE_URL host; add ?sslmode=verify-full with the RDS CA bundle)."
  value       = aws_db_instance.postgres.endpoint
}

output "postgres_database" {
  description = "Name of the console's database."
  value       = aws_db_instance.postgres.db_name
}

output "postgres_master_secret_arn" {
  description = "Secrets Manager secret holding the PostgreSQL master user and password (rotated by RDS); reference it from External Secrets."
  value       = aws_db_instance.postgres.master_user_secret[0].secret_arn
}

output "redis_primary_endpoint" {
  description = "Primary endpoint of Redis; REDIS_URL is rediss://:<token>@<this>:6379/0 (TLS)."
  value       = aws_elasticache_replication_group.redis.primary_endpoint_address
}

output "redis_auth_secret_arn" {
  description = "Secrets Manager secret holding the Redis AUTH token (the REDIS_URL password)."
  value       = aws_secretsmanager_secret.redis.arn
}

output "partner_lb_dns_name" {
  description = "DNS name of the partner load balancer: point partner_domain at it (alias or CNAME)."
  value       = aws_lb.partner.dns_name
}

output "partner_lb_zone_id" {
  description = "Hosted zone of the partner load balancer, for a Route 53 alias record."
  value       = aws_lb.partner.zone_id
}

output "partner_target_group_arn" {
  description = "Target group the partner-ingest pods register in (AWS Load Balancer Controller TargetGroupBinding)."
  value       = aws_lb_target_group.partner_ingest.arn
}

output "partner_lb_security_group_id" {
  description = "Security group of the partner load balancer: allow it to the partner-ingest pods' port."
  value       = aws_security_group.partner_lb.id
}

output "kms_key_arn" {
  description = "KMS key encrypting PostgreSQL, Redis, the secrets and the trust-store bucket."
  value       = aws_kms_key.data.arn
}
