-- hashicorp_vault credentials: a tenant's own HashiCorp Vault connection (address, token or AppRole, namespace, CA),
-- sealed like every other secret and named in hcvault://<connection>@<mount>/<path>#<field> references.
ALTER TABLE credentials DROP CONSTRAINT credentials_type_check;
ALTER TABLE credentials ADD CONSTRAINT credentials_type_check
    CHECK (type IN ('api_key', 'bearer_token', 'basic_auth', 'custom', 'oauth2_client_credentials', 'oauth2_refresh_token', 'client_certificate',
                    'hashicorp_vault'));
