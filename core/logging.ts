/**
 * The runtime's one pino logger. JSON lines by default, which log shippers read; pretty lines when
 * stdout is a terminal, which people read. Known secret texts are scrubbed from every message and
 * error, since a driver error may quote a connection string.
 */
import { pino, type Logger as PinoLogger } from 'pino';
import pretty from 'pino-pretty';
import type { Logger } from './connector.ts';

export interface LoggerOptions {
  level?: string;
  /** Default: pretty when stdout is a TTY. */
  pretty?: boolean;
  /** Replaces secret texts in a string; identity when there are none. */
  scrub?: (text: string) => string;
  /** Where lines go; default stdout. */
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions = {}): PinoLogger & Logger {
  const scrub = options.scrub ?? ((text: string) => text);
  const usePretty = options.pretty ?? Boolean(process.stdout.isTTY);
  const destination = usePretty
    ? pretty({ colorize: Boolean(process.stdout.isTTY), translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', destination: options.destination ?? 1, sync: true })
    : (options.destination ?? pino.destination({ dest: 1, sync: false }));
  return pino(
    {
      level: options.level ?? process.env['SLUICE_LOG_LEVEL'] ?? 'info',
      base: undefined,
      serializers: {
        err: (err: Error) => {
          const serialized = pino.stdSerializers.err(err);
          serialized.message = scrub(serialized.message);
          if (serialized.stack) serialized.stack = scrub(serialized.stack);
          return serialized;
        },
      },
      hooks: {
        logMethod(args, method) {
          for (let i = 0; i < args.length; i++) if (typeof args[i] === 'string') args[i] = scrub(args[i] as string);
          method.apply(this, args as Parameters<typeof method>);
        },
      },
    },
    destination as pino.DestinationStream,
  ) as PinoLogger & Logger;
}
