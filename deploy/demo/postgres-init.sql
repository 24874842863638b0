-- The demo profile's PostgreSQL (docker-compose.yml): pg_stat_statements for statement latency
-- (P3) and a monitoring user for stack_exporter (pg_monitor reads every pg_stat_* view).
-- Demo credentials: never reuse them on a real server.
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
-- As docs/databases.md recommends: pg_monitor and nothing else.
CREATE ROLE stack_exporter WITH LOGIN PASSWORD 'stack_exporter' CONNECTION LIMIT 3 IN ROLE pg_monitor;
