-- A stored credential may be an OAuth 2.0 refresh token (token_url, client_id, refresh_token, optional client_secret
-- and scope in its sealed fields): it resolves to an access token obtained with the refresh_token grant
-- (OAuthClientTokens); a refresh token the server rotates is sealed again in place (same version).
ALTER TABLE credentials DROP CONSTRAINT credentials_type_check;
ALTER TABLE credentials ADD CONSTRAINT credentials_type_check
    CHECK (type IN ('api_key', 'bearer_token', 'basic_auth', 'custom', 'oauth2_client_credentials', 'oauth2_refresh_token'));
