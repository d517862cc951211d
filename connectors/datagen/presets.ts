/**
 * The event generators. Event number `i` is a pure function of (seed, preset, i, start time, rate):
 * each event seeds its own small PRNG from a hash of the seed and `i`, and every per-user or
 * per-customer trait (user agent, currency, session) is a hash of the seed and that entity. Nothing
 * depends on earlier events, so a task can start at any index and a restart regenerates the same
 * bytes.
 */
import type { JsonValue } from '../../core/connector.ts';

/** The generators `preset` selects. */
export type Preset = 'clickstream' | 'orders';

/** One generated event: the record key (the entity the log partitions by) and the JSON value. */
export interface GeneratedEvent {
  readonly key: string;
  readonly value: { readonly [field: string]: JsonValue };
}

/** What every generator needs besides the index. */
export interface GeneratorOptions {
  readonly seed: number;
  /** Event time of event 0, in ms since the epoch. */
  readonly startMs: number;
  /** Events per second that event times are spaced for; 0 spaces them 1 ms apart. */
  readonly rate: number;
}

/** Generates event `index` (0-based) of `preset`. Same arguments, same event, byte for byte once JSON-encoded. */
export function generateEvent(preset: Preset, options: GeneratorOptions, index: number): GeneratedEvent {
  return preset === 'orders' ? order(options, index) : click(options, index);
}

/** The event time of event `index`: spaced for `rate`, independent of when it is generated. */
export function eventTime(options: GeneratorOptions, index: number): number {
  return options.startMs + (options.rate > 0 ? Math.round((index * 1000) / options.rate) : index);
}

// ---------------------------------------------------------------------------------------------
// Hashing and the per-event PRNG

// Distinct salts keep the streams of different purposes (events of each preset, users, sessions...)
// uncorrelated even where their other inputs coincide.
const SALT = { click: 1, order: 2, user: 3, session: 4, agent: 5, customer: 6, currency: 7 } as const;

/** MurmurHash3's 32-bit finaliser: every input bit flips about half the output bits. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Hashes safe integers (seeds and indexes may pass 2^32, so both halves count) to 32 bits. */
function hash(...words: number[]): number {
  let h = 0x9e3779b9;
  for (const word of words) {
    h = fmix32(h ^ fmix32((word >>> 0) + 0x6a09e667));
    h = fmix32(h ^ fmix32((Math.floor(word / 0x1_0000_0000) >>> 0) + 0xbb67ae85));
  }
  return h;
}

/** mulberry32: tiny and fast, with a period of 2^32, plenty for the handful of draws one event makes. */
class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.next() / 0x1_0000_0000;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** Picks by weight; `choices` are [value, weight] pairs. */
  weighted<T>(choices: ReadonlyArray<readonly [T, number]>): T {
    let total = 0;
    for (const [, weight] of choices) total += weight;
    let r = this.float() * total;
    for (const [value, weight] of choices) {
      r -= weight;
      if (r < 0) return value;
    }
    return choices[choices.length - 1]![0];
  }

  /** Skewed towards 0, as activity is: a few users and customers account for most events. */
  skewed(n: number): number {
    const f = this.float();
    return Math.floor(f * f * n);
  }
}

const hex8 = (n: number): string => n.toString(16).padStart(8, '0');

// ---------------------------------------------------------------------------------------------
// Shared catalog

interface Product {
  readonly sku: string;
  readonly slug: string;
  readonly category: string;
  /** In cents, so totals add up exactly. */
  readonly cents: number;
}

const PRODUCTS: readonly Product[] = [
  { sku: 'SKU-1001', slug: 'trail-running-shoes', category: 'shoes', cents: 8999 },
  { sku: 'SKU-1002', slug: 'leather-boots', category: 'shoes', cents: 14950 },
  { sku: 'SKU-1003', slug: 'canvas-sneakers', category: 'shoes', cents: 4900 },
  { sku: 'SKU-1004', slug: 'wool-socks-3-pack', category: 'shoes', cents: 1499 },
  { sku: 'SKU-2001', slug: 'rain-jacket', category: 'outerwear', cents: 11900 },
  { sku: 'SKU-2002', slug: 'down-vest', category: 'outerwear', cents: 7950 },
  { sku: 'SKU-2003', slug: 'fleece-hoodie', category: 'outerwear', cents: 5499 },
  { sku: 'SKU-3001', slug: 'merino-t-shirt', category: 'tops', cents: 3900 },
  { sku: 'SKU-3002', slug: 'linen-shirt', category: 'tops', cents: 4450 },
  { sku: 'SKU-3003', slug: 'graphic-tee', category: 'tops', cents: 1999 },
  { sku: 'SKU-4001', slug: 'slim-chinos', category: 'bottoms', cents: 5900 },
  { sku: 'SKU-4002', slug: 'hiking-shorts', category: 'bottoms', cents: 3499 },
  { sku: 'SKU-4003', slug: 'selvedge-jeans', category: 'bottoms', cents: 9800 },
  { sku: 'SKU-5001', slug: 'daypack-20l', category: 'bags', cents: 6500 },
  { sku: 'SKU-5002', slug: 'duffel-bag', category: 'bags', cents: 8900 },
  { sku: 'SKU-5003', slug: 'canvas-tote', category: 'bags', cents: 1800 },
  { sku: 'SKU-6001', slug: 'steel-water-bottle', category: 'accessories', cents: 2499 },
  { sku: 'SKU-6002', slug: 'beanie', category: 'accessories', cents: 1999 },
  { sku: 'SKU-6003', slug: 'sunglasses', category: 'accessories', cents: 12900 },
  { sku: 'SKU-6004', slug: 'leather-belt', category: 'accessories', cents: 3500 },
];

const CATEGORIES = [...new Set(PRODUCTS.map((p) => p.category))];

// ---------------------------------------------------------------------------------------------
// clickstream

const SITE = 'https://shop.example.com';
const USERS = 5000;
const SESSION_MS = 30 * 60_000;

const USER_AGENTS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36',
  'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51',
];

const EXTERNAL_REFERRERS = [
  'https://www.google.com/',
  'https://www.bing.com/',
  'https://duckduckgo.com/',
  'https://t.co/',
  'https://www.facebook.com/',
  'https://www.instagram.com/',
  'https://news.ycombinator.com/',
];

const SEARCH_TERMS = ['running shoes', 'rain jacket', 'jeans', 'gift', 'backpack', 'wool', 'sale', 'boots', 'sunglasses', 'hoodie'];

type ClickEvent = 'page_view' | 'click' | 'search' | 'add_to_cart' | 'purchase';

const EVENTS: ReadonlyArray<readonly [ClickEvent, number]> = [
  ['page_view', 60],
  ['click', 20],
  ['search', 8],
  ['add_to_cart', 8],
  ['purchase', 4],
];

function page(rng: Rng): string {
  const kind = rng.weighted([
    ['home', 20],
    ['product', 50],
    ['category', 25],
    ['cart', 5],
  ] as const);
  switch (kind) {
    case 'home':
      return `${SITE}/`;
    case 'product':
      return `${SITE}/products/${rng.pick(PRODUCTS).slug}`;
    case 'category':
      return `${SITE}/c/${rng.pick(CATEGORIES)}`;
    case 'cart':
      return `${SITE}/cart`;
  }
}

/** Where a page view came from: nowhere (typed in, null), another site or another page of the shop. */
function referrerOf(rng: Rng): string | null {
  const source = rng.weighted([
    ['direct', 20],
    ['external', 30],
    ['internal', 50],
  ] as const);
  if (source === 'direct') return null;
  return source === 'external' ? rng.pick(EXTERNAL_REFERRERS) : page(rng);
}

/** A UUID v4 in form, drawn from `rng`. */
function uuid(rng: Rng): string {
  const a = hex8(rng.next());
  const b = hex8(rng.next());
  const c = hex8(rng.next());
  const d = hex8(rng.next());
  const variant = (8 + (parseInt(c[0]!, 16) & 3)).toString(16);
  return `${a}-${b.slice(0, 4)}-4${b.slice(5, 8)}-${variant}${c.slice(1, 4)}-${c.slice(4)}${d}`;
}

function click(options: GeneratorOptions, index: number): GeneratedEvent {
  const { seed } = options;
  const rng = new Rng(hash(seed, SALT.click, index));
  const userNo = rng.skewed(USERS);
  const userId = `u_${hex8(hash(seed, SALT.user, userNo))}`;
  const tsMs = eventTime(options, index);
  // A session is the user's activity within one 30-minute window of event time: a pure function
  // of the event, where real sessionisation would need the previous events.
  const sessionId = uuid(new Rng(hash(seed, SALT.session, userNo, Math.floor(tsMs / SESSION_MS))));
  const userAgent = USER_AGENTS[hash(seed, SALT.agent, userNo) % USER_AGENTS.length]!;
  const event = rng.weighted(EVENTS);
  let url: string;
  let referrer: string | null;
  switch (event) {
    case 'page_view':
      url = page(rng);
      referrer = referrerOf(rng);
      break;
    case 'click':
    case 'add_to_cart':
      url = `${SITE}/products/${rng.pick(PRODUCTS).slug}`;
      referrer = rng.float() < 0.5 ? `${SITE}/c/${rng.pick(CATEGORIES)}` : `${SITE}/`;
      break;
    case 'search':
      url = `${SITE}/search?q=${encodeURIComponent(rng.pick(SEARCH_TERMS))}`;
      referrer = page(rng);
      break;
    case 'purchase':
      url = `${SITE}/checkout/complete`;
      referrer = `${SITE}/checkout`;
      break;
  }
  return {
    key: userId,
    value: {
      user_id: userId,
      session_id: sessionId,
      url,
      referrer,
      user_agent: userAgent,
      event,
      ts: new Date(tsMs).toISOString(),
      seq: index,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// orders

const CUSTOMERS = 2000;

const CURRENCIES = [
  ['USD', 60],
  ['EUR', 25],
  ['GBP', 15],
] as const;

const STATUSES = [
  ['created', 15],
  ['paid', 45],
  ['shipped', 25],
  ['delivered', 10],
  ['cancelled', 4],
  ['refunded', 1],
] as const;

function order(options: GeneratorOptions, index: number): GeneratedEvent {
  const { seed } = options;
  const rng = new Rng(hash(seed, SALT.order, index));
  const customerNo = rng.skewed(CUSTOMERS);
  const customerId = `c_${hex8(hash(seed, SALT.customer, customerNo))}`;
  // A customer always pays in the same currency, as a real shop's customers mostly do.
  const currency = new Rng(hash(seed, SALT.currency, customerNo)).weighted(CURRENCIES);
  const lines = rng.weighted([
    [1, 50],
    [2, 30],
    [3, 15],
    [4, 5],
  ] as const);
  const chosen = new Set<Product>();
  while (chosen.size < lines) chosen.add(rng.pick(PRODUCTS));
  let totalCents = 0;
  const items = [...chosen].map((product) => {
    const qty = rng.weighted([
      [1, 70],
      [2, 20],
      [3, 10],
    ] as const);
    totalCents += qty * product.cents;
    return { sku: product.sku, qty, price: product.cents / 100 };
  });
  return {
    key: customerId,
    value: {
      // The index makes order ids unique across tasks and restarts without coordination.
      order_id: `ord_${String(index + 1).padStart(10, '0')}`,
      customer_id: customerId,
      items,
      total: totalCents / 100,
      currency,
      status: rng.weighted(STATUSES),
      ts: new Date(eventTime(options, index)).toISOString(),
      seq: index,
    },
  };
}
