// The rrweb floor's and rrweb live mode's player (benchmarks/latency_realapp.py): rrweb's
// Replayer from @rrweb/replay (the same copy StreamDOM's player uses), exposed as
// window.rrwebReplayer, with rrweb's own stylesheet.
import { Replayer } from '@rrweb/replay';
import '@rrweb/replay/dist/style.css';

window.rrwebReplayer = Replayer;
