/**
 * Turns sink records into request bodies: one JSON text per record, then bodies of at most
 * `maxRecords` records and `maxBytes` bytes, in record order.
 */
import { jsonText, type SinkRecord } from '../../core/connector.ts';

/** What one request carries. */
export interface EncodedRequest {
  /** The exact bytes sent, and signed. */
  readonly body: Buffer;
  /** How many records the body holds. */
  readonly records: number;
}

export interface EncodeOptions {
  readonly format: 'json_array' | 'ndjson';
  readonly body: 'value' | 'envelope';
  readonly maxRecords: number;
  readonly maxBytes: number;
}

/** One record as the JSON text the `body` setting asks for. */
export function encodeRecord(record: SinkRecord, body: EncodeOptions['body']): string {
  if (body === 'value') return jsonText(record.value);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(record.headers)) headers[name] = value.toString('utf8');
  // Built by hand so the key and value keep their original JSON bytes; the offset is a string
  // because JSON numbers past 2^53 lose precision in most receivers.
  return (
    `{"topic":${JSON.stringify(record.topic)},"partition":${record.partition},"offset":"${record.offset}",` +
    `"timestamp":${record.timestamp},"key":${jsonText(record.key)},"value":${jsonText(record.value)},"headers":${JSON.stringify(headers)}}`
  );
}

/**
 * Splits records into request bodies, in order. A body closes before the record that would take it
 * past `maxRecords` or `maxBytes`; a record larger than `maxBytes` on its own goes alone, so the
 * receiver, not the sink, decides whether it is too large.
 */
export function encodeRequests(records: readonly SinkRecord[], options: EncodeOptions): EncodedRequest[] {
  const requests: EncodedRequest[] = [];
  let texts: string[] = [];
  let bytes = 0;
  const array = options.format === 'json_array';
  // A JSON array costs two brackets plus a comma between items; NDJSON a newline after each item.
  const framing = array ? 2 : 0;
  const separatorBefore = (): number => (array ? (texts.length > 0 ? 1 : 0) : 1);
  const flush = (): void => {
    if (texts.length === 0) return;
    const text = array ? `[${texts.join(',')}]` : `${texts.join('\n')}\n`;
    requests.push({ body: Buffer.from(text, 'utf8'), records: texts.length });
    texts = [];
    bytes = 0;
  };
  for (const record of records) {
    const text = encodeRecord(record, options.body);
    const length = Buffer.byteLength(text, 'utf8');
    if (texts.length > 0 && (texts.length >= options.maxRecords || framing + bytes + separatorBefore() + length > options.maxBytes)) flush();
    bytes += separatorBefore() + length;
    texts.push(text);
  }
  flush();
  return requests;
}
