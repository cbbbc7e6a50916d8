// An Okta-like OpenID provider for the end-to-end tests (shared PEERS.md): oidc-provider mounted
// under /oauth2/default on 127.0.0.1:$PORT, client-credentials tokens as RS256 JWTs whose `aud` is
// the requested resource, with Okta's claims (`ver`, `cid`, `scp`) and a `groups` claim per client.
//
//   PORT=4444 KEY_FILE=tests/fixtures/jwt/rsa1.pem \
//     OIDC_PROVIDER=.peers/node/node_modules/oidc-provider node tests/e2e/idp/server.mjs
//
// Run with the Node 24 of .peers (scripts/peers.sh installs oidc-provider there; ESM ignores
// NODE_PATH, so the package folder comes in OIDC_PROVIDER). Prints `ready <issuer>` once
// listening and logs `METHOD PATH` per request (tests/e2e/oauth.rs counts token requests).
// Clients: admin-client / admin-client-secret (groups ["Admin"]), user-client /
// user-client-secret (groups ["User"]); client_secret_basic and client_secret_post both work.
// Key rotation, as an IdP does it: with ROTATE_KEY_FILE set, `POST /admin/rotate` publishes that
// key as `rsa-2` first (new tokens are signed with it) next to `rsa-1`, and `POST
// /admin/retire` then drops `rsa-1` from the key set.
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';

const port = Number(process.env.PORT);
if (!port) throw new Error('PORT is required');
const keyFile = process.env.KEY_FILE;
if (!keyFile) throw new Error('KEY_FILE is required');
const modulePath = process.env.OIDC_PROVIDER;
if (!modulePath) throw new Error('OIDC_PROVIDER (path to the oidc-provider package) is required');
const { default: Provider } = await import(pathToFileURL(`${modulePath}/lib/index.js`).href);

const PREFIX = '/oauth2/default';
const issuer = `http://127.0.0.1:${port}${PREFIX}`;
const jwkOf = (file) => createPrivateKey(readFileSync(file)).export({ format: 'jwk' });
const KEY1 = { ...jwkOf(keyFile), kid: 'rsa-1', alg: 'RS256', use: 'sig' };
const KEY2 = process.env.ROTATE_KEY_FILE
  ? { ...jwkOf(process.env.ROTATE_KEY_FILE), kid: 'rsa-2', alg: 'RS256', use: 'sig' }
  : null;

// client id -> the Okta groups its tokens carry.
const GROUPS = { 'admin-client': ['Admin'], 'user-client': ['User'] };
const clients = Object.keys(GROUPS).map((id) => ({
  client_id: id,
  client_secret: `${id}-secret`,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic', // client_secret_post is accepted too
}));

const build = (keys) => {
const provider = new Provider(issuer, {
  clients,
  jwks: { keys },
  cookies: { keys: ['portcullis-e2e-cookie-key'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf ?? 'api://default',
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => ({
        scope: 'mcp',
        audience: resourceIndicator,
        accessTokenTTL: 600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: async (_ctx, token) => ({
    ver: 1,
    cid: token.clientId,
    scp: token.scope ? token.scope.split(' ') : [],
    groups: GROUPS[token.clientId] ?? [],
  }),
});
provider.on('server_error', (_ctx, err) => console.error('server_error', err));
provider.on('grant.error', (_ctx, err) => console.error('grant.error', err.message, err.error_description ?? ''));
return provider.callback();
};

let callback = build([KEY1]);
const server = createServer((req, res) => {
  if (req.method === 'POST' && KEY2 && (req.url === '/admin/rotate' || req.url === '/admin/retire')) {
    callback = build(req.url === '/admin/rotate' ? [KEY2, KEY1] : [KEY2]);
    console.log(req.method, req.url);
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    return;
  }
  if (req.url === PREFIX || req.url.startsWith(`${PREFIX}/`)) {
    // Mount like express does: oidc-provider derives its mount path from originalUrl.
    req.originalUrl = req.url;
    req.url = req.url.slice(PREFIX.length) || '/';
    console.log(req.method, req.originalUrl);
    callback(req, res);
  } else {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  }
});
server.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
