import { Command, InvalidArgumentError } from 'commander';
import { MemoryError, checkTenant, maskSecret, type StoredSettings } from '../../memory/index.js';
import { EXIT } from './exit-codes.js';
import { precheck, withMemory, type CliIo, type Outcome } from './context.js';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function parseSecret(text: string): [string, string] {
  const at = text.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError('expected NAME=VALUE (use NAME=- to read the value from standard input)');
  return [text.slice(0, at), text.slice(at + 1)];
}

/** Settings as a person may see them: configuration in full, secrets masked. */
export function settingsView(settings: StoredSettings): Record<string, unknown> {
  return {
    tenant: settings.tenant,
    version: settings.version,
    updatedAt: settings.updatedAt.toISOString(),
    config: settings.config,
    secrets: Object.fromEntries(settings.secretNames.map((name) => [name, maskSecret(settings.encryptedSecrets[name]!)])),
  };
}

export function settingsLines(settings: StoredSettings): string[] {
  const lines = [`tenant ${settings.tenant}, version ${settings.version}, updated ${settings.updatedAt.toISOString()}`, `config: ${JSON.stringify(settings.config)}`];
  lines.push(
    settings.secretNames.length === 0
      ? 'secrets: none'
      : `secrets: ${settings.secretNames.map((n) => `${n} ${maskSecret(settings.encryptedSecrets[n]!)}`).join(', ')}`,
  );
  return lines;
}

async function readValue(io: CliIo, name: string, value: string): Promise<string> {
  if (value !== '-') return value;
  if (!io.readStdin) throw new MemoryError('INVALID_SETTINGS', `secret ${name}: no standard input to read the value from`);
  return (await io.readStdin()).replace(/\r?\n$/, '');
}

export function registerSettingsCommands(program: Command, io: CliIo, outcome?: Outcome): void {
  const settings = program.command('settings').description("a user's agent settings: configuration and encrypted secrets, per tenant");

  settings
    .command('set')
    .description('save settings (provisions the user if new); secrets are encrypted with MEMORY_ENCRYPTION_KEY before they leave this process')
    .argument('<identity>', 'participant identity')
    .option('--tenant <tenant>', 'tenant (default: $MEMORY_TENANT, else "default")')
    .option('--config <json>', 'configuration as JSON, e.g. \'{"voice":"alloy","model":"gpt-4.1-mini","instructions":"..."}\' (replaces the stored one)')
    .option('--secret <NAME=VALUE>', 'set a secret (repeatable); NAME=- reads the value from standard input', collect, [])
    .option('--remove-secret <NAME>', 'delete a secret (repeatable)', collect, [])
    .option('--json', 'print JSON')
    .action(async (identity: string, options: { tenant?: string; config?: string; secret: string[]; removeSecret: string[]; json?: boolean }, command: Command) => {
      precheck(command, io, { identity });
      if (options.tenant !== undefined) checkTenant(options.tenant);
      let config: unknown;
      if (options.config !== undefined) {
        try {
          config = JSON.parse(options.config);
        } catch {
          throw new MemoryError('INVALID_SETTINGS', '--config is not valid JSON');
        }
      }
      const secrets: Record<string, string> = {};
      for (const entry of options.secret) {
        const [name, value] = parseSecret(entry);
        secrets[name] = await readValue(io, name, value);
      }
      if (config === undefined && options.secret.length === 0 && options.removeSecret.length === 0) {
        throw new MemoryError('INVALID_SETTINGS', 'nothing to save: give --config, --secret or --remove-secret');
      }
      const saved = await withMemory(command, io, async (memory) => {
        await memory.provision(identity);
        return memory.forIdentity(identity).saveSettings({
          tenant: options.tenant,
          config: config as never,
          secrets,
          removeSecrets: options.removeSecret,
        });
      });
      if (options.json) io.stdout(`${JSON.stringify(settingsView(saved), null, 2)}\n`);
      else io.stdout(`saved settings for ${identity}\n${settingsLines(saved).join('\n')}\n`);
    });

  settings
    .command('get')
    .description('show settings (secrets masked); exits 1 when none are saved')
    .argument('<identity>', 'participant identity')
    .option('--tenant <tenant>', 'tenant (default: $MEMORY_TENANT, else "default")')
    .option('--json', 'print JSON')
    .action(async (identity: string, options: { tenant?: string; json?: boolean }, command: Command) => {
      precheck(command, io, { identity });
      if (options.tenant !== undefined) checkTenant(options.tenant);
      const stored = await withMemory(command, io, (memory) => memory.forIdentity(identity).getSettings(options.tenant));
      if (!stored) {
        io.stderr(`no settings saved for ${identity}${options.tenant ? ` (tenant ${options.tenant})` : ''}\n`);
        if (outcome) outcome.code = EXIT.NOT_FOUND;
        return;
      }
      if (options.json) io.stdout(`${JSON.stringify(settingsView(stored), null, 2)}\n`);
      else io.stdout(`${settingsLines(stored).join('\n')}\n`);
    });
}
