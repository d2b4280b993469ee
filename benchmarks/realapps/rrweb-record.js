// The rrweb floor's recorder (benchmarks/latency_realapp.py): @rrweb/record, the same package
// and version StreamDOM's recorder bundles, exposed as window.rrwebRecord.
import { record } from '@rrweb/record';

window.rrwebRecord = record;
