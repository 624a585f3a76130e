// A simulated WAN link for the cache benchmark, in its own process: forwards to an upstream
// registry, throttles all bodies together to a rate, counts blob bytes (GET /__link/stats,
// /__link/reset, /__link/rate?bps=N). Prints {"url": …} when listening.
import { startFaultUpstream } from '../test/support/fault-upstream.js';

const [target, rate] = process.argv.slice(2);
if (!target) {
  console.error('usage: link.js UPSTREAM_URL [BYTES_PER_SECOND]');
  process.exit(2);
}
const link = await startFaultUpstream(target, { rate: Number(rate ?? 0) });
console.log(JSON.stringify({ url: link.url }));
process.on('SIGTERM', () => void link.close().then(() => process.exit(0)));
