import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { murmur2, partitionForKey } from './partitioner.ts';

// Verbatim from apache/kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java,
// testMurmur2 (inputs are ASCII, so Java's getBytes() and Buffer.from agree).
const KAFKA_VECTORS: ReadonlyArray<[string, number]> = [
  ['21', -973932308],
  ['foobar', -790332482],
  ['a-little-bit-long-string', -985981536],
  ['a-little-bit-longer-string', -1486304829],
  ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
  ['abc', 479470107],
];

/**
 * A line-by-line BigInt transliteration of Kafka's Utils.murmur2, deliberately slow and naive, so
 * the property test below compares the optimised code against something that obviously follows
 * the Java source (the Kafka vectors never exercise a 1-byte tail or bytes >= 0x80).
 */
function referenceMurmur2(data: Uint8Array): number {
  const i32 = (x: bigint): bigint => BigInt.asIntN(32, x);
  const u32 = (x: bigint): bigint => BigInt.asUintN(32, x);
  const m = 0x5bd1e995n;
  const length = data.length;
  let h = i32(0x9747b28cn ^ BigInt(length));
  for (let i = 0; i < Math.floor(length / 4); i++) {
    const i4 = i * 4;
    let k = i32(
      BigInt(data[i4]!) + (BigInt(data[i4 + 1]!) << 8n) + (BigInt(data[i4 + 2]!) << 16n) + (BigInt(data[i4 + 3]!) << 24n),
    );
    k = i32(k * m);
    k = i32(k ^ (u32(k) >> 24n));
    k = i32(k * m);
    h = i32(h * m);
    h = i32(h ^ k);
  }
  const tail = length & ~3;
  // Java's `switch (length % 4)` falls through from case 3 to case 1; the project's tsconfig forbids
  // fallthrough, so each case is an if on the same remainder.
  const rest = length % 4;
  if (rest === 3) h = i32(h ^ (BigInt(data[tail + 2]!) << 16n));
  if (rest === 3 || rest === 2) h = i32(h ^ (BigInt(data[tail + 1]!) << 8n));
  if (rest === 3 || rest === 2 || rest === 1) {
    h = i32(h ^ BigInt(data[tail]!));
    h = i32(h * m);
  }
  h = i32(h ^ (u32(h) >> 13n));
  h = i32(h * m);
  h = i32(h ^ (u32(h) >> 15n));
  return Number(h);
}

describe('murmur2', () => {
  // Pins that murmur2 returns exactly the signed ints Kafka's own unit test expects.
  it.each(KAFKA_VECTORS)('matches Kafka UtilsTest for %j', (input, expected) => {
    expect(murmur2(Buffer.from(input, 'utf8'))).toBe(expected);
  });

  // Pins agreement with the Java algorithm on inputs Kafka's vectors miss: every tail length, high bytes, empty input.
  it('matches a literal transliteration of the Java code on arbitrary bytes', () => {
    expect(murmur2(Buffer.alloc(0))).toBe(referenceMurmur2(new Uint8Array(0)));
    expect(murmur2(Buffer.from([0xff]))).toBe(referenceMurmur2(new Uint8Array([0xff])));
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        expect(murmur2(Buffer.from(bytes))).toBe(referenceMurmur2(bytes));
      }),
      { numRuns: 2000 },
    );
  });

  // Pins that a Buffer viewing the middle of a larger allocation hashes only its own bytes.
  it('hashes a Buffer slice by its own bytes, not the underlying ArrayBuffer', () => {
    const big = Buffer.from('xxfoobaryy', 'utf8');
    expect(murmur2(big.subarray(2, 8))).toBe(-790332482);
  });
});

describe('partitionForKey', () => {
  // Pins Kafka's toPositive-and-modulo mapping, derived by hand from the Kafka vectors above:
  // e.g. '21' → -973932308 & 0x7fffffff = 1173551340, and 1173551340 % 100 = 40.
  it.each([
    ['21', 3, 0],
    ['21', 100, 40],
    ['foobar', 10, 6],
    ['foobar', 100, 66],
    ['a-little-bit-long-string', 3, 2],
    ['a-little-bit-long-string', 12, 8],
    ['a-little-bit-longer-string', 10, 9],
    ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', 100, 77],
    ['abc', 12, 3],
    ['abc', 1, 0],
  ] as const)('key %j over %i partitions → %i', (key, partitions, expected) => {
    expect(partitionForKey(Buffer.from(key, 'utf8'), partitions)).toBe(expected);
  });

  // Pins that a negative hash is masked (Kafka's toPositive), not negated with Math.abs.
  it('masks the sign bit rather than taking the absolute value', () => {
    const h = murmur2(Buffer.from('21', 'utf8'));
    expect(h).toBeLessThan(0);
    expect(partitionForKey(Buffer.from('21', 'utf8'), 2 ** 31 - 1)).toBe(h & 0x7fffffff);
    expect(h & 0x7fffffff).not.toBe(Math.abs(h));
  });

  // Pins that every key maps into [0, numPartitions).
  it('always returns a partition in range', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 32 }), fc.integer({ min: 1, max: 10_000 }), (bytes, n) => {
        const p = partitionForKey(Buffer.from(bytes), n);
        return Number.isInteger(p) && p >= 0 && p < n;
      }),
    );
  });
});
