-- A stored credential may be OAuth 2.0 client credentials (token_url, client_id, client_secret, scope, audience in its
-- sealed fields): it resolves to an access token obtained from its token URL (OAuthClientTokens).
ALTER TABLE credentials DROP CONSTRAINT credentials_type_check;
ALTER TABLE credentials ADD CONSTRAINT credentials_type_check
    CHECK (type IN ('api_key', 'bearer_token', 'basic_auth', 'custom', 'oauth2_client_credentials'));
