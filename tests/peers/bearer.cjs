// Preload that makes a Node MCP client present a Warden API key, for
// clients with no option to send request headers (the MCP conformance
// suite's server mode). Load it with
//   NODE_OPTIONS="--require <this file>"
//   WARDEN_BEARER_TOKEN=<key> WARDEN_BEARER_ORIGIN=http://127.0.0.1:<port>
// and every HTTP request to that origin carries
// `Authorization: Bearer <key>`, replacing any it had; requests elsewhere
// are untouched. Nothing else about a request changes: method, path, body
// and the other headers (a forged `Host` or `Origin` too) go out as the
// client wrote them.
//
// How: undici's global dispatcher is wrapped. Node's built-in `fetch` and
// the `undici` package's `request` both send through it, so the key
// reaches the suite's MCP client (fetch) and its raw DNS-rebinding probes
// (undici.request) alike. `undici` is loaded from the client's own
// dependencies, found from the main script's folder.
'use strict';
const path = require('path');

const token = process.env.WARDEN_BEARER_TOKEN;
const origin = process.env.WARDEN_BEARER_ORIGIN;
if (!token || !origin) {
  throw new Error('bearer.cjs: set WARDEN_BEARER_TOKEN and WARDEN_BEARER_ORIGIN');
}
const target = new URL(origin).origin;

const main = process.argv[1] ? path.dirname(path.resolve(process.argv[1])) : process.cwd();
const undici = require(require.resolve('undici', { paths: [main] }));

// The request's headers as a flat [name, value, ...] list (undici accepts an
// object, a flat list, or an iterable of pairs), without any
// `Authorization`, then the key's.
function withBearer(headers) {
  const flat = [];
  const add = (name, value) => {
    if (String(name).toLowerCase() !== 'authorization') flat.push(name, value);
  };
  if (Array.isArray(headers) && !Array.isArray(headers[0])) {
    for (let i = 0; i + 1 < headers.length; i += 2) add(headers[i], headers[i + 1]);
  } else if (headers && typeof headers[Symbol.iterator] === 'function') {
    for (const [name, value] of headers) add(name, value);
  } else if (headers && typeof headers === 'object') {
    for (const [name, value] of Object.entries(headers)) add(name, value);
  }
  flat.push('authorization', `Bearer ${token}`);
  return flat;
}

function isTarget(requestOrigin) {
  try {
    return new URL(String(requestOrigin)).origin === target;
  } catch (_) {
    return false;
  }
}

const inner = undici.getGlobalDispatcher();
undici.setGlobalDispatcher(
  inner.compose((dispatch) => (opts, handler) => {
    const sent = isTarget(opts.origin) ? { ...opts, headers: withBearer(opts.headers) } : opts;
    return dispatch(sent, handler);
  }),
);
