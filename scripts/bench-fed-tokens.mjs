// Keys and tokens of a stand-in identity provider for scripts/bench.sh's federated rows
// (RS256 and ES256 beside native jwt_authn, with the same tokens and keys). Node's own
// crypto, no packages. Not a test helper: the tests take tokens from a real provider.
//
//   node scripts/bench-fed-tokens.mjs OUT_DIR ISSUER COUNT
// writes OUT_DIR/jwks.json (public keys), OUT_DIR/{rs256,es256}.token (one token) and
// OUT_DIR/{rs256,es256}.pool (COUNT distinct tokens, one per line).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';

const [out, issuer, countArg] = process.argv.slice(2);
const count = Number(countArg);
if (!out || !issuer || !(count > 0)) {
  process.stderr.write('usage: bench-fed-tokens.mjs OUT_DIR ISSUER COUNT\n');
  process.exit(2);
}
const b64 = (b) => Buffer.from(b).toString('base64url');
const keys = {
  RS256: crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }),
  ES256: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }),
};
const jwks = { keys: [] };
for (const [alg, pair] of Object.entries(keys)) {
  jwks.keys.push({ ...pair.publicKey.export({ format: 'jwk' }), kid: `bench-${alg}`, alg, use: 'sig' });
}
fs.writeFileSync(`${out}/jwks.json`, JSON.stringify(jwks));

const now = Math.floor(Date.now() / 1000);
function token(alg, i) {
  const head = b64(JSON.stringify({ alg, typ: 'at+jwt', kid: `bench-${alg}` }));
  const claims = {
    iss: issuer, sub: `user-${i}`, aud: 'api', scope: 'read', jti: `${alg}-${i}-${now}`,
    iat: now, exp: now + 86400,
  };
  const input = `${head}.${b64(JSON.stringify(claims))}`;
  // JWS ECDSA signatures are r || s (IEEE P1363), not DER.
  const sig = crypto.sign('sha256', Buffer.from(input), { key: keys[alg].privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${b64(sig)}`;
}
for (const alg of Object.keys(keys)) {
  const name = alg.toLowerCase();
  fs.writeFileSync(`${out}/${name}.token`, token(alg, 0));
  const lines = [];
  for (let i = 1; i <= count; i += 1) lines.push(token(alg, i));
  fs.writeFileSync(`${out}/${name}.pool`, `${lines.join('\n')}\n`);
}
