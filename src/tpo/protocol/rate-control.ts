/**
 * The data mover's rate control: a model of the path, not a reaction to
 * loss (BBR's approach). Random loss on a long link says nothing about
 * congestion, and halving on it is what caps TCP at 1/(RTT·√loss); instead the sender estimates
 *   - the bottleneck bandwidth: the highest delivery rate measured over the
 *     last 10 round trips (a windowed max filter), each round's at most
 *     what the whole round delivered, its random loss counted back in, and
 *   - the propagation delay: the minimum RTT (rtt.ts),
 * and paces at gain × bandwidth, cycling the gain (1.25, 0.75, then 1 for
 * six round trips) to probe for more bandwidth and drain what the probe
 * queued (gain-cycle.ts); the window of data in flight is 2 × bandwidth × min RTT (outside
 * the 1.25 round at most one BDP and CRUISE_QUEUE_MS), so the
 * queue it can build stays bounded, plus what the receiver holds back
 * before it acknowledges (its ack batch: `ackAllowanceBytes`). Startup
 * doubles the rate each round trip until the measured bandwidth stops
 * growing by 25 % for three rounds, or until the RTT shows a queue (a run
 * of samples, see onRttSample, or a whole round) while the bandwidth
 * stopped growing meanwhile, then drains the queue startup built: an RTT
 * inflated by a busy host (scheduling delay of the gateways, not a queue
 * at a bottleneck) while deliveries still grow does not end it (BBR ends
 * startup on delivery growth alone). A round whose RTT shows
 * a queue standing all round and whose loss is well above the path's
 * random loss (learned from rounds without a queue) holds the estimate at
 * 90 % of what was measured (the samples overstated the path), relaxing 2 %
 * per clean round. In the cruising part of the gain cycle, a queue that
 * stands (every RTT sample at least STANDING_QUEUE_MS above the minimum)
 * for at least STANDING_SPAN_MS, whatever the round length, holds it 3 %
 * lower (see onRoundEnd). The bandwidth window ages only with rounds that
 * measured the path. An operator cap bounds the pacing rate; over 20 % loss
 * in a round of 20 datagrams or more halves the estimate for the next
 * round, a brake for a link others saturate.
 */
import { HostDelayFilter } from './host-delay.js';
import { GainCycle } from './gain-cycle.js';

export const STARTUP_GAIN = 2.885; // 2/ln 2, BBR's
const INITIAL_WINDOW_RTT_MS = 100;
const BW_WINDOW_ROUNDS = 10;
const FULL_BW_GROWTH = 1.25;
const FULL_BW_ROUNDS = 3;
const CWND_GAIN = 2;
const HEAVY_LOSS = 0.2;
/** ... in a round of at least this many datagrams: one loss in a thin flow's round of four is 25 % and says nothing (it held replies a round trip). */
const HEAVY_LOSS_MIN_DATAGRAMS = 20;
const QUEUE_RTT_FACTOR = 1.25;
/** A round with this much loss while its RTT shows a full queue means the estimate was too high. */
const QUEUE_LOSS = 0.005;
const QUEUE_FULL_RTT_FACTOR = 1.4;
/** After such a round the estimate is held at this share of itself; the hold relaxes by RELAX per clean round. */
const QUEUE_BACKOFF = 0.9;
const RELAX = 1.02;
/** After a round with a standing queue (no overflow) the estimate is held at this share of itself. */
const STANDING_BACKOFF = 0.97;
/**
 * A standing queue: every RTT sample at least this far above the minimum.
 * Absolute, not a share of the RTT: what an interactive flow waits is the
 * queue's milliseconds whatever the path's length (25 % of a 100 ms path
 * let a 27 ms queue stand, and a request/response took 140-155 ms where
 * direct BBR took 101), and a busy host delays samples by milliseconds
 * whatever the path (on a 10 ms path 25 % was within a scheduling delay).
 */
const STANDING_QUEUE_MS = 5;
/** ... for at least this long (rounds in a row, however short): on a 10 ms path a round's few samples can all be late behind a busy host. */
const STANDING_SPAN_MS = 40;
/**
 * Outside the probe's 1.25 round the window holds at most this much queue
 * beyond one BDP (less on short paths, where 2 × BDP is less): an estimate
 * a few % above the bottleneck (late, bunched acks) otherwise fills the
 * window's second BDP with queue, 100 ms on a 100 ms path, and every
 * interactive flow waits behind it (measured at 50 Mbit/s, 100 ms: a queue of
 * 40-50 ms, request/response 150 ms against direct BBR's 102). 10 ms, only
 * without random loss: queue 8-14 ms, request/response 113-119 ms (1 % loss:
 * 118-131); 5 ms, every path, the drain ending early: 110-111 ms, same goodput.
 * On a path of 5 ms or less this is 2 × BDP as before.
 */
const CRUISE_QUEUE_MS = 5;
/** A round's delivery counts random loss back in up to this rate (onRoundEnd); above it the brake and the overflow hold decide. */
const MAX_RANDOM_LOSS = 0.1;
/** Holds in a row before the estimate is left alone until a clean round (0.9^4 = 0.66 at most). */
const MAX_HOLDS = 4;
/** Startup ends after this many RTT samples in a row show a queue (about 30 ms of acks at 50 Mbit/s: a scheduling stall of the host rarely lasts that long). */
const STARTUP_QUEUE_SAMPLES = 16;
/** The queue delay startup tolerates: an eighth of the minimum RTT, between these bounds (RFC 9406's eta). */
const STARTUP_QUEUE_MIN_MS = 4;
const STARTUP_QUEUE_MAX_MS = 16;

export type RatePhase = 'startup' | 'drain' | 'probe';

export interface RateControlOptions {
  /** Operator cap on the pacing rate, bytes/s (Infinity: none). */
  readonly maxRateBps?: number;
  /** Rate before any measurement, bytes/s; default 1 Mbit/s. */
  readonly initialRateBps?: number;
  /** Smallest window, bytes (a few segments keep a slow link moving). */
  readonly minWindowBytes?: number;
  /**
   * The first flight, bytes (default 10 datagrams of 1394 B). Once the
   * minimum RTT is known (the handshake's, before any ack), startup paces
   * it at STARTUP_GAIN × this per RTT, as BBR paces its initial window.
   */
  readonly initialWindowBytes?: number;
  /**
   * Bytes the window holds beyond gain × BDP for the receiver's
   * acknowledgement batching (default 0: acks come with every datagram).
   * A receiver that acks every N datagrams (or after its ack delay) holds
   * up to N unacknowledged datagrams that a BDP computed from the minimum
   * RTT does not count (the ack delay is subtracted from RTT samples); a
   * window smaller than that batch leaves every round waiting for the
   * receiver's ack timer, the delivery rate falls to a batch per timer,
   * the bandwidth estimate follows it and the window stays small: on
   * loopback (BDP a few datagrams) a transfer stuck at 4 Mbit/s. BBR
   * budgets for the same (Linux: bbr_quantization_budget, extra_acked).
   */
  readonly ackAllowanceBytes?: number;
}

export class RateControl {
  #phase: RatePhase = 'startup';
  readonly #cycle = new GainCycle();
  /** Per round of the window: the max delivery rate seen in it. */
  readonly #bwByRound: number[] = [];
  /** The max of #bwByRound (0 when empty): read for every datagram sent, so kept rather than computed. */
  #bwMax = 0;
  #fullBw = 0;
  #fullBwRounds = 0;
  #minRttMs = Infinity;
  #roundLost = 0;
  #roundDelivered = 0;
  #roundDatagrams = 0;
  #brake = 1;
  /** An upper bound on the estimate after rounds that overflowed the bottleneck's queue (BBRv2's bw_hi, simplified). */
  #bwCap = Infinity;
  readonly #hostDelay = new HostDelayFilter(BW_WINDOW_ROUNDS);
  /** Loss rate of rounds without a standing queue (EWMA): the path's random loss, which says nothing about the estimate. */
  #baseLoss = 0;
  /** This round produced a sample the estimate may rest on (not an app-limited one below it). */
  #measured = false;
  /**
   * This round acknowledged data sent while the sender had more to send
   * than its rate allowed. Only such rounds say anything about the path:
   * a sender with little to send (the far gateway, whose direction carries
   * replies and window updates) neither fills the bottleneck nor queues at
   * it, and its RTT carries the other direction's queue (its acks travel
   * with the bulk), so neither its growth stalling nor its RTT may end its
   * startup or hold its estimate (Linux BBR skips app-limited rounds too).
   */
  #roundPathSample = false;
  #roundStartMs = NaN;
  /** RTT samples in a row above the minimum by startup's queue allowance. */
  #queuedSamples = 0;
  /** The bandwidth estimate when that run began: the run ends startup only if the estimate stopped growing meanwhile. */
  #queuedRunBw = 0;
  /** Time the present run of standing-queue rounds began (NaN: none). */
  #standingSince = NaN;
  /** Rounds in a row that held the estimate down (overflow or standing queue). */
  #holdsInRow = 0;
  readonly #cap: number;
  readonly #initial: number;
  readonly #minWindow: number;
  readonly #initialWindow: number;
  readonly #ackAllowance: number;

  constructor(options: RateControlOptions = {}) {
    this.#cap = options.maxRateBps ?? Infinity;
    this.#initial = options.initialRateBps ?? 125_000;
    this.#minWindow = options.minWindowBytes ?? 4 * 1400;
    this.#initialWindow = Math.max(this.#minWindow, options.initialWindowBytes ?? 10 * 1394);
    this.#ackAllowance = options.ackAllowanceBytes ?? 0;
  }

  /** Where startup begins: the configured rate, or the initial window paced over the known minimum RTT if that is faster. */
  get #startRate(): number {
    return Number.isFinite(this.#minRttMs) && this.#minRttMs > 0
      ? Math.max(this.#initial, (STARTUP_GAIN * this.#initialWindow * 1000) / this.#minRttMs)
      : this.#initial;
  }

  /** The window before the first measurement: the initial window, or the start rate's worth of one RTT (100 ms while the RTT is unknown). */
  get #startWindow(): number {
    const rtt = Number.isFinite(this.#minRttMs) ? this.#minRttMs : INITIAL_WINDOW_RTT_MS;
    return Math.max(this.#initialWindow, (this.#initial * rtt) / 1000);
  }

  get phase(): RatePhase {
    return this.#phase;
  }

  /** The bottleneck bandwidth estimate, bytes/s (0 before a sample). */
  get bandwidthBps(): number {
    return this.#bwByRound.length ? Math.min(this.#bwMax, this.#bwCap) * this.#brake : 0;
  }

  get gain(): number {
    if (this.#phase === 'startup') return STARTUP_GAIN;
    if (this.#phase === 'drain') return 1 / STARTUP_GAIN;
    return this.#cycle.gain;
  }

  /** Bytes/s to pace at now. */
  get pacingRateBps(): number {
    const bw = this.bandwidthBps;
    let rate = bw > 0 ? this.gain * bw : this.#startRate;
    // The first samples of startup measure the tiny initial flight, not the
    // path: startup never paces below where it began.
    if (this.#phase === 'startup') rate = Math.max(rate, this.#startRate);
    return Math.min(this.#cap, rate);
  }

  /**
   * Bytes that may be in flight (unacknowledged) now: gain × BDP (at least
   * the minimum window; outside the probe round at most CRUISE_QUEUE_MS of
   * queue beyond one BDP) plus the receiver's ack batch once measured.
   */
  get windowBytes(): number {
    const bw = Math.min(this.#cap, this.bandwidthBps);
    // Before any measurement: the initial window alone (10 datagrams, more than an ack batch), as before.
    if (!(bw > 0) || !Number.isFinite(this.#minRttMs)) return this.#startWindow;
    const bdp = (bw * this.#minRttMs) / 1000;
    // On lossy paths too (it cost goodput there only with the drain's idle tail and the second ack batch; see CRUISE_QUEUE_MS).
    const cruising = this.#phase === 'probe' && this.gain <= 1;
    const window =
      this.#phase === 'startup' ? STARTUP_GAIN * bdp : cruising ? Math.min(CWND_GAIN * bdp, (bw * (this.#minRttMs + CRUISE_QUEUE_MS)) / 1000) : CWND_GAIN * bdp;
    const host = (bw * this.hostDelayMs) / 1000;
    // Ack batches: the one the receiver holds, and the one whose ack is on its way unless the BDP covers it.
    const acks = Math.max(this.#ackAllowance / 2, this.#ackAllowance - bdp);
    return Math.max(this.#minWindow, this.#phase === 'startup' ? Math.max(window, this.#startWindow) : window) + Math.max(acks, host);
  }

  /**
   * A delivery rate sample (from an ack, per acknowledged datagram): bytes
   * delivered per second over an interval. `appLimited`: taken while the
   * sender had less to send than the rate allowed, so it shows what the
   * application offered, not what the path carries: it may raise the
   * estimate but is not kept when it is lower.
   */
  onDelivery(bytesPerSecond: number, appLimited: boolean, bytesDelivered: number): void {
    this.#roundDelivered += bytesDelivered;
    this.#roundDatagrams++;
    if (!(bytesPerSecond > 0)) return;
    if (appLimited && bytesPerSecond <= this.bandwidthBps) return;
    if (this.#bwByRound.length === 0) this.#bwByRound.push(0);
    const i = this.#bwByRound.length - 1;
    this.#bwByRound[i] = Math.max(this.#bwByRound[i]!, bytesPerSecond);
    if (bytesPerSecond > this.#bwMax) this.#bwMax = bytesPerSecond;
    this.#measured = true;
    if (!appLimited) this.#roundPathSample = true;
  }

  /** After an ack: the gain cycle's drain ends once what is in flight fits one BDP (gain-cycle.ts); outside it, nothing is computed. */
  onAcked(bytesInFlight: number): void {
    const rtt = this.#minRttMs;
    if (this.#phase === 'probe' && this.gain < 1 && Number.isFinite(rtt)) this.#cycle.onAcked(bytesInFlight, (this.bandwidthBps * rtt) / 1000);
  }

  /** A host delay sample (host-delay.ts): the window covers it beyond gain × BDP. */
  onHostDelay(ms: number): void {
    this.#hostDelay.sample(ms);
  }

  get hostDelayMs(): number {
    return this.#hostDelay.ms;
  }

  onLoss(bytesLost: number): void {
    this.#roundLost += bytesLost;
    this.#roundDatagrams++;
  }

  onMinRtt(ms: number): void {
    this.#minRttMs = ms;
  }

  /**
   * One RTT sample. In startup, when the last STARTUP_QUEUE_SAMPLES samples
   * all sit above the minimum by more than the queue allowance, a queue is
   * building: startup ends now (HyStart++'s delay signal, RFC 9406, on a
   * sliding run of samples rather than a whole round). Waiting for the round
   * to end, as onRoundEnd does, let a startup pacing at 2.9× the link fill a
   * 100 ms bottleneck queue and lose 1,300 datagrams to it before it
   * stopped (measured at 50 Mbit/s, 100 ms RTT); the rate a queue starts to
   * build at is the bottleneck's, so the estimate is already right.
   */
  onRttSample(ms: number, appLimited = false): void {
    if (this.#phase !== 'startup' || !Number.isFinite(this.#minRttMs) || appLimited) return;
    const allowance = Math.min(STARTUP_QUEUE_MAX_MS, Math.max(STARTUP_QUEUE_MIN_MS, this.#minRttMs / 8));
    if (ms > this.#minRttMs + allowance) {
      if (this.#queuedSamples++ === 0) this.#queuedRunBw = this.bandwidthBps;
      if (this.#queuedSamples < STARTUP_QUEUE_SAMPLES || !(this.bandwidthBps > 0)) return;
      // A queue at the bottleneck caps what is delivered: the estimate stops
      // growing. Delays while deliveries still grow (startup's doubling goes
      // on) are the host's, not a queue's: measured at 200 Mbit/s, 10 ms, a
      // 2-core host running both gateways ended startup at 50 Mbit/s on them.
      if (this.bandwidthBps < this.#queuedRunBw * FULL_BW_GROWTH) this.#phase = 'drain';
      else this.#queuedSamples = 0;
    } else {
      this.#queuedSamples = 0;
    }
  }

  /**
   * A round trip ended (everything sent at its start has been acknowledged
   * or declared lost). `roundRttMs`: the lowest RTT sample of the round,
   * if any: in startup, a round whose every sample is 25 % above the path's
   * minimum means a queue is building (HyStart's signal, unaffected by
   * random loss), so startup ends before it overflows the queue.
   */
  onRoundEnd(bytesInFlight: number, roundRttMs = Infinity, _roundMaxRttMs = roundRttMs, nowMs = NaN): void {
    const lossRate = this.#roundLost / Math.max(1, this.#roundLost + this.#roundDelivered);
    // Past startup, a round's best per-ack sample may not exceed what the whole
    // round delivered: late, bunched acks inflate single samples and the max
    // filter would keep exactly those, pace above the bottleneck and hold a
    // standing queue (57 Mbit/s on a 50 Mbit/s link; with 10 % of slack still
    // 1-4 % above it and a 6-7 ms queue at 50 Mbit/s, 100 ms). Random loss is
    // counted back in (those datagrams passed the bottleneck, or would have),
    // or a lossy path's estimate would be the share that arrives.
    const roundMs = nowMs - this.#roundStartMs;
    if (this.#phase !== 'startup' && this.#measured && Number.isFinite(roundMs) && roundMs > 0 && this.#bwByRound.length) {
      const aggregate = (this.#roundDelivered * 1000) / roundMs / (1 - Math.min(MAX_RANDOM_LOSS, this.#baseLoss));
      const i = this.#bwByRound.length - 1;
      if (aggregate > 0) this.#bwByRound[i] = Math.min(this.#bwByRound[i]!, aggregate);
      this.#bwMax = Math.max(0, ...this.#bwByRound);
    }
    const roundStart = this.#roundStartMs;
    if (Number.isFinite(nowMs)) this.#roundStartMs = nowMs;
    this.#brake = lossRate > HEAVY_LOSS && this.#roundDatagrams >= HEAVY_LOSS_MIN_DATAGRAMS ? this.#brake * 0.5 : Math.min(1, this.#brake * 2);
    // Loss in a round whose RTT shows a full queue is the bottleneck
    // overflowing, not random loss: the estimate is too high, so it is held
    // below what was measured. Random loss alone (no queue in the RTT)
    // leaves it alone.
    // Every sample of the round above the minimum by that factor: the queue
    // stood the whole round (a single slow sample proves nothing).
    const queueFull = Number.isFinite(roundRttMs) && Number.isFinite(this.#minRttMs) && roundRttMs > this.#minRttMs * QUEUE_FULL_RTT_FACTOR;
    const measured = this.#bwMax;
    if (!queueFull) this.#baseLoss = 0.9 * this.#baseLoss + 0.1 * lossRate;
    // Overflow: loss well above the path's random loss while the queue stood all round.
    const overflow = queueFull && lossRate > 2 * this.#baseLoss + QUEUE_LOSS;
    // A queue that stood all round (even the round's lowest RTT is well above
    // the path's): the estimate is above the bottleneck (jittery acks inflate
    // samples). Hold it a little lower until the queue is gone, so the link
    // stays full but the queue, and every flow's latency with it, stays short.
    // Only the cruising rounds of the cycle count (the probe's queue and its
    // drain are meant), and only once the queue has stood STANDING_SPAN_MS.
    const cruising = this.#phase === 'probe' && this.#cycle.cruisingRound;
    const queued = Number.isFinite(roundRttMs) && Number.isFinite(this.#minRttMs) && roundRttMs > this.#minRttMs + STANDING_QUEUE_MS;
    if (!queued || !cruising) this.#standingSince = NaN;
    else if (Number.isNaN(this.#standingSince)) this.#standingSince = Number.isFinite(roundStart) ? roundStart : nowMs;
    const standing = queued && cruising && Number.isFinite(nowMs) && nowMs - this.#standingSince >= STANDING_SPAN_MS;
    // Each hold pulls the pacing below what later rounds can measure, so a
    // signal that does not go away (an RTT inflated by a busy host rather
    // than a queue, or loss learned while the RTT looked queued) would
    // ratchet the rate to nothing: at most MAX_HOLDS holds in a row, then
    // the estimate stays where it is until a clean round relaxes it.
    const hold = this.#holdsInRow < MAX_HOLDS && measured > 0 && this.#roundPathSample;
    if (this.#phase !== 'startup' && overflow && hold) {
      this.#bwCap = Math.min(this.#bwCap, measured) * QUEUE_BACKOFF;
      this.#holdsInRow++;
    } else if (standing && hold) {
      this.#bwCap = Math.min(this.#bwCap, measured) * STANDING_BACKOFF;
      this.#holdsInRow++;
      // The next hold needs the queue to stand another span (the cut takes a round to show).
      this.#standingSince = nowMs;
    } else if (!overflow && !queued) {
      this.#holdsInRow = 0;
      if (Number.isFinite(this.#bwCap)) this.#bwCap = this.#bwCap * RELAX > measured ? Infinity : this.#bwCap * RELAX;
    }
    this.#roundLost = this.#roundDelivered = this.#roundDatagrams = 0;
    const bw = this.bandwidthBps;
    if (this.#phase === 'startup' && !this.#roundPathSample) {
      // Application-limited: the path was not tested this round; startup goes on.
    } else if (this.#phase === 'startup') {
      // Still growing by 25 % a round: the path has room, whatever the RTT
      // says (a busy host delays acks too); a queue with growth stalled ends startup at once.
      if (bw >= this.#fullBw * FULL_BW_GROWTH) {
        this.#fullBw = bw;
        this.#fullBwRounds = 0;
      } else if (Number.isFinite(roundRttMs) && Number.isFinite(this.#minRttMs) && roundRttMs > this.#minRttMs * QUEUE_RTT_FACTOR + 2) {
        this.#phase = 'drain';
      } else if (++this.#fullBwRounds >= FULL_BW_ROUNDS) {
        this.#phase = 'drain';
      }
    } else if (this.#phase === 'drain') {
      // Drained once what is in flight fits one bandwidth-delay product.
      if (bytesInFlight <= (bw * this.#minRttMs) / 1000) this.#phase = 'probe';
    } else {
      this.#cycle.onRoundEnd();
    }
    // The window ages only with rounds that measured the path: an idle or
    // application-limited spell keeps the last estimate instead of decaying
    // to what the application happened to offer.
    if (this.#measured) {
      this.#bwByRound.push(0);
      if (this.#bwByRound.length > BW_WINDOW_ROUNDS) this.#bwByRound.shift();
      this.#bwMax = Math.max(0, ...this.#bwByRound);
      this.#hostDelay.endRound();
    }
    this.#measured = false;
    this.#roundPathSample = false;
  }
}
