-- The demo profile's MariaDB (docker-compose.yml): a monitoring user for stack_exporter with the
-- grants docs/databases.md recommends ("Least privileges"): PROCESS for the process list and
-- InnoDB's table list, REPLICATION CLIENT and (MariaDB 10.5+) SLAVE MONITOR for status, SELECT on
-- performance_schema, and SELECT on the application's schema only, for its size (D2).
-- Demo credentials: never reuse them on a real server.
CREATE USER IF NOT EXISTS 'stack_exporter'@'%' IDENTIFIED BY 'stack_exporter' WITH MAX_USER_CONNECTIONS 3;
GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR ON *.* TO 'stack_exporter'@'%';
GRANT SELECT ON performance_schema.* TO 'stack_exporter'@'%';
GRANT SELECT ON stack.* TO 'stack_exporter'@'%';
