/**
 * Turns records into JSON lines. Every line is one JSON value with no line break inside it, so a
 * file is whole exactly when it ends with '\n', which is what the torn-line cut relies on.
 */
import { jsonText, type SinkRecord } from '../../core/connector.ts';

const MAX_SAFE_OFFSET = BigInt(Number.MAX_SAFE_INTEGER);

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
