-- The SQL gateway checks every function a template calls against its allow-list (FunctionAllowList).
-- guard_version: the version of those rules a template last passed (0: defined before them); templates below the
-- current version are checked again on start-up and cannot run until they pass. disabled_reason: why the check
-- disabled one (it cannot be enabled again; it must be defined anew).
ALTER TABLE datasource_queries ADD COLUMN guard_version integer NOT NULL DEFAULT 0;
ALTER TABLE datasource_queries ADD COLUMN disabled_reason text;
CREATE INDEX datasource_queries_unchecked ON datasource_queries (guard_version) WHERE deleted_at IS NULL;

-- Functions of installed extensions (schema.function) a datasource lets its templates call besides the built-ins.
ALTER TABLE datasources ADD COLUMN allowed_functions text[] NOT NULL DEFAULT '{}';
