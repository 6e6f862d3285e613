"""``python -m lab.qdrant_standin --host 0.0.0.0 --port 6333 --storage /var/lib/qdrant-standin``"""

import argparse
import signal
import sys
import threading

from .server import QdrantStandin


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.qdrant_standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6333)
    parser.add_argument("--storage", required=True, help="directory for snapshots and the collections' data")
    parser.add_argument("--api-key", default=None, help="require this api-key header")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with QdrantStandin(args.storage, args.host, args.port, api_key=args.api_key) as server:
        print("qdrant stand-in listening on %s" % server.url, flush=True)
        stop.wait()
    return 0


sys.exit(main())
