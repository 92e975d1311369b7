/** The service suite's results and context (service-suite.ts, service-subscribe.ts). */
import type { SearchResult } from './search.js';
import type { BenchTopology } from './topology.js';
import type { TrialContext } from './trial.js';

export const SERVICE_TIERS = ['portable', 'batched', 'kernel'] as const;
export type ServiceTier = (typeof SERVICE_TIERS)[number];

export interface ScrapeTimeTrial {
  repeat: number;
  tier: ServiceTier;
  flows: number;
  subscribers: number;
  /** Every timed render, ms. */
  renderMs: number[];
  /** Every flow's stats() within those renders, ms. */
  readMs: number[];
  bytes: number;
  series: number;
  /** Time to apply the flows (not a result: a sanity figure). */
  applyS: number;
}

export interface CapacityTrial {
  repeat: number;
  tier: ServiceTier;
  scraping: boolean;
  search: SearchResult;
  /** Scrapes made during the search, their render time in the daemon and their time at the client (request to last byte), ms. */
  scrapes?: { count: number; failed: number; renderMs: number[]; clientMs: number[]; bytes: number };
}

/** (c): one probe run (service-subscribe.ts). */
export interface SubscribeTrial {
  repeat: number;
  tier: ServiceTier;
  /** POST sent → first datagram at the new subscriber, ms, one per sample. */
  firstPacketMs: number[];
  /** POST sent → its response, ms. */
  postMs: number[];
  /** Samples whose subscriber got nothing within the probe's timeout. */
  timeouts: number;
}

export interface ServiceResults {
  scrape: ScrapeTimeTrial[];
  capacity: CapacityTrial[];
  subscribe: SubscribeTrial[];
  /** Tiers that could not run, and why. */
  unavailable: Record<string, string>;
}

export const emptyServiceResults = (): ServiceResults => ({ scrape: [], capacity: [], subscribe: [], unavailable: {} });

export interface ServiceContext {
  topo: BenchTopology;
  /** For (b): the relay suite's trial context less the relay's pids. */
  trial: Omit<TrialContext, 'relayPids'>;
  repeats: number;
  quick: boolean;
  trialSeconds: number;
  listenPort: number;
  firstSubscriberPort: number;
  tiers: readonly ServiceTier[];
  log: (msg: string) => void;
  onProgress: () => void;
}
