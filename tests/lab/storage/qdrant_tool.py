"""Seed and describe a Qdrant collection through its REST API (standard library only).

    qdrant_tool.py --url http://127.0.0.1:6333 seed --collection docs --points 300 --dimensions 384 --seed 7
    qdrant_tool.py --url http://127.0.0.1:6333 describe --collection docs

``describe`` prints one JSON object: the exact point count and a sha256 over every point (id, vector, payload)
in id order, so a restored collection can be compared with the live one.
"""

import argparse
import hashlib
import json
import random
import sys
import urllib.error
import urllib.request

BATCH = 100
PAGE = 256


def call(url: str, method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{method} {path}: HTTP {exc.code}: {exc.read().decode(errors='replace')}") from None


def exists(url: str, collection: str) -> bool:
    names = [entry["name"] for entry in call(url, "GET", "/collections")["result"]["collections"]]
    return collection in names


def count(url: str, collection: str) -> int:
    return call(url, "POST", f"/collections/{collection}/points/count", {"exact": True})["result"]["count"]


def seed(args) -> dict:
    if exists(args.url, args.collection) and count(args.url, args.collection) == args.points:
        return {"changed": False, "count": args.points}
    if not exists(args.url, args.collection):
        call(args.url, "PUT", f"/collections/{args.collection}",
             {"vectors": {"size": args.dimensions, "distance": "Cosine"}})
    generator = random.Random(args.seed)
    for start in range(0, args.points, BATCH):
        points = [{"id": index, "vector": [generator.uniform(-1.0, 1.0) for _dimension in range(args.dimensions)],
                   "payload": {"document": f"document {index}"}}
                  for index in range(start, min(start + BATCH, args.points))]
        call(args.url, "PUT", f"/collections/{args.collection}/points?wait=true", {"points": points})
    return {"changed": True, "count": count(args.url, args.collection)}


def describe(args) -> dict:
    digest, offset, seen = hashlib.sha256(), None, []
    while True:
        body = {"limit": PAGE, "with_vector": True, "with_payload": True}
        if offset is not None:
            body["offset"] = offset
        page = call(args.url, "POST", f"/collections/{args.collection}/points/scroll", body)["result"]
        seen.extend(page["points"])
        offset = page.get("next_page_offset")
        if offset is None:
            break
    for point in sorted(seen, key=lambda item: str(item["id"])):
        digest.update(json.dumps([point["id"], point.get("vector"), point.get("payload")], sort_keys=True).encode())
    return {"count": count(args.url, args.collection), "scrolled": len(seen), "sha256": digest.hexdigest()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    commands = parser.add_subparsers(dest="command", required=True)
    seeding = commands.add_parser("seed")
    seeding.add_argument("--collection", required=True)
    seeding.add_argument("--points", type=int, required=True)
    seeding.add_argument("--dimensions", type=int, required=True)
    seeding.add_argument("--seed", type=int, required=True)
    describing = commands.add_parser("describe")
    describing.add_argument("--collection", required=True)
    args = parser.parse_args(argv)
    json.dump(seed(args) if args.command == "seed" else describe(args), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
