-- The demo profile's MariaDB (docker-compose.yml): a monitoring user for stack_exporter with the
-- grants mysqld_exporter-style monitoring needs (PROCESS for the processlist, REPLICATION CLIENT
-- and, on MariaDB 10.11, SLAVE MONITOR for status, SELECT for performance_schema and sizes).
-- Demo credentials: never reuse them on a real server.
CREATE USER IF NOT EXISTS 'stack_exporter'@'%' IDENTIFIED BY 'stack_exporter' WITH MAX_USER_CONNECTIONS 3;
GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR, SELECT ON *.* TO 'stack_exporter'@'%';
