-- The role the service logs in as for requests: a member of integrations_app (the role every request transaction
-- switches to, created here if the first migration has not run yet) and nothing more. It owns no table, so it can
-- neither switch off the audit trail's append-only triggers nor set session_replication_role. Migrations and the
-- operator commands run as the owner (ConnectionStrings__IntegrationsOwner).
-- psql variables: service_role, service_password. Used by eng/pg.sh service and by docker-compose's database init.
SELECT 'CREATE ROLE integrations_app NOLOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'integrations_app') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'service_role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'service_role') \gexec
SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
              :'service_role', :'service_password') \gexec
SELECT format('GRANT integrations_app TO %I', :'service_role') \gexec
