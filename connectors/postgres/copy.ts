/**
 * COPY ... FROM STDIN over a `pg` client, without a streams library: a query object the client
 * submits like any other, which answers the server's CopyInResponse with prepared chunks. And the
 * COPY text format encoder for query parameters.
 */
import type pg from 'pg';
import type { Family } from '../sql-sink/type-mapping.ts';
import { pgDatetime, toParam, type Param, type RowSet } from '../sql-sink/values.ts';

/** The parts of pg's internal connection a COPY needs. */
interface CopyConnection {
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
}

/**
 * Runs `COPY ... FROM STDIN` (given as `text`) with `data` as its rows. Resolves with the number of
 * rows copied; rejects with the server's error (a bad value names its line) or the connection's.
 */
export function copyFrom(client: pg.Client, text: string, data: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let rows = 0;
    const finish = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      if (err) reject(err);
      else resolve(rows);
    };
    // The shape pg's Client drives a submitted query through (see pg/lib/client.js).
    const query = {
      submit(connection: CopyConnection): null {
        connection.query(text);
        return null;
      },
      handleCopyInResponse(connection: CopyConnection): void {
        // 64 KiB CopyData messages, as psql sends them.
        for (let at = 0; at < data.length; at += 65536) connection.sendCopyFromChunk(data.subarray(at, at + 65536));
        connection.endCopyFrom();
      },
      handleCommandComplete(msg: { text?: string }): void {
        const m = /^COPY (\d+)/.exec(msg.text ?? '');
        if (m) rows = Number(m[1]);
      },
      handleReadyForQuery(): void {
        finish(null);
      },
      handleError(err: Error): void {
        finish(err);
      },
      handleRowDescription(): void {},
      handleDataRow(): void {},
      handleEmptyQuery(): void {},
      handlePortalSuspended(): void {},
      handleCopyData(): void {},
    };
    (client as unknown as { query(q: unknown): void }).query(query);
  });
}

/** Encodes rows in COPY's text format: tab-separated, `\N` for null, backslash escapes. */
export function encodeCopyRows(rows: readonly (readonly Param[])[]): Buffer {
  const lines: string[] = new Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    let line = '';
    for (let j = 0; j < row.length; j++) {
      if (j > 0) line += '\t';
      line += copyField(row[j]!);
    }
    lines[i] = line;
  }
  return Buffer.from(lines.length === 0 ? '' : `${lines.join('\n')}\n`, 'utf8');
}

/**
 * The rows of `set` in COPY's text format, in buffers of about `chunkChars` characters each (whole
 * rows), byte for byte what {@link encodeCopyRows} makes of their parameters ({@link paramRows}).
 * This is the sink's hottest loop: it writes each value straight into the chunk's text, so a batch
 * allocates no parameter array per row and no string per line. No library fits: COPY encoders
 * (pg-copy-streams and the like) take finished lines or streams, the step this one skips. Throws
 * what {@link toParam} throws for a value the column cannot take.
 */
export function encodeCopyRowSet(set: RowSet, chunkChars: number): Buffer[] {
  const { columns, families, rows } = set;
  const width = columns.length;
  // Strings and numbers of most families are written as they are (escaped), datetime strings as
  // pgDatetime spells them, and anything else as toParam converts it.
  const plain: boolean[] = families.map((f) => !CONVERTED_STRINGS.has(f));
  const datetime: boolean[] = families.map((f) => f === 'timestamptz' || f === 'timestamp' || f === 'date');
  const out: Buffer[] = [];
  let text = '';
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    for (let j = 0; j < width; j++) {
      const value = row[columns[j]!];
      let field: string;
      if (typeof value === 'string') field = plain[j] ? copyEscape(value) : datetime[j] ? copyEscape(pgDatetime(value)) : copyField(toParam(value, families[j]!, PG));
      else if (plain[j] && typeof value === 'number') field = String(value);
      else field = copyField(toParam(value, families[j]!, PG));
      text += j === 0 ? field : `\t${field}`;
    }
    text += '\n';
    if (text.length >= chunkChars) {
      out.push(Buffer.from(text, 'utf8'));
      text = '';
    }
  }
  if (text.length > 0 || out.length === 0) out.push(Buffer.from(text, 'utf8'));
  return out;
}

/** Families whose string or number values {@link toParam} changes (JSON text, base64, datetimes). */
const CONVERTED_STRINGS: ReadonlySet<Family> = new Set<Family>(['json', 'binary', 'timestamp', 'timestamptz', 'date']);
const PG = { engine: 'postgres' } as const;

const COPY_SPECIAL = /[\\\n\r\t]/;

function copyEscape(text: string): string {
  if (!COPY_SPECIAL.test(text)) return text;
  return text.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t'));
}

function copyField(value: Param): string {
  if (value === null) return '\\N';
  switch (typeof value) {
    case 'string':
      return copyEscape(value);
    case 'number':
    case 'bigint':
      return String(value);
    case 'boolean':
      return value ? 't' : 'f';
    default:
      if (Buffer.isBuffer(value)) return `\\\\x${value.toString('hex')}`;
      return copyEscape(arrayLiteral(value));
  }
}

/** A Postgres array literal, `{1,NULL,"a b"}`, as pg writes array parameters. */
export function arrayLiteral(values: readonly Param[]): string {
  const parts = values.map((v): string => {
    if (v === null) return 'NULL';
    if (Array.isArray(v)) return arrayLiteral(v);
    if (Buffer.isBuffer(v)) return `"\\\\x${v.toString('hex')}"`;
    if (typeof v === 'boolean') return v ? 't' : 'f';
    const text = String(v);
    return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  });
  return `{${parts.join(',')}}`;
}
