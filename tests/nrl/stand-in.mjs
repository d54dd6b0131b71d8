// A stand-in for the National Record Locator's producer API, for end-to-end tests. It is not
// part of the product and not Wyvern's code: it enforces what the published spec and its proxy
// enforce (docs/design/nrl-producer-api.md), so the `nrl` destination is tested against the
// rules, not against itself.
//
//   node tests/nrl/stand-in.mjs PORT PUBLIC_KEY_PEM_FILE API_KEY KID PERMISSIONS_JSON [TOKEN]
//
// TOKEN, if given, is also accepted as a bearer token (as the sandbox lets callers in without
// one), so a test can probe the header rules directly.
// PERMISSIONS_JSON maps an ODS code to the SNOMED pointer types it may write, e.g.
// '{"XCH01":["887181000000106"]}'. It prints "listening PORT" once it serves.
//
// - POST /oauth2/token: client credentials with a signed JWT (RS512, `kid`, iss = sub = the
//   API key, aud = this URL, exp at most 5 minutes ahead, a jti): a bearer token.
// - /record-locator/producer/FHIR/R4/DocumentReference: POST (create, or supersede with
//   relatesTo replaces), GET ?subject:identifier=…&type=…, DELETE /{id}. Checked in the
//   proxy's order: the token (401), X-Request-ID (400 MISSING_OR_INVALID_HEADER),
//   NHSD-End-User-Organisation-ODS (400 PRECONDITION_FAILED), the ODS code's grant (403).
//   X-Correlation-ID is echoed, not used to de-duplicate: no such behaviour is documented, so
//   a client must not lean on it (a repeated create makes a second pointer here).
// - Test controls, outside the API: POST /_control {"lose_next_create": true} stores the next
//   create and then answers 503 (an answer lost on the way back); GET /_pointers lists every
//   pointer; GET /_requests counts requests by method.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

const [port, keyFile, apiKey, kid, permissionsJson, fixedToken] = process.argv.slice(2);
const publicKey = crypto.createPublicKey(fs.readFileSync(keyFile));
const permissions = JSON.parse(permissionsJson);
const API = '/record-locator/producer/FHIR/R4/DocumentReference';
const NHS = 'https://fhir.nhs.uk/Id/nhs-number';
const ODS = 'https://fhir.nhs.uk/Id/ods-organization-code';
const SCT = 'http://snomed.info/sct';
const tokens = new Map(); // token -> expiry (ms)
if (fixedToken) tokens.set(fixedToken, Number.MAX_SAFE_INTEGER);
const seenJti = new Set();
const pointers = new Map(); // id -> DocumentReference
const requests = {};
let loseNextCreate = false;

function outcome(res, status, code, spineCode, diagnostics, headers = {}) {
  const body = {
    resourceType: 'OperationOutcome',
    issue: [{
      severity: status < 300 ? 'information' : 'error',
      code,
      details: { coding: [{ system: 'https://fhir.nhs.uk/CodeSystem/Spine-ErrorOrWarningCode', code: spineCode }] },
      diagnostics,
    }],
  };
  reply(res, status, { 'Content-Type': 'application/fhir+json;version=1', ...headers }, JSON.stringify(body));
}

const b64url = (s) => Buffer.from(s, 'base64url');

/// A whole answer with its length (no chunked encoding: simple clients read it too).
function reply(res, status, headers, text) {
  res.writeHead(status, { ...headers, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function token(res, form, url) {
  const assertion = form.get('client_assertion') ?? '';
  const refuse = (why) => {
    reply(res, 401, { 'Content-Type': 'application/json' }, JSON.stringify({ error: 'invalid_request', error_description: why }));
  };
  if (form.get('grant_type') !== 'client_credentials') return refuse('grant_type must be client_credentials');
  if (form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
    return refuse('client_assertion_type must be jwt-bearer');
  }
  const parts = assertion.split('.');
  if (parts.length !== 3) return refuse('client_assertion is not a JWT');
  let header, claims;
  try {
    header = JSON.parse(b64url(parts[0]).toString());
    claims = JSON.parse(b64url(parts[1]).toString());
  } catch {
    return refuse('client_assertion is not a JWT');
  }
  if (header.alg !== 'RS512') return refuse('alg must be RS512');
  if (header.kid !== kid) return refuse('unknown kid');
  const signed = crypto.verify('RSA-SHA512', Buffer.from(`${parts[0]}.${parts[1]}`), publicKey, b64url(parts[2]));
  if (!signed) return refuse('the signature does not verify');
  const now = Math.floor(Date.now() / 1000);
  if (claims.iss !== apiKey || claims.sub !== apiKey) return refuse('iss and sub must be the API key');
  if (claims.aud !== url) return refuse(`aud must be ${url}`);
  if (typeof claims.exp !== 'number' || claims.exp <= now || claims.exp > now + 300) {
    return refuse('exp must be in the future and at most 5 minutes ahead');
  }
  if (!claims.jti || seenJti.has(claims.jti)) return refuse('jti missing or reused');
  seenJti.add(claims.jti);
  const t = crypto.randomBytes(16).toString('hex');
  tokens.set(t, Date.now() + 600_000);
  reply(res, 200, { 'Content-Type': 'application/json' }, JSON.stringify({ access_token: t, expires_in: '599', token_type: 'bearer' }));
}

const coding = (cc, system) => (cc?.coding ?? []).find((c) => c.system === system && c.code);

/// Why a pointer is not one the spec accepts, or null.
function invalid(d) {
  if (d?.resourceType !== 'DocumentReference') return 'not a DocumentReference';
  if (d.status !== 'current') return 'status must be current';
  if (!coding(d.type, SCT)?.display) return 'type needs a SNOMED coding with a display';
  if (!coding(d.category?.[0], SCT)?.display) return 'category needs a SNOMED coding with a display';
  if (d.subject?.identifier?.system !== NHS || !/^\d{10}$/.test(d.subject?.identifier?.value ?? '')) {
    return 'subject.identifier must be an NHS number';
  }
  if (d.custodian?.identifier?.system !== ODS) return 'custodian.identifier must be an ODS code';
  if (d.author?.length !== 1 || d.author[0].identifier?.system !== ODS) return 'author must be one ODS code';
  const c = d.content?.[0];
  if (!c?.attachment?.url || !c.attachment.contentType) return 'content needs attachment.url and contentType';
  if (c.format?.system !== 'https://fhir.nhs.uk/England/CodeSystem/England-NRLFormatCode') return 'content.format system';
  const stability = (c.extension ?? []).find((e) => e.url === 'https://fhir.nhs.uk/England/StructureDefinition/Extension-England-ContentStability');
  if (!stability) return 'content needs the ContentStability extension';
  if (!coding(d.context?.practiceSetting, SCT)) return 'context.practiceSetting is required';
  return null;
}

function api(req, res, url, text) {
  const auth = req.headers.authorization ?? '';
  const t = auth.startsWith('Bearer ') ? auth.slice(7) : '';
  if (!tokens.has(t) || tokens.get(t) < Date.now()) {
    return outcome(res, 401, 'forbidden', 'ACCESS_DENIED', 'Access has been denied to process this request');
  }
  const requestId = req.headers['x-request-id'];
  if (!requestId) return outcome(res, 400, 'invalid', 'MISSING_OR_INVALID_HEADER', 'The X-Request-ID header is missing');
  const echo = { 'X-Request-ID': requestId };
  if (req.headers['x-correlation-id']) echo['X-Correlation-ID'] = req.headers['x-correlation-id'];
  const ods = req.headers['nhsd-end-user-organisation-ods'];
  if (!ods) {
    return outcome(res, 400, 'required', 'PRECONDITION_FAILED', 'The NHSD-End-User-Organisation-ODS header is missing or invalid', echo);
  }
  const allowed = permissions[ods];
  if (!allowed) return outcome(res, 403, 'forbidden', 'ACCESS_DENIED', 'Provided ODS code has no pointers within requesting app', echo);
  const rest = url.pathname.slice(API.length);
  if (req.method === 'POST' && rest === '') {
    let d;
    try { d = JSON.parse(text); } catch { return outcome(res, 400, 'invalid', 'MESSAGE_NOT_WELL_FORMED', 'not JSON', echo); }
    const why = invalid(d);
    if (why) return outcome(res, 400, 'invalid', 'INVALID_RESOURCE', why, echo);
    if (d.custodian.identifier.value !== ods) return outcome(res, 403, 'forbidden', 'ACCESS_DENIED', 'custodian is not the requesting organisation', echo);
    if (!allowed.includes(coding(d.type, SCT).code)) {
      return outcome(res, 403, 'forbidden', 'ACCESS_DENIED', 'this organisation may not write pointers of this type', echo);
    }
    const replaced = [];
    for (const r of d.relatesTo ?? []) {
      const old = pointers.get(r.target?.identifier?.value);
      if (r.code !== 'replaces' || !old || old.custodian.identifier.value !== ods
          || old.subject.identifier.value !== d.subject.identifier.value
          || coding(old.type, SCT).code !== coding(d.type, SCT).code) {
        return outcome(res, 422, 'invariant', 'UNPROCESSABLE_ENTITY', 'relatesTo must replace an existing pointer of this organisation, subject and type', echo);
      }
      replaced.push(old.id);
    }
    for (const id of replaced) pointers.delete(id);
    const id = `${ods}-${crypto.randomUUID()}`;
    pointers.set(id, { ...d, id });
    if (loseNextCreate) {
      loseNextCreate = false;
      return reply(res, 503, { 'Content-Type': 'application/fhir+json;version=1' }, '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient"}]}');
    }
    return outcome(res, 201, 'informational', 'RESOURCE_CREATED', 'Created', { ...echo, Location: `${API}/${id}` });
  }
  if (req.method === 'GET' && rest === '') {
    const subject = url.searchParams.get('subject:identifier') ?? '';
    const [system, nhs] = subject.split('|');
    if (system !== NHS || !nhs) return outcome(res, 400, 'invalid', 'INVALID_PARAMETER', 'subject:identifier is required', echo);
    const type = url.searchParams.get('type');
    const found = [...pointers.values()].filter((p) => p.custodian.identifier.value === ods
      && p.subject.identifier.value === nhs
      && (!type || `${SCT}|${coding(p.type, SCT).code}` === type));
    return reply(res, 200, { 'Content-Type': 'application/fhir+json;version=1', ...echo }, JSON.stringify({ resourceType: 'Bundle', type: 'searchset', total: found.length, entry: found.map((resource) => ({ resource })) }));
  }
  if (req.method === 'DELETE' && rest.startsWith('/')) {
    const p = pointers.get(rest.slice(1));
    if (!p) return outcome(res, 404, 'not-found', 'RESOURCE_NOT_FOUND', 'no such pointer', echo);
    if (p.custodian.identifier.value !== ods) return outcome(res, 403, 'forbidden', 'ACCESS_DENIED', 'another organisation owns this pointer', echo);
    pointers.delete(p.id);
    return outcome(res, 200, 'informational', 'RESOURCE_REMOVED', 'Deleted', echo);
  }
  return outcome(res, 405, 'not-supported', 'METHOD_NOT_ALLOWED', `${req.method} ${url.pathname}`, echo);
}

const server = http.createServer(async (req, res) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const text = Buffer.concat(chunks).toString('utf8');
  const url = new URL(req.url, `http://${req.headers.host}`);
  requests[req.method] = (requests[req.method] ?? 0) + 1;
  try {
    if (url.pathname === '/oauth2/token' && req.method === 'POST') {
      return token(res, new URLSearchParams(text), `http://${req.headers.host}/oauth2/token`);
    }
    if (url.pathname === '/_control' && req.method === 'POST') {
      loseNextCreate = Boolean(JSON.parse(text).lose_next_create);
      return reply(res, 200, {}, '{}');
    }
    if (url.pathname === '/_pointers') {
      return reply(res, 200, { 'Content-Type': 'application/json' }, JSON.stringify([...pointers.values()]));
    }
    if (url.pathname === '/_requests') {
      return reply(res, 200, { 'Content-Type': 'application/json' }, JSON.stringify(requests));
    }
    if (url.pathname.startsWith(API)) return api(req, res, url, text);
    return outcome(res, 404, 'not-found', 'RESOURCE_NOT_FOUND', url.pathname);
  } catch (e) {
    return outcome(res, 500, 'exception', 'INTERNAL_SERVER_ERROR', String(e));
  }
});
server.listen(Number(port), '127.0.0.1', () => console.log(`listening ${port}`));
