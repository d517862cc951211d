/**
 * Kafka's default partitioner for keyed records. It must match Kafka bit for bit: a topic mirrored
 * from or to Kafka, or a consumer that assumes Kafka's key → partition mapping (co-partitioned
 * joins, per-key ordering), breaks silently if one key lands on a different partition here.
 */

const SEED = 0x9747b28c;
const M = 0x5bd1e995;
const R = 24;

/**
 * Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with Kafka's seed, returning the same signed 32-bit
 * int the Java code returns. Called by the log's append path for every keyed record, so it must not
 * allocate. Never throws.
 */
export function murmur2(data: Buffer): number {
  const length = data.length;
  // Math.imul, `| 0` and `^` keep every intermediate a wrapped int32, which is what Java's int
  // arithmetic does; plain `*` would go through doubles and lose the low bits.
  let h = (SEED ^ length) | 0;
  const end4 = length & ~3;

  for (let i = 0; i < end4; i += 4) {
    // The index is in bounds by the loop condition; `!` only silences noUncheckedIndexedAccess.
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> R;
    k = Math.imul(k, M);
    h = Math.imul(h, M);
    h ^= k;
  }

  // Java's switch falls through from case 3 to case 1; the nested ifs reproduce that.
  const rest = length & 3;
  if (rest > 0) {
    if (rest === 3) h ^= data[end4 + 2]! << 16;
    if (rest >= 2) h ^= data[end4 + 1]! << 8;
    h ^= data[end4]!;
    h = Math.imul(h, M);
  }

  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/**
 * The partition Kafka's producer picks for a non-null key: `toPositive(murmur2(key)) % numPartitions`.
 * Called by `Log.append` for records with a key and no explicit partition. `numPartitions` must be a
 * positive integer (the caller validates topic configs); otherwise the result is NaN or out of range.
 */
export function partitionForKey(key: Buffer, numPartitions: number): number {
  // Kafka's toPositive masks the sign bit instead of taking Math.abs, so that -2^31 still maps to a
  // valid partition; the mapping differs from abs for every negative hash, so it must be the mask.
  return (murmur2(key) & 0x7fffffff) % numPartitions;
}
