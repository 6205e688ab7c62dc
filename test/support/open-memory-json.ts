// Test helper: opens memory with the JSON options in argv[2] (env: {}) and prints the outcome as
// JSON: {"code": "OPENED"} or the MemoryError's code and message.
import { isMemoryError, openMemory, type OpenMemoryOptions } from '../../memory/index.js';

const options = JSON.parse(process.argv[2] ?? '{}') as OpenMemoryOptions;
try {
  const store = await openMemory({ env: {}, journal: false, ...options });
  await store.close();
  process.stdout.write(JSON.stringify({ code: 'OPENED', message: '' }));
} catch (error) {
  if (!isMemoryError(error)) throw error;
  process.stdout.write(JSON.stringify({ code: error.code, message: error.message }));
}
