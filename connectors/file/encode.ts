/**
 * Turns records into JSON lines. Every line is one JSON value with no line break inside it, so a
 * file is whole exactly when it ends with '\n', which is what the torn-line cut relies on.
 */
import type { SinkRecord } from '../../core/connector.ts';

const MAX_SAFE_OFFSET = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Bytes as a JSON text for embedding in a line: the bytes themselves when they are JSON, else a
 * JSON string of their UTF-8 decoding (invalid sequences become U+FFFD); null stays null.
 *
 * In valid JSON a CR or LF can only be whitespace between tokens (strings must escape them), so
 * replacing each with a space keeps the value and makes it one line without reserialising it,
 * which would round large numbers.
 */
export function jsonText(bytes: Buffer | null): string {
  if (bytes === null) return 'null';
  const text = bytes.toString('utf8');
  try {
    JSON.parse(text);
  } catch {
    return JSON.stringify(text);
  }
  return text.includes('\n') || text.includes('\r') ? text.replace(/[\r\n]/g, ' ') : text;
}

/** The line for `format: value`, without its '\n'. */
export function valueLine(record: SinkRecord): string {
  return jsonText(record.value);
}

/** The line for `format: envelope`, without its '\n'. */
export function envelopeLine(record: SinkRecord): string {
  const offset = record.offset <= MAX_SAFE_OFFSET ? String(record.offset) : `"${record.offset}"`;
  let headers = '';
  for (const [name, value] of Object.entries(record.headers)) {
    headers += `${headers === '' ? '' : ','}${JSON.stringify(name)}:${JSON.stringify(value.toString('utf8'))}`;
  }
  return (
    `{"topic":${JSON.stringify(record.topic)},"partition":${record.partition},"offset":${offset},` +
    `"timestamp":${Number.isFinite(record.timestamp) ? record.timestamp : null},"key":${jsonText(record.key)},"value":${jsonText(record.value)},"headers":{${headers}}}`
  );
}
