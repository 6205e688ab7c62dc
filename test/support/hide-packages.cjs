// Test helper, loaded with `node --require`: makes the packages named in HIDE_PACKAGES (comma-
// separated) unresolvable, as on a machine where they were never installed. It simulates a
// missing package; it stands in for no service.
const Module = require('node:module');

const hidden = new Set((process.env.HIDE_PACKAGES || '').split(',').filter(Boolean));
function refuse(request) {
  const error = new Error(`Cannot find module '${request}' (hidden by test/support/hide-packages.cjs)`);
  error.code = 'MODULE_NOT_FOUND';
  return error;
}
// Both hooks: tsx installs its own resolver, but every require() still goes through Module._load.
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (hidden.has(request)) throw refuse(request);
  return resolve.call(this, request, ...rest);
};
const load = Module._load;
Module._load = function (request, ...rest) {
  if (hidden.has(request)) throw refuse(request);
  return load.call(this, request, ...rest);
};
