import { type Command } from 'commander';
import {
  FORBIDDEN_NAMES,
  MemoryError,
  SECRET_NAME_PATTERN,
  checkConfig,
  checkSecretNames,
  checkSecrets,
  checkTenant,
  isMemoryError,
  maskSecret,
  type AgentConfig,
  type StoredSettings,
} from '../../memory/index.js';
import { EXIT } from './exit-codes.js';
import { precheck, say, withMemory, type CliIo, type Outcome } from './context.js';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

const NAME_RULE = 'a letter, then letters, digits or _ (up to 64), e.g. OPENAI_API_KEY or retell_api_key';

/**
 * NAME=VALUE of --secret. Messages name the option and the problem but never repeat the text:
 * it holds a secret (or is one, typed without its name).
 */
function parseSecret(text: string): [string, string] {
  const at = text.indexOf('=');
  if (at < 0)
    throw new MemoryError(
      'INVALID_SETTINGS',
      '--secret expects NAME=VALUE (NAME=- reads the value from standard input); no = was given',
    );
  const name = text.slice(0, at);
  if (name === '') throw new MemoryError('INVALID_SETTINGS', '--secret expects NAME=VALUE: the name before = is empty');
  checkSecretNameArg(name, '--secret');
  return [name, text.slice(at + 1)];
}

function checkSecretNameArg(name: string, option: string): void {
  // __proto__, constructor and prototype would reach Object.prototype in an ordinary object.
  if (FORBIDDEN_NAMES.has(name))
    throw new MemoryError(
      'INVALID_SETTINGS',
      `${option}: the name ${JSON.stringify(name)} is not allowed; use ${NAME_RULE}`,
    );
  if (!SECRET_NAME_PATTERN.test(name))
    throw new MemoryError(
      'INVALID_SETTINGS',
      `${option}: secret name ${JSON.stringify(name)} is invalid; use ${NAME_RULE}`,
    );
}

/** --config as JSON, into the checked configuration (before anything opens: bad input exits 2). */
function parseConfig(text: string): AgentConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new MemoryError('INVALID_SETTINGS', `--config is not valid JSON (${(error as Error).message})`);
  }
  try {
    return checkConfig(parsed);
  } catch (error) {
    if (isMemoryError(error)) throw new MemoryError(error.code, `--config: ${error.message}`);
    throw error;
  }
}

/** Settings as a person may see them: configuration in full, secrets masked. */
export function settingsView(settings: StoredSettings): Record<string, unknown> {
  return {
    tenant: settings.tenant,
    version: settings.version,
    updatedAt: settings.updatedAt.toISOString(),
    config: settings.config,
    secrets: Object.fromEntries(
      settings.secretNames.map((name) => [name, maskSecret(settings.encryptedSecrets[name]!)]),
    ),
  };
}

export function settingsLines(settings: StoredSettings): string[] {
  const lines = [
    `tenant ${settings.tenant}, version ${settings.version}, updated ${settings.updatedAt.toISOString()}`,
    `config: ${JSON.stringify(settings.config)}`,
  ];
  lines.push(
    settings.secretNames.length === 0
      ? 'secrets: none'
      : `secrets: ${settings.secretNames.map((n) => `${n} ${maskSecret(settings.encryptedSecrets[n]!)}`).join(', ')}`,
  );
  return lines;
}

async function readValue(io: CliIo, name: string, value: string): Promise<string> {
  if (value !== '-') return value;
  if (!io.readStdin)
    throw new MemoryError('INVALID_SETTINGS', `--secret ${name}=-: no standard input to read the value from`);
  return (await io.readStdin()).replace(/\r?\n$/, '');
}

export function registerSettingsCommands(program: Command, io: CliIo, outcome?: Outcome): void {
  const settings = program
    .command('settings')
    .description("a user's agent settings: configuration and encrypted secrets, per tenant");

  settings
    .command('set')
    .description(
      'save settings (provisions the user if new); secrets are encrypted with MEMORY_ENCRYPTION_KEY before they leave this process',
    )
    .argument('<identity>', 'participant identity')
    .option('--tenant <tenant>', 'tenant (default: $MEMORY_TENANT, else "default")')
    .option(
      '--config <json>',
      'configuration as JSON, e.g. \'{"voice":"alloy","model":"gpt-4.1-mini","instructions":"..."}\' (replaces the stored one)',
    )
    .option(
      '--secret <NAME=VALUE>',
      'set a secret (repeatable); NAME=- reads the value from standard input',
      collect,
      [],
    )
    .option('--remove-secret <NAME>', 'delete a secret (repeatable)', collect, [])
    .option('--json', 'print JSON')
    .action(
      async (
        identity: string,
        options: { tenant?: string; config?: string; secret: string[]; removeSecret: string[]; json?: boolean },
        command: Command,
      ) => {
        precheck(command, io, { identity });
        if (options.tenant !== undefined) checkTenant(options.tenant);
        const config = options.config === undefined ? undefined : parseConfig(options.config);
        // A null-prototype object: no name given on the command line can reach Object.prototype.
        const secrets: Record<string, string> = Object.create(null) as Record<string, string>;
        for (const entry of options.secret) {
          const [name, value] = parseSecret(entry);
          if (Object.hasOwn(secrets, name))
            throw new MemoryError('INVALID_SETTINGS', `--secret ${name} is given twice; give each secret once`);
          secrets[name] = await readValue(io, name, value);
        }
        for (const name of options.removeSecret) {
          checkSecretNameArg(name, '--remove-secret');
          if (Object.hasOwn(secrets, name))
            throw new MemoryError(
              'INVALID_SETTINGS',
              `${name} is both set (--secret) and removed (--remove-secret); give one`,
            );
        }
        // The library's own checks, here too, so every refusal comes before the database is opened.
        checkSecrets(secrets);
        checkSecretNames(options.removeSecret);
        if (config === undefined && options.secret.length === 0 && options.removeSecret.length === 0) {
          throw new MemoryError('INVALID_SETTINGS', 'nothing to save: give --config, --secret or --remove-secret');
        }
        const saved = await withMemory(command, io, async (memory) => {
          try {
            await memory.provision(identity);
          } catch (error) {
            // Unreachable: like `store`, the save goes to the journal, whose replay provisions first.
            if (!isMemoryError(error, 'BACKEND_UNAVAILABLE') && !isMemoryError(error, 'TIMEOUT')) throw error;
          }
          return memory.forIdentity(identity).saveSettings({
            tenant: options.tenant,
            config,
            secrets,
            removeSecrets: options.removeSecret,
          });
        });
        const savedTo = saved.savedTo ?? 'database';
        if (options.json) io.stdout(`${JSON.stringify({ ...settingsView(saved), savedTo }, null, 2)}\n`);
        else if (savedTo === 'journal') {
          say(
            io,
            `settings for ${identity} saved to the local journal (database unreachable); it will be replayed (lk-memory sync)\n` +
              `${settingsLines(saved).join('\n')}\n`,
          );
        } else say(io, `saved settings for ${identity}\n${settingsLines(saved).join('\n')}\n`);
      },
    );

  settings
    .command('get')
    .description('show settings (secrets masked); exits 1 when none are saved')
    .argument('<identity>', 'participant identity')
    .option('--tenant <tenant>', 'tenant (default: $MEMORY_TENANT, else "default")')
    .option('--json', 'print JSON')
    .action(async (identity: string, options: { tenant?: string; json?: boolean }, command: Command) => {
      precheck(command, io, { identity });
      if (options.tenant !== undefined) checkTenant(options.tenant);
      const stored = await withMemory(command, io, (memory) =>
        memory.forIdentity(identity).getSettings(options.tenant),
      );
      if (!stored) {
        io.stderr(`no settings saved for ${identity}${options.tenant ? ` (tenant ${options.tenant})` : ''}\n`);
        if (outcome) outcome.code = EXIT.NOT_FOUND;
        return;
      }
      if (options.json) io.stdout(`${JSON.stringify(settingsView(stored), null, 2)}\n`);
      else say(io, `${settingsLines(stored).join('\n')}\n`);
    });
}
