/**
 * The file sink's config schema: the one source of truth for the config's validation, its
 * TypeScript type ({@link FileSinkConfig}) and the generated README.
 */
import { durationSchema, sizeSchema, type ConfigOf } from '../../core/connector.ts';

/** The placeholders a `path` may hold; anything else in braces is rejected by the schema. */
export const PATH_PLACEHOLDERS = ['topic', 'partition', 'date', 'yyyy', 'mm', 'dd', 'hh'] as const;

/** A path template: any text, with `{...}` only around a known placeholder. */
export const PATH_PATTERN = `^(?:[^{}]|\\{(?:${PATH_PLACEHOLDERS.join('|')})\\})+$`;

/** The file sink's config schema, validated by the spec loader and rendered into its README. */
export const fileSinkSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['path'],
  properties: {
    path: {
      type: 'string',
      pattern: PATH_PATTERN,
      description:
        'The file to append to, as a template. {topic} and {partition} come from the record; {date} (YYYY-MM-DD), {yyyy}, {mm}, {dd} and {hh} from its timestamp, in UTC. A relative path resolves against the working directory of the sluice process. Missing parent directories are created. With tasks > 1 the path must hold {partition}, so that no two tasks append to one file.',
      examples: ['data/out/clicks.jsonl', 'data/out/{topic}/{date}/part-{partition}.jsonl'],
    },
    format: {
      type: 'string',
      enum: ['value', 'envelope'],
      default: 'value',
      description:
        'What each line holds. value: the record value, as is when it is JSON (line breaks between tokens become spaces), else as a JSON string; a tombstone writes null. envelope: an object {topic, partition, offset, timestamp, key, value, headers}, where offset is a number (a string beyond 2^53), key and value are embedded the same way, and headers map names to UTF-8 strings. Bytes that are not valid UTF-8 are decoded with U+FFFD in their place.',
    },
    roll_bytes: {
      ...sizeSchema,
      default: '128MiB',
      description:
        'Roll a file before a write would take it past this size; a single line larger than this gets a file of its own. 0 turns rolling by size off. A rolled file is renamed with a zero-padded sequence number before its extension (clicks.jsonl becomes clicks.000001.jsonl), one higher than any already there, so names sort by age and a roll never overwrites a file.',
    },
    roll_interval: {
      ...durationSchema,
      description:
        'Roll a file once it is this old, measured from its creation, even when no record arrives, so downstream jobs can pick up closed files. Unset: files roll by size only.',
      examples: ['1h'],
    },
    max_open_files: {
      type: 'integer',
      minimum: 1,
      default: 64,
      description:
        'How many files a task keeps open between batches. Past it, the least recently written files are closed after a batch; they reopen on their next write. Matters for date templates, which leave a trail of files that are no longer written.',
    },
  },
} as const;

/** A validated file sink config, defaults filled in. */
export type FileSinkConfig = ConfigOf<typeof fileSinkSchema>;
