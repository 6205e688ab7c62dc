import { parseArgs, type ParseArgsConfig } from 'node:util';

type Config = ParseArgsConfig & { args: string[]; strict: true };

/**
 * A script's options parsed strictly: the values, or the exit code when the script should stop
 * here (0 after printing `--help`, 2 after naming the bad option and printing the help).
 */
export function parseScriptArgs<T extends Config>(
  config: T,
  help: string,
): ReturnType<typeof parseArgs<T>>['values'] | number {
  let values: ReturnType<typeof parseArgs<T>>['values'];
  try {
    ({ values } = parseArgs(config));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${help}`);
    return 2;
  }
  if ((values as { help?: unknown }).help === true) {
    process.stdout.write(help);
    return 0;
  }
  return values;
}

/** An integer option within bounds, or its default when absent; throws naming the option. */
export function intOption(v: string | undefined, name: string, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new Error(`--${name} must be an integer from ${min} to ${max}, not ${v}`);
  return n;
}
