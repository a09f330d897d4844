-- client_certificate credentials: a PEM certificate and its private key (and optionally the server's CA), sealed like
-- every other secret, used for mutual TLS to MCP servers and http connectors.
ALTER TABLE credentials DROP CONSTRAINT credentials_type_check;
ALTER TABLE credentials ADD CONSTRAINT credentials_type_check
    CHECK (type IN ('api_key', 'bearer_token', 'basic_auth', 'custom', 'oauth2_client_credentials', 'oauth2_refresh_token', 'client_certificate'));
