// A real OpenID Provider (the certified `oidc-provider` package) on loopback, for the
// federation tests. It issues JWT access tokens (client_credentials, RFC 9068) signed
// with RS256, ES256, ES384 or EdDSA, chosen by the requested resource, and takes test-only
// commands under /_test/ to rotate its keys or spoil its JWKS.
//
//   node tests/idp/provider.mjs      prints {"issuer": "http://127.0.0.1:PORT"} when ready
//
// Resources (token audiences): http://api.test/rs256, /es256, /es384, /eddsa, and
// http://api.test/other (RS256, for wrong-audience cases). Client: mesh / mesh-secret.
import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider from 'oidc-provider';

const ALGS = {
  rs256: 'RS256', es256: 'ES256', es384: 'ES384', eddsa: 'EdDSA', other: 'RS256',
};
let generation = 0;
let keys = [];
let jwksMode = 'normal';
let jwksFetches = 0;
let provider;

function newKey(alg) {
  const kid = `${alg.toLowerCase()}-${generation}`;
  let pair;
  if (alg === 'RS256') pair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  else if (alg === 'ES256') pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  else if (alg === 'ES384') pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-384' });
  else pair = crypto.generateKeyPairSync('ed25519');
  return { ...pair.privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

// New keys go first: the provider signs with the first key of an algorithm, and keeps
// publishing the old ones so tokens already out stay verifiable.
function rotate() {
  generation += 1;
  keys = [newKey('RS256'), newKey('ES256'), newKey('ES384'), newKey('EdDSA'), ...keys];
}

function build(issuer) {
  const p = new Provider(issuer, {
    clients: [{
      client_id: 'mesh',
      client_secret: 'mesh-secret',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_post',
      scope: 'read write',
    }],
    jwks: { keys },
    scopes: ['read', 'write'],
    cookies: { keys: ['test-only-cookie-key'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'http://api.test/rs256',
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => {
          const which = resource.startsWith('http://api.test/') ? resource.slice(16) : '';
          if (!ALGS[which]) throw new Error(`unknown resource ${resource}`);
          return {
            scope: 'read write',
            audience: resource,
            accessTokenFormat: 'jwt',
            accessTokenTTL: 600,
            jwt: { sign: { alg: ALGS[which] } },
          };
        },
      },
    },
    enabledJWA: {
      idTokenSigningAlgValues: ['RS256', 'ES256', 'ES384', 'EdDSA'],
    },
  });
  p.on('server_error', (ctx, err) => process.stderr.write(`idp server_error: ${err.stack}\n`));
  return p;
}

function answer(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/_test/rotate' && req.method === 'POST') {
    rotate();
    provider = build(provider.issuer);
    return answer(res, 200, { kids: keys.slice(0, 4).map((k) => k.kid) });
  }
  if (url.pathname === '/_test/jwks' && req.method === 'POST') {
    jwksMode = url.searchParams.get('mode') || 'normal';
    return answer(res, 200, { mode: jwksMode });
  }
  if (url.pathname === '/_test/stats') return answer(res, 200, { jwks_fetches: jwksFetches });
  if (url.pathname === '/jwks') {
    jwksFetches += 1;
    if (jwksMode === 'empty') return answer(res, 200, { keys: [] });
    if (jwksMode === 'garbage') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end('{"keys": [ not json');
    }
  }
  return provider.callback()(req, res);
});

server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  rotate();
  provider = build(issuer);
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});
