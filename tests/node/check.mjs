// A standard OAuth 2.0 client library (oauth4webapi), configured from
// nothing but tokend's RFC 8414 metadata, goes through a client's life:
// log in, authorization code with PKCE, two refreshes of one token at once
// (as two browser tabs would), introspection and revocation.
//
// Run by tests/integration/test_oauth.py (NodeClientTest) against a running
// tokend; set up with `npm ci` in this folder (contrib/deps.sh does it).
// Settings come from the environment:
//   ISSUER                       tokend's issuer, e.g. http://127.0.0.1:8080
//   WEB_CLIENT_ID, WEB_CLIENT_SECRET   a confidential client (login,
//                                introspection)
//   SPA_CLIENT_ID, SPA_REDIRECT_URI    a public client and its redirect URI
//   USERNAME, PASSWORD           a user
// Prints one JSON line of what it saw and exits 0, or prints the error and
// exits 1.
import assert from 'node:assert/strict';
import process from 'node:process';

import * as oauth from 'oauth4webapi';

function env(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set`);
  }
  return v;
}

// The tests talk to tokend over http://127.0.0.1; the library insists on
// https unless told otherwise.
const insecure = { [oauth.allowInsecureRequests]: true };

async function discover() {
  const issuer = new URL(env('ISSUER'));
  const res = await oauth.discoveryRequest(issuer, {
    algorithm: 'oauth2', ...insecure,
  });
  return oauth.processDiscoveryResponse(issuer, res);
}

// The password grant is not in OAuth 2.1, so the library has no helper for
// it; its generic token endpoint request does the same.
async function login(as, web, webAuth) {
  const res = await oauth.genericTokenEndpointRequest(as, web, webAuth,
    'password', { username: env('USERNAME'), password: env('PASSWORD') },
    insecure);
  return oauth.processGenericTokenEndpointResponse(as, web, res);
}

// tokend's authorization endpoint is an API (POST, JSON, the user's bearer
// token) rather than a login page; its answer is the redirect a browser
// would follow, which the library then validates as a callback.
async function authorize(as, spa, userToken) {
  const verifier = oauth.generateRandomCodeVerifier();
  const challenge = await oauth.calculatePKCECodeChallenge(verifier);
  const state = oauth.generateRandomState();
  const redirectUri = env('SPA_REDIRECT_URI');
  const res = await fetch(as.authorization_endpoint, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${userToken}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({
      client_id: spa.client_id, redirect_uri: redirectUri, scope: 'read',
      state, code_challenge: challenge, code_challenge_method: 'S256',
    }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  const { redirect_to: redirectTo } = await res.json();
  const params = oauth.validateAuthResponse(as, spa, new URL(redirectTo),
    state);
  const tokenRes = await oauth.authorizationCodeGrantRequest(as, spa,
    oauth.None(), params, redirectUri, verifier, insecure);
  return oauth.processAuthorizationCodeResponse(as, spa, tokenRes);
}

async function refresh(as, spa, refreshToken) {
  const res = await oauth.refreshTokenGrantRequest(as, spa, oauth.None(),
    refreshToken, insecure);
  return oauth.processRefreshTokenResponse(as, spa, res);
}

async function introspect(as, web, webAuth, token) {
  const res = await oauth.introspectionRequest(as, web, webAuth, token,
    insecure);
  return oauth.processIntrospectionResponse(as, web, res);
}

async function main() {
  const as = await discover();
  const web = { client_id: env('WEB_CLIENT_ID') };
  const webAuth = oauth.ClientSecretBasic(env('WEB_CLIENT_SECRET'));
  const spa = { client_id: env('SPA_CLIENT_ID') };

  const user = await login(as, web, webAuth);
  const first = await authorize(as, spa, user.access_token);
  assert.equal(first.token_type.toLowerCase(), 'bearer');
  assert.equal(first.scope, 'read');

  // Two tabs refresh the same token at once: both must stay logged in,
  // with the same successor pair.
  const [a, b] = await Promise.all([
    refresh(as, spa, first.refresh_token),
    refresh(as, spa, first.refresh_token),
  ]);
  assert.equal(a.access_token, b.access_token);
  assert.equal(a.refresh_token, b.refresh_token);
  assert.notEqual(a.refresh_token, first.refresh_token);
  const next = await refresh(as, spa, a.refresh_token);

  const active = await introspect(as, web, webAuth, next.access_token);
  assert.equal(active.active, true);
  assert.equal(active.client_id, spa.client_id);
  assert.equal(active.username, env('USERNAME'));

  const rev = await oauth.revocationRequest(as, spa, oauth.None(),
    next.refresh_token, insecure);
  await oauth.processRevocationResponse(rev);
  const gone = await introspect(as, web, webAuth, next.access_token);
  assert.equal(gone.active, false);

  console.log(JSON.stringify({
    issuer: as.issuer,
    // The one both threads presented (a test token, revoked by now).
    refreshed_together: a.refresh_token,
    introspected: active.active,
    revoked: !gone.active,
  }));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  if (err && err.cause) {
    console.error('cause:', JSON.stringify(err.cause));
  }
  process.exit(1);
});
