/**
 * The file-tail config schema: the one source of truth for the config's validation, its TypeScript
 * type ({@link FileTailConfig}) and the generated README.
 */
import { durationSchema, sizeSchema, type ConfigOf } from '../../core/connector.ts';

const globList = { type: 'array', items: { type: 'string', minLength: 1 } } as const;

const multilineSchema = {
  type: 'object',
  additionalProperties: false,
  description:
    'How lines join into one event, for stack traces and other records that span lines. Give exactly one of start_pattern and continuation_pattern. ' +
    'An event is emitted when the next event begins, when no byte has arrived in its file for flush_timeout, or when its file is released. ' +
    'Its value is its lines joined with \\n, and file.offset is the offset of its first line.',
  properties: {
    start_pattern: {
      type: 'string',
      minLength: 1,
      description: 'A JavaScript regular expression; a line it matches begins a new event, and every other line joins the current one. Lines before the first match form an event of their own.',
      examples: ['^\\d{4}-\\d{2}-\\d{2}[T ]'],
    },
    continuation_pattern: {
      type: 'string',
      minLength: 1,
      description: 'A JavaScript regular expression; a line it matches joins the current event, and every other line begins a new one.',
      examples: ['^(\\s+at |\\s+\\.\\.\\.|Caused by:)'],
    },
    flush_timeout: {
      ...durationSchema,
      default: '1s',
      description: 'How long an event waits for more lines after the last byte arrived in its file before it is emitted as complete.',
    },
  },
  oneOf: [{ required: ['start_pattern'] }, { required: ['continuation_pattern'] }],
} as const;

/** The file-tail source's config schema, validated by the spec loader and rendered into its README. */
export const fileTailSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['paths'],
  properties: {
    paths: {
      ...globList,
      minItems: 1,
      description:
        'Glob patterns of the files to follow. * and ? match within one path segment, ** matches any number of directories, [abc] and {a,b} as in the shell; ' +
        '* also matches names beginning with a dot. Relative patterns resolve against the working directory of the sluice process. Files that appear while ' +
        'running are picked up. After a restart a file is found again only through these patterns (or in the directory it was last seen in), so to finish reading ' +
        'a file rotated while sluice was stopped, its rotated name should match too, e.g. /var/log/app/*.log* to include app.log.1.',
      examples: [['/var/log/app/*.log'], ['/var/log/nginx/access.log*', '/srv/*/logs/**/*.log']],
    },
    exclude: {
      ...globList,
      default: [],
      description: 'Glob patterns of files to leave out even though paths matches them. A pattern without a / is matched against the file name alone, so *.gz leaves out compressed rotations anywhere.',
      examples: [['*.gz', '/var/log/app/debug-*.log']],
    },
    start_at: {
      type: 'string',
      enum: ['beginning', 'end'],
      default: 'beginning',
      description:
        'Where reading starts in a file without a checkpoint. beginning reads it whole. end skips what the file holds when the connector first starts ' +
        '(when it has no checkpoint at all), and after a restart skips files unchanged since the last checkpoint; files that appear while running, and files ' +
        'changed while sluice was stopped, are always read from the beginning, since their content is new (a rotation creates exactly such files).',
    },
    format: {
      type: 'string',
      enum: ['lines', 'json', 'multiline'],
      default: 'lines',
      description:
        'What a record is. lines: one record per line, the value being its bytes without the newline (and without a trailing \\r). ' +
        'json: one record per line, the value being the line when it is valid JSON; a line that is not is sent as a JSON string holding the line, with the ' +
        'header file.invalid_json set to true, so nothing is dropped and downstream JSON consumers still parse every value (pieces of a line cut at max_line_bytes are sent the same way); blank lines are skipped. ' +
        'multiline: lines joined into events by the multiline settings.',
    },
    multiline: multilineSchema,
    key_field: {
      type: 'string',
      minLength: 1,
      description:
        'With format json: the field whose value becomes the record key, so records with the same value go to the same partition. A dotted name (user.id) reaches ' +
        'into nested objects. A string is used as its UTF-8 bytes, any other value as its JSON text. Records without the field, and invalid JSON, get no key.',
      examples: ['user_id'],
    },
    max_line_bytes: {
      ...sizeSchema,
      default: '1MiB',
      description:
        'The largest record value. A longer line (or multiline event) is never dropped: it is cut into records of at most this size, at UTF-8 character ' +
        'boundaries, each carrying the header file.split: more, except the last, which carries file.split: end.',
    },
    partial_line_timeout: {
      ...durationSchema,
      default: '5s',
      description:
        'How long a last line without its newline is held back waiting for the newline. After that, with no new byte in the file, it is emitted as it is, and bytes written after it start a new line.',
    },
    rotate_wait: {
      ...durationSchema,
      default: '5s',
      description:
        'How long a file that was deleted or renamed out of paths is still followed after its last byte was read, since a writer may keep appending to it until it reopens its log. Then it is released and its descriptor closed.',
    },
    poll_interval: {
      ...durationSchema,
      default: '1s',
      description:
        'How often the paths are scanned for new, renamed and deleted files and every followed file is checked for growth, besides the change notifications of the file watcher. With use_polling it is the only source of change.',
    },
    use_polling: {
      type: 'boolean',
      default: false,
      description:
        'Find changes by stat-ing the files every poll_interval instead of through file system notifications (inotify). Use it on network and some container file systems that send no notifications. The connector also falls back to polling by itself when the watcher fails, e.g. when the inotify watch limit is reached.',
    },
    batch_bytes: {
      ...sizeSchema,
      default: '4MiB',
      description: 'Roughly the most bytes one batch reads, across files. A batch is appended to the log and checkpointed as a whole, so after a crash at most one batch is read again.',
    },
    batch_records: {
      type: 'integer',
      minimum: 1,
      maximum: 1000000,
      default: 10000,
      description: 'The most records one batch holds.',
    },
  },
  allOf: [
    {
      if: { type: 'object', properties: { format: { const: 'multiline' } }, required: ['format'] },
      then: { required: ['multiline'] },
      else: { properties: { multiline: false } },
    },
    {
      if: { type: 'object', properties: { format: { const: 'json' } }, required: ['format'] },
      else: { properties: { key_field: false } },
    },
  ],
} as const;

/** A validated file-tail config, defaults filled in. */
export type FileTailConfig = ConfigOf<typeof fileTailSchema>;
