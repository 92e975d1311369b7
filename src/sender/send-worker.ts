/**
 * The batched engine's send worker (thread 'sluice-sender'): serves the two
 * jobs of BatchedSender over a src/worker channel, an aggregate
 * (send-aggregate.ts: paced, from one transferred buffer) and a segmented
 * write (send-write.ts: GSO runs, MSG_ZEROCOPY), each answered with its
 * outcome in one message.
 */
import { runWorker, withTransfer } from '../worker/port.js';
import { setThreadNice, setTimerSlack } from '../sys/thread.js';
import { runAggregate } from './send-aggregate.js';
import { runWrite } from './send-write.js';
import type { SendRequests } from './send-protocol.js';

/**
 * The pacer's nice value, where the process may lower it (root, or
 * CAP_SYS_NICE, or RLIMIT_NICE): the worker sleeps most of the time and
 * must run the moment a deadline comes, but the application's threads (V8's
 * GC helpers included) on the same core otherwise keep it waiting for their
 * slice, milliseconds at a time. -10 gives it about 9 times their weight; it
 * only ever runs short bursts. Refused (an ordinary user): it keeps nice 0.
 */
const PACER_NICE = -10;
setThreadNice(PACER_NICE);

/**
 * Timer slack for this thread: the kernel may delay a sleeping
 * thread's wake-up by its timer slack (50 µs by default) to batch timers;
 * the pacer asks for 1 ns, so its futex sleeps end on time and the spin
 * that follows stays short. Per thread: the application's threads keep
 * theirs. A refusal only costs precision.
 */
setTimerSlack(1);

runWorker<SendRequests>((port) => {
  port.serve({
    write: (job) => runWrite(job),
    aggregate: (job) => {
      const o = { ...runAggregate(job), blob: job.blob };
      // The per-message arrays move back instead of being copied, and the blob for reuse.
      return withTransfer(o, [o.sentAtMs.buffer as ArrayBuffer, o.reason.buffer as ArrayBuffer, job.blob]);
    },
  });
  port.ready();
});
