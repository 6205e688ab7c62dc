import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../support/processes.js';

/** The README's "Use it in your own agent" code is the example project's agent, which the e2e suite runs. */
describe('the README example', () => {
  it('is examples/consumer-agent/agent.js, verbatim', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Use it in your own agent'), readme.indexOf('## Using the library'));
    const agent = fs.readFileSync(path.join(ROOT, 'examples/consumer-agent/agent.js'), 'utf8');
    expect(section).toContain(`\`\`\`js\n${agent}\`\`\``);
  });
});
