/**
 * Converts between the log's bytes and the JSON-shaped {@link Message} transforms work on. Only
 * connectors with transforms pay for it; the others pass bytes straight through.
 *
 * Bytes are reused whenever a transform left a part unchanged (same value by identity), so an
 * untouched value keeps its exact original bytes rather than a re-serialisation of them.
 */
import type { Headers } from '../log/types.ts';
import type { Message } from '../transforms/index.ts';

/** The original bytes behind a message, kept to spot unchanged parts and for the DLQ. */
export interface DecodedMessage {
  message: Message;
  keyBytes: Buffer | null;
  valueBytes: Buffer | null;
  parsedKey: unknown;
  parsedValue: unknown;
  headerBytes: Headers;
}

/** JSON when the bytes parse as JSON, otherwise the UTF-8 text; null stays null. */
export function parseBytes(bytes: Buffer | null): unknown {
  if (bytes === null) return null;
  const text = bytes.toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export function decodeMessage(topic: string, key: Buffer | null, value: Buffer | null, headers: Headers, timestamp: number): DecodedMessage {
  const parsedKey = parseBytes(key);
  const parsedValue = parseBytes(value);
  const textHeaders: Record<string, string> = {};
  for (const name in headers) textHeaders[name] = headers[name]!.toString('utf8');
  return {
    message: { topic, key: parsedKey, value: parsedValue, headers: textHeaders, timestamp },
    keyBytes: key,
    valueBytes: value,
    parsedKey,
    parsedValue,
    headerBytes: headers,
  };
}

function encodePart(part: unknown, original: unknown, originalBytes: Buffer | null, textAsIs: boolean): Buffer | null {
  if (part === original) return originalBytes;
  if (part === null || part === undefined) return null;
  // A key that is a plain string is written as its text, so string keys partition the way a Kafka
  // producer's string keys do; a changed string value is JSON, like every other value.
  if (typeof part === 'string' && textAsIs) return Buffer.from(part, 'utf8');
  return Buffer.from(JSON.stringify(part), 'utf8');
}

export function encodeMessage(decoded: DecodedMessage, message: Message): { key: Buffer | null; value: Buffer | null; headers: Headers; timestamp: number } {
  let headers = decoded.headerBytes;
  if (message.headers !== decoded.message.headers) {
    headers = {};
    for (const name in message.headers) headers[name] = Buffer.from(message.headers[name]!, 'utf8');
  }
  return {
    key: encodePart(message.key, decoded.parsedKey, decoded.keyBytes, true),
    value: encodePart(message.value, decoded.parsedValue, decoded.valueBytes, false),
    headers,
    timestamp: message.timestamp,
  };
}
