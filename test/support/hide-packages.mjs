// Test helper, loaded with `node --import`: makes the packages named in HIDE_PACKAGES (comma-
// separated) unresolvable for import(), as on a machine where they were never installed (the
// .cjs twin does it for require()). It simulates a missing package; it stands in for no service.
import { register } from 'node:module';

register(
  'data:text/javascript,' +
    encodeURIComponent(`
const hidden = new Set((process.env.HIDE_PACKAGES || '').split(',').filter(Boolean));
export async function resolve(specifier, context, next) {
  const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0];
  if (hidden.has(name)) {
    const error = new Error("Cannot find package '" + name + "' imported from " + context.parentURL + ' (hidden by test/support/hide-packages.mjs)');
    error.code = 'ERR_MODULE_NOT_FOUND';
    throw error;
  }
  return next(specifier, context);
}
`),
);
