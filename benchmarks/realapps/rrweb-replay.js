// The rrweb floor's and rrweb live mode's player (benchmarks/latency_realapp.py): rrweb's
// Replayer, exposed as window.rrwebReplayer, with rrweb's own stylesheet.
import { Replayer } from 'rrweb';
import 'rrweb/dist/style.css';

window.rrwebReplayer = Replayer;
